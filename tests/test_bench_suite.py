"""bench/RESULTS.md is rebuilt from the committed files under bench/results/ alone (its accuracy-suite section from
bench/results/accuracy/suite.jsonl), and the suite's scripts agree with the library on what they measure."""
import json, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT/'bench'/'accuracy'/'suite'
RESULTS = ROOT/'bench'/'results'


def test_the_suite_section_of_results_md_is_what_table_py_rebuilds():
    "Running table.py on the committed results.jsonl gives the section bench/RESULTS.md holds, character for character."
    out = subprocess.run([sys.executable, str(SUITE/'table.py'), '--no-write'], capture_output=True, text=True,
                         check=True).stdout
    md = (ROOT/'bench'/'RESULTS.md').read_text()
    begin, end = '<!-- suite:begin -->', '<!-- suite:end -->'
    assert md.index(begin) < md.index(end), 'RESULTS.md lacks the suite markers'
    assert md[md.index(begin):md.index(end) + len(end)] == out.rstrip('\n'), \
        'rerun: .venv/bin/python bench/accuracy/suite/table.py'


def test_every_suite_row_names_its_cpu_and_every_default_run_its_choice():
    "Each row says which CPU ran it; each bsm_nb default row carries the ensemble's weights, choice and candidates."
    rows = [json.loads(ln) for ln in (RESULTS/'accuracy'/'suite.jsonl').read_text().splitlines() if ln.strip()]
    assert rows and all(r.get('cpu') and r.get('date') for r in rows)
    for r in (r for r in rows if r.get('kind') == 'bsm'):
        ens = r['ensemble']
        assert (abs(sum(ens['ensemble_weights'].values()) - 1) < 1e-9
                and ens['choice'] in ('best part', 'blend')), r['data']
        assert set(ens['candidates']) == set(ens['ensemble_weights']), r['data']


def test_the_suite_scores_as_the_library_does():
    "The suite's AUROC and log loss (scoring.py) are bsm_nb's own (`compute_metrics`, `log_loss`) on any data."
    sys.path.insert(0, str(SUITE.parent))
    try: from suite.scoring import scores
    finally: sys.path.remove(str(SUITE.parent))
    from bsm_nb.evaluate import log_loss
    from bsm_nb.evaluate import compute_metrics
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 3, 300), rng.dirichlet([1, 1, 1], 300)
    s = scores(p, y)
    assert s['auroc'] == pytest.approx(compute_metrics(p, y, ['auroc'], 'multiclass', 3)['auroc'], abs=1e-6)
    assert s['loss'] == pytest.approx(log_loss(p, y), abs=1e-9) and 0 <= s['ece'] <= 1


def test_results_md_is_what_make_table_rebuilds_from_the_committed_results():
    "bench/make_table.py --no-write, from the files under bench/results/ alone, gives bench/RESULTS.md byte for byte."
    out = subprocess.run([sys.executable, str(ROOT/'bench'/'make_table.py'), '--no-write'], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout
    assert out == (ROOT/'bench'/'RESULTS.md').read_text(), 'rerun: .venv/bin/python bench/make_table.py'


def test_the_results_are_small_and_none_is_ignored_by_git():
    "Every file under bench/results/ is kept by git (a clean checkout rebuilds RESULTS.md from them), 200 kB in all."
    files = [p for p in RESULTS.rglob('*') if p.is_file()]
    assert files and sum(p.stat().st_size for p in files) < 200_000
    r = subprocess.run(['git', 'check-ignore', '--no-index', *map(str, files)], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 1 and not r.stdout, f'ignored by git: {r.stdout}'


def test_rows_pooled_over_seeds_say_they_were_reconstructed():
    "A table row pooled over seeds (`seeds`, `test_auroc_sd`) was rebuilt from an earlier RESULTS.md: its note says so."
    for path in (RESULTS/'accuracy'/'table').glob('*.jsonl'):
        for r in map(json.loads, path.read_text().splitlines()):
            assert ('seeds' in r) == ('test_auroc_sd' in r), (path.name, r['run'])
            assert 'seeds' not in r or 'reconstructed from bench/RESULTS.md' in r.get('note', ''), (path.name, r['run'])
