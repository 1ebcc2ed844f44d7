"""Spot- and stop-safe training: SIGTERM at any moment, restart, and the run ends as if never interrupted."""
import contextlib, io, json, logging, os, re, signal, subprocess, sys, time
from dataclasses import asdict
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException
from bsm_nb.config import BSMConfig
from bsm_nb.data import FeatureProcessor, BSMDataset, make_dataloader
from bsm_nb.model import MultimodalBert, load_tokenizer, save_tiny_bert
from bsm_nb.synthetic import write_sagemaker_tree
from bsm_nb.train import list_checkpoints, load_checkpoint, model_train

BIN = Path(sys.executable).parent
HPS = {'max_epochs': '2', 'batch_size': '16', 'checkpoint_every_n_steps': '5', 'num_threads': '1',
       'max_seq_length': '32'}

@pytest.fixture(scope='module')
def spot_tiny(tmp_path_factory): return save_tiny_bert(tmp_path_factory.mktemp('spot')/'tiny')

def _env(base):
    return {**os.environ, 'SAGEMAKER_BASE_DIR': str(base), 'HF_HUB_OFFLINE': '1', 'PYTHONUNBUFFERED': '1',
            'TOKENIZERS_PARALLELISM': 'false'}

def _tree(tmp_path, name):
    return write_sagemaker_tree(tmp_path/name, n_train=600, n_val=100, n_test=100, seed=3, hyperparameters=HPS)

def _train(base, tiny, timeout=300):
    return subprocess.run([BIN/'bsm-train', '--pretrained_model', str(tiny)], env=_env(base), capture_output=True,
                          text=True, timeout=timeout)

def test_sigterm_mid_epoch_then_resume_matches_uninterrupted(tmp_path, spot_tiny):
    """SIGTERM mid-epoch: one more checkpoint, non-zero exit within seconds;
    restart resumes and ends with the same steps and metrics."""
    ref_base = _tree(tmp_path, 'ref')
    ref = _train(ref_base, spot_tiny)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    ref_metrics = json.loads((ref_base/'model/metrics.json').read_text())

    base = _tree(tmp_path, 'spot')
    proc = subprocess.Popen([BIN/'bsm-train', '--pretrained_model', str(spot_tiny)], env=_env(base),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
    # exact on CPU with fixed threads
    assert got['test']['auroc'] == pytest.approx(ref_metrics['test']['auroc'], abs=1e-6)

    # the finished run's checkpoints are not resumed again
    again = _train(base, spot_tiny)
    assert again.returncode == 0
    assert 'belong to a run that already finished: starting afresh' in again.stdout
    assert 'resumed from' not in again.stdout

# The finding of issue 23, through `bsm-train`: 100 rows in batches of 8 (13 steps an epoch, periodic checkpoints at 5
# and 10), 600 validation rows (75 batches: validation is most of the time between the step-10 checkpoint and the
# epoch's end). A SIGTERM there used to leave a step-13 checkpoint that resumed as "epoch done", skipped validation and
# failed: `Early stopping conditioned on metric val_auroc which is not available`.
TAIL_HPS = {**HPS, 'batch_size': '8'}
LOGGED_AT = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*checkpoint \S+/bsm-e\d+-s(\d+)\.ckpt$')
STOPPED = re.compile(r'stopped by SIGTERM at epoch (\d+) step (\d+)')

def _tail_tree(tmp_path, name):
    return write_sagemaker_tree(tmp_path/name, n_train=100, n_val=600, n_test=40, seed=3, hyperparameters=TAIL_HPS)

def _logged_at(line):
    "(step, seconds) of a `checkpoint ...` log line, else None."
    if not (m := LOGGED_AT.match(line)): return None
    return int(m.group(3)), time.mktime(time.strptime(m.group(1), '%Y-%m-%d %H:%M:%S')) + int(m.group(2)) / 1000

def _val_lines(out):
    "The per-epoch lines, val metrics only (a resumed epoch's train_loss covers only the batches after the resume)."
    lines = [l.split() for l in out.splitlines() if l.startswith('epoch=')]
    return [' '.join(w for w in words if not w.startswith('train_loss')) for words in lines]

def _sigterm_after(base, tiny, step, delay):
    "Start `bsm-train`; SIGTERM it `delay(t)` after the line of the `step` checkpoint (t: from step 5's to step 10's)."
    proc = subprocess.Popen([BIN/'bsm-train', '--pretrained_model', str(tiny)], env=_env(base), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines, logged, deadline = [], {}, time.time() + 240
    for line in proc.stdout:
        lines.append(line)
        if at := _logged_at(line): logged[at[0]] = at[1]
        if f'bsm-e0000-s{step:08d}.ckpt' in line: break
        assert time.time() < deadline, ''.join(lines[-50:])
    time.sleep(delay(logged[10] - logged[5]))
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    return proc.returncode, ''.join(lines) + rest

@pytest.fixture(scope='module')
def tail_ref(tmp_path_factory, spot_tiny):
    base = _tail_tree(tmp_path_factory.mktemp('tail'), 'ref')
    res = _train(base, spot_tiny)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout, json.loads((base/'model/metrics.json').read_text())

def test_sigterm_in_validation_through_bsm_train(tmp_path, spot_tiny, tail_ref):
    "SIGTERM in epoch 1's validation (the finding): exit 143; the restart validates epoch 1, ends as if uninterrupted."
    ref_out, ref_metrics = tail_ref
    # 5 batches take t; 3 more, then validation (75 cheaper batches) ~5t. Load moves the moment: aim again on a miss
    for k in (1.5, 1.0, 2.5):
        base = _tail_tree(tmp_path, f'spot{k}')
        rc, out = _sigterm_after(base, spot_tiny, 10, lambda t: k * t)
        if (stop := STOPPED.search(out)) and stop.groups() == ('0', '13') and not _val_lines(out): break
    assert rc == 143, out[-3000:]
    assert stop and stop.groups() == ('0', '13') and not _val_lines(out), out[-3000:] # epoch 1 trained, not validated
    assert (base/'checkpoints/bsm-e0000-s00000013.ckpt').exists()
    (base/'output/failure').unlink()
    res = _train(base, spot_tiny)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    resumed = re.search(r'resumed from .*', res.stdout)
    assert resumed and f'at epoch {stop.group(1)} step {stop.group(2)}' in resumed.group(0), res.stdout[-3000:]
    assert _val_lines(out) + _val_lines(res.stdout) == _val_lines(ref_out) # each epoch validated once, alike
    got = json.loads((base/'model/metrics.json').read_text())
    assert got['steps'] == ref_metrics['steps']
    for split in ('val', 'test'): assert got[split] == pytest.approx(ref_metrics[split], abs=1e-6), split

def test_checkpoint_write_past_file_size_limit_fails_cleanly(tmp_path, spot_tiny):
    """A checkpoint that cannot be written (here: past the file-size limit) leaves no temporary file,
    and the failure line names it and the cause."""
    import resource
    base = _tree(tmp_path, 'fsize')
    # the tiny model's checkpoints (weights and AdamW states) are bigger; logs and the failure file are smaller
    limit = 2**20
    # CPython ignores SIGXFSZ: writes past it raise EFBIG
    def small_files(): resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    res = subprocess.run([BIN/'bsm-train', '--pretrained_model', str(spot_tiny)], env=_env(base), capture_output=True,
                         text=True, timeout=300, preexec_fn=small_files)
    out = res.stdout[-3000:] + res.stderr[-3000:]
    assert res.returncode == 255, out
    first = (base/'output/failure').read_text().splitlines()[0]
    assert re.search(r'could not write checkpoint \S+/checkpoints/\S*\.ckpt: file size limit reached', first), first
    assert 'ulimit -f' in first, first
    assert not list((base/'checkpoints').rglob('.tmp-*')), list((base/'checkpoints').rglob('*'))
    assert not (base/'model/bsm_model.json').exists()

def test_foreign_zip_named_like_a_checkpoint_is_skipped(tmp_path, spot_tiny):
    """A valid zip that bsm-train did not write, named like a checkpoint, is skipped with a warning;
    training starts afresh and completes."""
    import zipfile
    base = write_sagemaker_tree(tmp_path/'foreign', n_train=200, n_val=100, n_test=100, seed=3,
                                hyperparameters={**HPS, 'max_epochs': '1'})
    (base/'checkpoints').mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(base/'checkpoints/bsm-e0000-s00000099.ckpt', 'w') as z:
        z.writestr('notes.txt', 'not a checkpoint')
    res = _train(base, spot_tiny)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert re.search(r'skipping checkpoint \S+bsm-e0000-s00000099\.ckpt: it is not a torch checkpoint',
                     res.stdout), res.stdout[-3000:]
    assert 'resumed from' not in res.stdout
    assert (base/'model/metrics.json').exists()
    assert not (base/'checkpoints/bsm-e0000-s00000099.ckpt').exists() # a fresh start clears it

# --- in process: a SIGTERM at each moment around an epoch's end ------------------------------------------------------
# 160 rows in batches of 16: 10 steps an epoch, a periodic checkpoint every 5 (so one at the epoch's last step, 10),
# 3 validation batches. Each case stops a run at one moment, resumes it, and compares with an uninterrupted run.

class SigtermAt(L.Callback):
    "Sends this process SIGTERM in `hook` of `epoch` (at `batch` for batch hooks), once; Lightning's handler takes it."
    def __init__(self, hook, epoch, batch=None):
        self.hook, self.epoch, self.batch, self.sent = hook, epoch, batch, False
    def fire(self, trainer, hook, batch=None):
        if self.sent or hook != self.hook or trainer.current_epoch != self.epoch or batch != self.batch: return
        assert callable(signal.getsignal(signal.SIGTERM)), 'Lightning set no SIGTERM handler: it would end pytest'
        self.sent = True
        os.kill(os.getpid(), signal.SIGTERM)
    def on_train_epoch_start(self, t, m): self.fire(t, 'train_epoch_start')
    def on_train_batch_start(self, t, m, b, i): self.fire(t, 'train_batch_start', i)
    def on_train_batch_end(self, t, m, o, b, i): self.fire(t, 'train_batch_end', i)
    def on_validation_start(self, t, m): self.fire(t, 'validation_start')
    def on_validation_batch_end(self, t, m, o, b, i, dataloader_idx=0): self.fire(t, 'validation_batch_end', i)
    def on_validation_end(self, t, m): self.fire(t, 'validation_end')
    def on_train_epoch_end(self, t, m): self.fire(t, 'train_epoch_end')

class EpochMetrics(L.Callback):
    "(epoch, global step, val metrics) at each epoch's end."
    def __init__(self): self.epochs = []
    def on_train_epoch_end(self, trainer, m):
        val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith('val_')}
        self.epochs.append((trainer.current_epoch, trainer.global_step, val))

@pytest.fixture(scope='module')
def toy(spot_tiny):
    "Data and config of a tiny fit (the one of nbs/05_train.ipynb), with one torch thread for exact repeats."
    threads = torch.get_num_threads(); torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    df = pd.DataFrame({'id': range(200), 'text': np.where(y == 1, 'refund now please', 'thank you kindly'),
                       'c': np.where(rng.random(200) < 0.8, y, 1 - y).astype(str), 'x': rng.normal(size=200) + y,
                       'label': y})
    cfg = BSMConfig(cat_field_list=['c'], tab_field_list=['x'], batch_size=16, max_epochs=2, lr=1e-3, seed=0,
                    length_bucketing=False, checkpoint_every_n_steps=5)
    fp = FeatureProcessor.fit(df[:160], cfg, load_tokenizer(str(spot_tiny)))
    yield dict(cfg=cfg, fp=fp, tiny=spot_tiny, tr=BSMDataset(cfg, fp, df=df[:160]), va=BSMDataset(cfg, fp, df=df[160:]))
    torch.set_num_threads(threads)

def _fit(toy, ckpt_dir, cfg=None, callbacks=()):
    "(model, trainer, per-epoch metrics) of `model_train` with resumable checkpoints in `ckpt_dir`."
    cfg, fp = cfg or toy['cfg'], toy['fp']
    L.seed_everything(0, verbose=False)
    m = MultimodalBert(asdict(cfg), fp.cat_cardinalities, fp.n_numeric, fp.label_list, encoder_path=str(toy['tiny']))
    rec = EpochMetrics()
    with contextlib.redirect_stdout(io.StringIO()):
        t = model_train(m, cfg, make_dataloader(toy['tr'], cfg, True), make_dataloader(toy['va'], cfg),
                        checkpoint_dir=ckpt_dir, callbacks=[rec, *callbacks])
    return m, t, rec.epochs

def _same_run(a, b):
    "Two runs (model, trainer, epochs) took the same steps, validated the same epochs alike, kept the same best epoch."
    (ma, ta, ea), (mb, tb, eb) = a, b
    assert tb.global_step == ta.global_step
    assert [e[:2] for e in eb] == [e[:2] for e in ea], (eb, ea) # each epoch validated once, none skipped or repeated
    for (_, _, va), (_, _, vb) in zip(ea, eb): assert vb == pytest.approx(va, abs=1e-6), (vb, va)
    best_score = lambda t: float(t.checkpoint_callback.best_model_score)
    assert best_score(tb) == pytest.approx(best_score(ta), abs=1e-6)
    best_a, best_b = (load_checkpoint(t.checkpoint_callback.best_model_path).state_dict() for t in (ta, tb))
    for k, v in best_a.items(): torch.testing.assert_close(best_b[k], v, atol=1e-6, rtol=0)
    for v, w in zip(ma.state_dict().values(), mb.state_dict().values()):
        torch.testing.assert_close(w, v, atol=1e-6, rtol=0)

def _stop_and_resume(toy, d, stop, cfg=None):
    "Run until `stop` sends SIGTERM, then resume: (the resumed run, the stopped run's epochs first; newest checkpoint)."
    with pytest.raises(SIGTERMException): _fit(toy, d, cfg, [rec := EpochMetrics(), stop])
    newest = list_checkpoints(d)[0].name
    m, t, epochs = _fit(toy, d, cfg)
    return (m, t, rec.epochs + epochs), newest

@pytest.fixture(scope='module')
def uninterrupted(toy, tmp_path_factory): return _fit(toy, tmp_path_factory.mktemp('full'))

MOMENTS = { # name -> (hook, epoch, batch), newest checkpoint left by the stop
    'mid-epoch batch':             (('train_batch_end', 0, 3), 'bsm-e0000-s00000004.ckpt'),
    'during the last batch':       (('train_batch_start', 0, 9), 'bsm-e0000-s00000010.ckpt'),
    'last batch end':              (('train_batch_end', 0, 9), 'bsm-e0000-s00000010.ckpt'),
    'validation start':            (('validation_start', 0, None), 'bsm-e0000-s00000010.ckpt'),
    'a validation batch':          (('validation_batch_end', 0, 0), 'bsm-e0000-s00000010.ckpt'),
    'the last validation batch':   (('validation_batch_end', 0, 2), 'bsm-e0000-s00000010.ckpt'),
    'validation end':              (('validation_end', 0, None), 'bsm-e0000-s00000010.ckpt'),
    'train epoch end':             (('train_epoch_end', 0, None), 'bsm-e0000-s00000010.ckpt'),
    'next epoch start':            (('train_epoch_start', 1, None), 'bsm-e0001-s00000011.ckpt'),
    'last epoch, validation batch': (('validation_batch_end', 1, 1), 'bsm-e0001-s00000020.ckpt'),
    'last epoch end':              (('train_epoch_end', 1, None), 'bsm-e0001-s00000020.ckpt'),
}

@pytest.mark.parametrize('moment', list(MOMENTS))
def test_sigterm_at_any_moment_resumes_as_uninterrupted(moment, toy, uninterrupted, tmp_path):
    "A SIGTERM at any moment of an epoch leaves a checkpoint from which the run ends as the uninterrupted one did."
    where, newest = MOMENTS[moment]
    resumed, left = _stop_and_resume(toy, tmp_path/'ck', SigtermAt(*where))
    assert left == newest
    _same_run(uninterrupted, resumed)

def test_sigterm_twice_in_one_validation(toy, uninterrupted, tmp_path):
    "Stopped in epoch 1's validation, resumed, and stopped again in the same validation: the run still ends alike."
    d = tmp_path/'ck'
    a, b = EpochMetrics(), EpochMetrics()
    with pytest.raises(SIGTERMException): _fit(toy, d, callbacks=[a, SigtermAt('validation_batch_end', 0, 0)])
    with pytest.raises(SIGTERMException): _fit(toy, d, callbacks=[b, SigtermAt('validation_batch_end', 0, 1)])
    m, t, epochs = _fit(toy, d)
    _same_run(uninterrupted, (m, t, a.epochs + b.epochs + epochs))

def test_sigterm_where_early_stopping_ends_the_run(toy, tmp_path):
    "Stopped at the epoch where early stopping ends the run, or in its validation, the resumed run ends there too."
    cfg = BSMConfig(**{**asdict(toy['cfg']), 'lr': 1e-12, 'head_lr': 1e-12, 'max_epochs': 4, 'early_stop_patience': 1})
    full = _fit(toy, tmp_path/'full', cfg) # nothing learnt: val_auroc does not improve after epoch 1
    assert full[1].global_step == 20 and len(full[2]) == 2, full[2]
    for i, where in enumerate([('train_epoch_end', 1, None), ('validation_batch_end', 1, 0)]):
        resumed, _ = _stop_and_resume(toy, tmp_path/f'ck{i}', SigtermAt(*where), cfg)
        _same_run(full, resumed)

# --- a checkpoint is data: one that would run code on unpickling is refused, and nothing runs -------------------------

class RunsCode:
    "Unpickling this runs a shell command: what a hostile checkpoint carries."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))

def test_checkpoint_that_runs_code_is_refused(toy, tmp_path, caplog, monkeypatch):
    "A newest checkpoint that carries code is skipped on resume, with a warning; `load_checkpoint` refuses it too."
    d, marker = tmp_path/'ck', tmp_path/'code-ran'
    with pytest.raises(SIGTERMException): _fit(toy, d, callbacks=[SigtermAt('train_batch_end', 0, 6)])
    good = list_checkpoints(d)[0]
    ck = torch.load(good, weights_only=True)
    evil = d/'bsm-e0001-s00000099.ckpt' # newest, and shaped like ours: only what unpickling does tells it apart
    torch.save({**ck, 'bsm_resume': {**ck['bsm_resume'], 'rng': RunsCode(marker)}}, evil)
    torch.load(evil, weights_only=False); assert marker.exists() # the payload is real
    marker.unlink()
    fits = []
    real_fit = L.Trainer.fit
    monkeypatch.setattr(L.Trainer, 'fit', lambda self, *a, **kw: (fits.append(kw), real_fit(self, *a, **kw))[1])
    with caplog.at_level(logging.WARNING, logger='bsm_nb'): m, t, _ = _fit(toy, d)
    assert f'skipping checkpoint {evil}: it asks to unpickle posix.system' in caplog.text, caplog.text
    assert fits[0]['ckpt_path'] == good and fits[0]['weights_only'] is True # Lightning's own load takes data only too
    assert t.global_step == 20 and not marker.exists()
    best = torch.load(t.checkpoint_callback.best_model_path, weights_only=True)
    hostile = {**best, 'hyper_parameters': {**best['hyper_parameters'], 'label_list': RunsCode(marker)}}
    torch.save(hostile, tmp_path/'best.ckpt')
    with pytest.raises(ValueError, match=r'cannot be loaded: it asks to unpickle posix\.system'):
        load_checkpoint(tmp_path/'best.ckpt')
    assert not marker.exists()
