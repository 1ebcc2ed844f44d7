"""Spot- and stop-safe training: SIGTERM mid-epoch, restart, and the run ends as if never interrupted."""
import json, os, re, signal, subprocess, sys, time
from pathlib import Path
import pytest
from bsm_nb.model import save_tiny_bert
from bsm_nb.synthetic import write_sagemaker_tree

BIN = Path(sys.executable).parent
HPS = {'max_epochs': '2', 'batch_size': '16', 'checkpoint_every_n_steps': '5', 'num_threads': '1', 'max_seq_length': '32'}

@pytest.fixture(scope='module')
def spot_tiny(tmp_path_factory): return save_tiny_bert(tmp_path_factory.mktemp('spot')/'tiny')

def _env(base):
    return {**os.environ, 'SAGEMAKER_BASE_DIR': str(base), 'HF_HUB_OFFLINE': '1', 'PYTHONUNBUFFERED': '1', 'TOKENIZERS_PARALLELISM': 'false'}

def _tree(tmp_path, name):
    return write_sagemaker_tree(tmp_path/name, n_train=600, n_val=100, n_test=100, seed=3, hyperparameters=HPS)

def _train(base, tiny, timeout=300):
    return subprocess.run([BIN/'bsm-train', '--pretrained_model', str(tiny)], env=_env(base), capture_output=True, text=True, timeout=timeout)

def test_sigterm_mid_epoch_then_resume_matches_uninterrupted(tmp_path, spot_tiny):
    "SIGTERM mid-epoch: one more checkpoint, non-zero exit within seconds; restart resumes and ends with the same steps and metrics."
    ref_base = _tree(tmp_path, 'ref')
    ref = _train(ref_base, spot_tiny)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    ref_metrics = json.loads((ref_base/'model/metrics.json').read_text())

    base = _tree(tmp_path, 'spot')
    proc = subprocess.Popen([BIN/'bsm-train', '--pretrained_model', str(spot_tiny)], env=_env(base), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, deadline = [], time.time() + 240
    for line in proc.stdout: # wait for the step-10 checkpoint of epoch 0, then stop the job
        lines.append(line)
        if 'bsm-e0000-s00000010.ckpt' in line: break
        assert time.time() < deadline, ''.join(lines[-50:])
    time.sleep(0.2) # let it run a few more steps, so the stop falls between periodic checkpoints
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    stopped_in = time.time() - t0
    out = ''.join(lines) + rest
    assert proc.returncode == 143, out[-3000:]
    assert stopped_in < 15, stopped_in
    assert 'SIGTERM' in (base/'output/failure').read_text().splitlines()[0]
    assert not (base/'model/bsm_model.json').exists()
    ckpts = sorted(p.name for p in (base/'checkpoints').glob('bsm-*.ckpt'))
    last_step = max(int(re.search(r's(\d+)', n).group(1)) for n in ckpts)
    assert 10 <= last_step < ref_metrics['steps'] // 2, (ckpts, ref_metrics['steps']) # stopped mid-epoch 0
    assert f'stopped by SIGTERM at epoch 0 step {last_step}' in out # the checkpoint is the step it stopped at
    assert not list((base/'checkpoints').glob('.tmp-*'))

    # a newer but corrupted checkpoint must be skipped with a warning
    (base/'checkpoints/bsm-e0000-s00000099.ckpt').write_bytes(b'PK\x03\x04 truncated')
    (base/'output/failure').unlink()
    res = _train(base, spot_tiny)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert 'skipping checkpoint' in res.stdout and 'bsm-e0000-s00000099.ckpt' in res.stdout
    m = re.search(r'resumed from (\S+) at epoch (\d+) step (\d+)', res.stdout)
    assert m and int(m.group(2)) == 0 and int(m.group(3)) == last_step, res.stdout[-3000:]
    got = json.loads((base/'model/metrics.json').read_text())
    assert got['steps'] == ref_metrics['steps']
    assert abs(got['test']['auroc'] - ref_metrics['test']['auroc']) <= 0.005
    assert got['test']['auroc'] == pytest.approx(ref_metrics['test']['auroc'], abs=1e-6) # exact on CPU with fixed threads

    # the finished run's checkpoints are not resumed again
    again = _train(base, spot_tiny)
    assert again.returncode == 0
    assert 'belong to a run that already finished: starting afresh' in again.stdout
    assert 'resumed from' not in again.stdout

def test_checkpoint_write_past_file_size_limit_fails_cleanly(tmp_path, spot_tiny):
    "A checkpoint that cannot be written (here: past the file-size limit) leaves no temporary file, and the failure line names it and the cause."
    import resource
    base = _tree(tmp_path, 'fsize')
    limit = 2**20 # the tiny model's checkpoints (weights and AdamW states) are bigger; logs and the failure file are smaller
    def small_files(): resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)) # CPython ignores SIGXFSZ: writes past it raise EFBIG
    res = subprocess.run([BIN/'bsm-train', '--pretrained_model', str(spot_tiny)], env=_env(base), capture_output=True, text=True,
                         timeout=300, preexec_fn=small_files)
    out = res.stdout[-3000:] + res.stderr[-3000:]
    assert res.returncode == 255, out
    first = (base/'output/failure').read_text().splitlines()[0]
    assert re.search(r'could not write checkpoint \S+/checkpoints/\S*\.ckpt: file size limit reached', first), first
    assert 'ulimit -f' in first, first
    assert not list((base/'checkpoints').rglob('.tmp-*')), list((base/'checkpoints').rglob('*'))
    assert not (base/'model/bsm_model.json').exists()

def test_foreign_zip_named_like_a_checkpoint_is_skipped(tmp_path, spot_tiny):
    "A valid zip that bsm-train did not write, named like a checkpoint, is skipped with a warning; training starts afresh and completes."
    import zipfile
    base = write_sagemaker_tree(tmp_path/'foreign', n_train=200, n_val=100, n_test=100, seed=3, hyperparameters={**HPS, 'max_epochs': '1'})
    (base/'checkpoints').mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(base/'checkpoints/bsm-e0000-s00000099.ckpt', 'w') as z: z.writestr('notes.txt', 'not a checkpoint')
    res = _train(base, spot_tiny)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert re.search(r'skipping checkpoint \S+bsm-e0000-s00000099\.ckpt: it is not a torch checkpoint', res.stdout), res.stdout[-3000:]
    assert 'resumed from' not in res.stdout
    assert (base/'model/metrics.json').exists()
    assert not (base/'checkpoints/bsm-e0000-s00000099.ckpt').exists() # a fresh start clears it
