"""bench/RESULTS.md's accuracy-suite section is rebuilt from bench/suite/results.jsonl alone, and the suite's scripts
agree with the library on what they measure."""
import json, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT/'bench'/'suite'


def test_the_suite_section_of_results_md_is_what_table_py_rebuilds():
    "Running table.py on the committed results.jsonl gives the section bench/RESULTS.md holds, character for character."
    out = subprocess.run([sys.executable, str(SUITE/'table.py'), '--no-write'], capture_output=True, text=True, check=True).stdout
    md = (ROOT/'bench'/'RESULTS.md').read_text()
    begin, end = '<!-- suite:begin -->', '<!-- suite:end -->'
    assert md.index(begin) < md.index(end), 'RESULTS.md lacks the suite markers'
    assert md[md.index(begin):md.index(end) + len(end)] == out.rstrip('\n'), 'rerun: .venv/bin/python bench/suite/table.py'


def test_every_suite_row_names_its_cpu_and_every_default_run_its_choice():
    "Each row says which CPU ran it; each bsm_nb default row carries the ensemble's weights, choice and candidates."
    rows = [json.loads(ln) for ln in (SUITE/'results.jsonl').read_text().splitlines() if ln.strip()]
    assert rows and all(r.get('cpu') and r.get('date') for r in rows)
    for r in (r for r in rows if r.get('kind') == 'bsm'):
        ens = r['ensemble']
        assert abs(sum(ens['ensemble_weights'].values()) - 1) < 1e-9 and ens['choice'] in ('best part', 'blend'), r['data']
        assert set(ens['candidates']) == set(ens['ensemble_weights']), r['data']


def test_the_suite_scores_as_the_library_does():
    "bench/suite/scoring.py's AUROC and log loss are bsm_nb's own (`compute_metrics`, `cross_entropy`) on any probabilities."
    sys.path.insert(0, str(ROOT/'bench'))
    try: from suite.scoring import scores
    finally: sys.path.remove(str(ROOT/'bench'))
    from bsm_nb.entrypoint import cross_entropy
    from bsm_nb.evaluate import compute_metrics
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 3, 300), rng.dirichlet([1, 1, 1], 300)
    s = scores(p, y)
    assert s['auroc'] == pytest.approx(compute_metrics(p, y, ['auroc'], 'multiclass', 3)['auroc'], abs=1e-6)
    assert s['loss'] == pytest.approx(cross_entropy(p, y), abs=1e-9) and 0 <= s['ece'] <= 1
