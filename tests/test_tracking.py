"""`bsm_nb.tracking` against a real `mlflow server` on loopback (SQLite store, proxied artifacts): a Lightning fit
logged through `make_mlflow_logger`, read back through `MlflowClient`; a server killed midway; an ARN with no
SageMaker to reach. The chapter (nbs/11_tracking.ipynb) covers the same with a local directory store."""
import json, os, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest

from bsm_nb.tracking import finish, log_final, make_mlflow_logger, reachable, run_tags

MLFLOW = Path(sys.executable).parent/'mlflow'
ARN = 'arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/bsm-tracking'


def _server_missing()->str:
    "Why no `mlflow server` can run here, or ''."
    if not MLFLOW.exists(): return f'{MLFLOW} is missing: pip install mlflow (the full package, not mlflow-skinny)'
    try: import mlflow.server # noqa: F401 (the server's dependencies: Flask, SQLAlchemy, alembic, ...)
    except ImportError as e: return f'mlflow server cannot run: {e}'
    return ''


class Server:
    "A real `mlflow server` in its own process group on a free loopback port, its store and artifacts under `root`."
    def __init__(self, root:Path, timeout:float=180):
        with socket.socket() as s: s.bind(('127.0.0.1', 0)); self.port = s.getsockname()[1]
        self.uri, self.root, self.log = f'http://127.0.0.1:{self.port}', root, root/'server.log'
        root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, 'MLFLOW_SERVER_ENABLE_JOB_EXECUTION': 'false'} # no job runner processes
        with open(self.log, 'w') as out:
            self.proc = subprocess.Popen([str(MLFLOW), 'server', '--host', '127.0.0.1', '--port', str(self.port),
                                          '--workers', '1', '--backend-store-uri', f'sqlite:///{root}/mlflow.db',
                                          '--artifacts-destination', str(root/'artifacts')],
                                         stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._wait(timeout)

    def _wait(self, timeout:float):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None: break
            try:
                with urllib.request.urlopen(f'{self.uri}/health', timeout=2) as r:
                    if r.status == 200: return
            except OSError: time.sleep(0.5)
        self.stop()
        pytest.fail(f'mlflow server did not answer /health within {timeout:.0f} s; its log:\n'
                    + self.log.read_text()[-3000:])

    def stop(self):
        "Kill the server and the processes it started (its own process group)."
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try: os.killpg(self.proc.pid, sig)
                except ProcessLookupError: break
                try: self.proc.wait(wait); break
                except subprocess.TimeoutExpired: pass
        try: os.killpg(self.proc.pid, signal.SIGKILL) # workers left behind by a clean exit
        except (ProcessLookupError, PermissionError): pass


@pytest.fixture(autouse=True)
def _restore_environ():
    "`make_mlflow_logger` sets MLflow client variables in os.environ; each test gets the environment back."
    saved = dict(os.environ)
    yield
    os.environ.clear(); os.environ.update(saved)


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    if why := _server_missing(): pytest.skip(why)
    s = Server(tmp_path_factory.mktemp('mlflow'))
    yield s
    s.stop()


def tiny_fit(logger, epochs:int):
    "A two-layer module fitted for `epochs` (4 steps each), logging `train_loss` once per epoch through `logger`."
    import torch, lightning as L
    class Tiny(L.LightningModule):
        def __init__(self, step_size:float=0.05):
            super().__init__(); self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        def training_step(self, batch, i):
            loss = torch.nn.functional.mse_loss(self.net(batch[0]).squeeze(-1), batch[1])
            self.log('train_loss', loss, on_step=False, on_epoch=True); return loss
        def configure_optimizers(self): return torch.optim.SGD(self.parameters(), lr=self.hparams.step_size)
    ds = torch.utils.data.TensorDataset(torch.randn(32, 4), torch.randn(32))
    trainer = L.Trainer(max_epochs=epochs, logger=logger, accelerator='cpu', enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)
    trainer.fit(Tiny(), torch.utils.data.DataLoader(ds, batch_size=8))
    return trainer


def test_a_run_reads_back_whole_from_the_server(server, tmp_path):
    from mlflow.tracking import MlflowClient
    assert reachable(server.uri) is None and reachable(server.uri + '/') is None
    hps = {'lr': 3e-5, 'max_epochs': 3, 'fusion': 'gated', 'text_name': ['message']}
    tags = run_tags({'BSM_IMAGE': 'bsm-nb:test', 'TRAINING_JOB_NAME': 'bsm-job-1'}, ['train', 'val', 'test'])
    lg = make_mlflow_logger(server.uri, 'bsm_nb_test', 'tiny-run', tags, hps, rank=0)
    assert lg is not None
    trainer = tiny_fit(lg, epochs=3)
    (tmp_path/'metrics.json').write_text(json.dumps({'test': {'auroc': 0.75}}))
    (tmp_path/'roc_curve.png').write_bytes(b'\x89PNG not really')
    log_final(lg, {'val': {'auroc': 0.8, 'rows': 40}, 'test': {'auroc': 0.75, 'rows': 40}, 'threshold': 0.5,
                   'encoder': 'tiny'},
              [tmp_path/'metrics.json', tmp_path/'roc_curve.png', tmp_path/'no_such.png'], step=trainer.global_step)
    finish(lg)
    assert lg.stopped is None

    client = MlflowClient(server.uri)
    run = client.get_run(lg.run_id)
    assert client.get_experiment(run.info.experiment_id).name == 'bsm_nb_test'
    assert (run.info.run_name, run.info.status) == ('tiny-run', 'FINISHED')
    params = run.data.params
    assert {k: params.get(k) for k in hps} == {'lr': '3e-05', 'max_epochs': '3',
                                               'fusion': 'gated', 'text_name': "['message']"}
    assert params.get('model/step_size') == '0.05' # the module's own hyperparameters, logged by Lightning under model/
    history = client.get_metric_history(lg.run_id, 'train_loss')
    assert [m.step for m in history] == [3, 7, 11], [(m.step, m.value) for m in history] # one per epoch
    assert {k: v for k, v in run.data.metrics.items() if k.startswith('final/')} == {
        'final/val_auroc': 0.8, 'final/val_rows': 40.0, 'final/test_auroc': 0.75, 'final/test_rows': 40.0,
        'final/threshold': 0.5}
    assert sorted(a.path for a in client.list_artifacts(lg.run_id)) == ['metrics.json', 'roc_curve.png']
    got = Path(client.download_artifacts(lg.run_id, 'metrics.json', str(tmp_path/'down')))
    assert json.loads(got.read_text()) == {'test': {'auroc': 0.75}}
    assert all(run.data.tags.get(k) == v for k, v in tags.items()), {k: run.data.tags.get(k) for k in tags}
    assert tags['bsm_nb.image'] == 'bsm-nb:test' and tags['sagemaker.training_job_name'] == 'bsm-job-1'


def test_only_global_rank_zero_starts_a_run(server):
    from mlflow.tracking import MlflowClient
    client = MlflowClient(server.uri)
    before = client.get_experiment_by_name('bsm_nb_ranks')
    assert make_mlflow_logger(server.uri, 'bsm_nb_ranks', 'r1', {}, {'a': 1}, rank=1) is None
    os.environ['NODE_RANK'] = '1' # a second host, before Lightning starts its processes
    assert make_mlflow_logger(server.uri, 'bsm_nb_ranks', 'r1', {}, {'a': 1}) is None
    assert before is None and client.get_experiment_by_name('bsm_nb_ranks') is None # nothing was created


def test_a_server_killed_midway_is_warnings_not_a_failed_job(tmp_path, caplog):
    if why := _server_missing(): pytest.skip(why)
    s = Server(tmp_path/'mlflow')
    try:
        lg = make_mlflow_logger(s.uri, 'bsm_nb_dies', 'dies-after-fit', {}, {'a': 1}, rank=0)
        lg2 = make_mlflow_logger(s.uri, 'bsm_nb_dies', 'dies-during-fit', {}, {'a': 1}, rank=0)
        assert lg is not None and lg2 is not None
        tiny_fit(lg, epochs=1)
    finally: s.stop()
    assert s.proc.poll() is not None
    (tmp_path/'metrics.json').write_text('{}')
    caplog.set_level('WARNING', logger='bsm_nb')
    t0 = time.time()
    log_final(lg, {'test': {'auroc': 0.5}}, [tmp_path/'metrics.json']) # the server is gone: a warning, no exception
    finish(lg, 'FINISHED')
    assert time.time() - t0 < 30, f'{time.time() - t0:.0f} s'
    assert lg.stopped and 'logging the final metrics and files failed' in caplog.text, caplog.text
    t0 = time.time()
    trainer = tiny_fit(lg2, epochs=2) # the server died before this fit: training goes on
    assert trainer.current_epoch == 2 and time.time() - t0 < 60, f'{time.time() - t0:.0f} s'
    assert (lg2.stopped and 'logging metrics failed' in caplog.text
            and 'tracking stops here, training goes on' in caplog.text)


def test_an_arn_with_no_sagemaker_to_reach_is_a_warning(monkeypatch, tmp_path, caplog):
    """The ARN goes to sagemaker-mlflow's store; with no AWS to reach
    (fake credentials, offline or refused) the run is a warning."""
    from importlib.metadata import entry_points
    from mlflow.tracking import MlflowClient
    assert 'arn' in {e.name for e in entry_points(group='mlflow.tracking_store')}, 'pip install sagemaker-mlflow'
    for k, v in {'AWS_ACCESS_KEY_ID': 'testing', 'AWS_SECRET_ACCESS_KEY': 'testing', 'AWS_DEFAULT_REGION': 'us-east-1',
                 'AWS_EC2_METADATA_DISABLED': 'true', 'AWS_CONFIG_FILE': str(tmp_path/'aws_config'),
                 'AWS_SHARED_CREDENTIALS_FILE': str(tmp_path/'aws_credentials')}.items(): monkeypatch.setenv(k, v)
    monkeypatch.delenv('AWS_PROFILE', raising=False)
    assert type(MlflowClient(ARN)._tracking_client.store).__module__.startswith('sagemaker_mlflow')
    assert reachable(ARN) is None # not probed: the plugin signs each request
    caplog.set_level('WARNING', logger='bsm_nb')
    t0 = time.time()
    assert make_mlflow_logger(ARN, 'bsm_nb', 'r', {}, {'a': 1}, rank=0) is None
    assert time.time() - t0 < 60, f'{time.time() - t0:.0f} s'
    assert f'MLflow tracking is off: {ARN} cannot be used' in caplog.text, caplog.text


def test_importing_the_module_stays_light():
    "The train program checks the tracking URI with the other config errors, before torch and Lightning are imported."
    code = ("import sys, bsm_nb.tracking as t; t.check_tracking_uri('http://h:1'); "
            "print(','.join(m for m in ('torch', 'lightning', 'mlflow') if m in sys.modules))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == '', r.stdout + r.stderr


def test_the_logger_class_is_a_module_attribute():
    "Made on first use, it is still found by name, so that pickle (and `isinstance` checks) work."
    import pickle
    import bsm_nb.tracking as t
    from lightning.pytorch.loggers import MLFlowLogger
    cls = t.SafeMLFlowLogger
    assert issubclass(cls, MLFlowLogger) and cls.__module__ == 'bsm_nb.tracking' and cls is t._safe_logger_class()
    assert pickle.loads(pickle.dumps(cls)) is cls
    with pytest.raises(AttributeError): t.NoSuchThing


# --- the train program ------------------------------------------------------------------------------

def test_train_logs_its_run_to_the_server(server, train_tree, train_run, tiny_bert_dir):
    """`bsm-train` with `mlflow_tracking_uri`: every hyperparameter, one val metric per epoch, the final metrics,
    the plots and metrics.json, and the run's tags, read back through `MlflowClient`."""
    import bsm_nb
    from mlflow.tracking import MlflowClient
    with_password = server.uri.replace('http://', 'http://me:s3cret@') # the server ignores it; nothing may keep it
    base = train_tree('tracked', n_train=80, n_val=30, n_test=30, seed=5,
                      hyperparameters={'max_epochs': 2, 'mlflow_tracking_uri': with_password,
                                       'mlflow_experiment': 'bsm-e2e', 'checkpoint_every_n_steps': 2})
    rc, out, _ = train_run(base, '--pretrained_model', tiny_bert_dir)
    assert rc == 0, out[-4000:]
    kept = [p for p in [*(base/'model').rglob('*'), *(base/'checkpoints').rglob('*')] if p.is_file()
            and b's3cret' in p.read_bytes()]
    assert not kept and 's3cret' not in out, kept
    assert json.loads((base/'model'/'bsm_model.json').read_text())['config']['mlflow_tracking_uri'] == server.uri
    client = MlflowClient(server.uri)
    (run,) = client.search_runs([client.get_experiment_by_name('bsm-e2e').experiment_id])
    m = json.loads((base/'model'/'metrics.json').read_text())
    assert run.info.status == 'FINISHED'
    assert (run.data.params['max_epochs'], run.data.params['mlflow_experiment']) == ('2', 'bsm-e2e')
    assert {'lr', 'fusion', 'ensemble', 'calibrate', 'text_name'} <= set(run.data.params)
    assert 'model/n_numeric' in run.data.params and 'logging hyperparameters failed' not in out # the model's own, apart
    assert len(client.get_metric_history(run.info.run_id, 'val_auroc')) == m['epochs'] == 2
    assert run.data.metrics['final/test_auroc'] == pytest.approx(m['test']['auroc'])
    assert run.data.metrics['final/threshold'] == pytest.approx(m['threshold'])
    assert ({'metrics.json', 'roc_curve.png', 'pr_curve.png', 'calibration_curve.png'}
            <= {a.path for a in client.list_artifacts(run.info.run_id)})
    assert run.data.tags['bsm_nb.version'] == bsm_nb.__version__ and 'train' in run.data.tags['bsm_nb.channels']
    assert run.data.params['mlflow_tracking_uri'] == server.uri and 's3cret' not in json.dumps(run.data.params)


def test_train_with_an_unreachable_server_still_lands_the_model(train_tree, train_run, tiny_bert_dir):
    "A tracking server that does not answer is a warning in the log; the run succeeds and the model dir is complete."
    base = train_tree('untracked', n_train=60, n_val=20, n_test=20, seed=6,
                      hyperparameters={'max_epochs': 1, 'mlflow_tracking_uri': 'http://127.0.0.1:9'})
    rc, out, _ = train_run(base, '--pretrained_model', tiny_bert_dir)
    assert rc == 0, out[-4000:]
    assert (base/'model'/'bsm_model.json').exists()
    assert 'http://127.0.0.1:9' in out and 'WARNING' in out, out[-3000:]


def test_a_bad_tracking_uri_fails_before_training(train_tree, train_run, tiny_bert_dir):
    """A tracking URI of no accepted form is a config error:
    exit 255 at once, the failure file naming the hyperparameter."""
    base = train_tree('badtracking', n_train=40, n_val=16, n_test=16,
                      hyperparameters={'mlflow_tracking_uri': 'ftp://x'})
    rc, out, _ = train_run(base, '--pretrained_model', tiny_bert_dir)
    assert rc == 255, out[-3000:]
    first = (base/'output'/'failure').read_text().splitlines()[0]
    assert 'mlflow_tracking_uri' in first and 'ftp://x' in first, first
    assert 'epoch=' not in out
