"""The image as SageMaker runs it: `IMAGE train` with a SageMaker tree mounted at /opt/ml, `IMAGE serve` on port 8080.

`make container-test` builds docker/Dockerfile with podman (tests/container/build.sh) and runs this file with
BSM_CONTAINER_IMAGE set to the image; elsewhere these tests skip. Containers publish ports on loopback only, and
training runs with no network at all, as a network-isolated SageMaker job would."""
import io, json, os, re, shutil, socket, subprocess, time, uuid
from pathlib import Path

import numpy as np, pandas as pd
import pytest
import requests

from bsm_nb.synthetic import write_sagemaker_tree

ROOT = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get('BSM_CONTAINER_IMAGE', '')
ENGINE = shutil.which(os.environ.get('BSM_CONTAINER_ENGINE', 'podman'))
ENV = {**os.environ, 'CONTAINERS_CONF': os.environ.get('CONTAINERS_CONF', str(ROOT/'tests'/'container'/'containers.conf'))}
MODEL_FILES = {'bsm_model.json', 'model.safetensors', 'preprocessor.json', 'tokenizer', 'metrics.json', 'predictions.csv',
               'predictions_val.csv', 'roc_curve.png', 'pr_curve.png', 'calibration_curve.png', 'trees.txt'}
# small and quick: the packaged MiniLM on a few hundred synthetic rows, short sequences
HPS = {'max_epochs': '1', 'batch_size': '16', 'max_seq_length': '32'}
CSV, JSON, JSONL = 'text/csv', 'application/json', 'application/jsonlines'

pytestmark = [pytest.mark.timeout(900),
              pytest.mark.skipif(not IMAGE or not ENGINE, reason='the image is built and run by `make container-test` '
                                 '(it sets BSM_CONTAINER_IMAGE and needs podman as root)')]


def engine(*args, timeout:float=600, check:bool=False)->subprocess.CompletedProcess:
    r = subprocess.run([ENGINE, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout)
    if check: assert r.returncode == 0, f'{ENGINE} {" ".join(map(str, args))}: {r.returncode}\n{r.stdout[-3000:]}{r.stderr[-3000:]}'
    return r


def tree(tmp_path_factory, name:str, n_train:int=200, **hps)->Path:
    "A synthetic SageMaker tree (train/val/test channels, hyperparameters.json, model/, output/), for /opt/ml."
    return write_sagemaker_tree(tmp_path_factory.mktemp(name)/'ml', n_train=n_train, n_val=100, n_test=100, seed=1,
                                hyperparameters={**HPS, **hps})


def run_image(base:Path, *command, timeout:float=600)->subprocess.CompletedProcess:
    "`IMAGE command...` with `base` as /opt/ml and no network; `command` empty = what SageMaker's local mode runs."
    return engine('run', '--rm', '--network', 'none', '-v', f'{base}:/opt/ml', IMAGE, *command, timeout=timeout)


class Container:
    "A detached container of the image, removed at the end."
    def __init__(self, *args):
        self.name = f'bsm-test-{uuid.uuid4().hex[:10]}'
        engine('run', '-d', '--name', self.name, *args, check=True)

    def logs(self)->str:
        r = engine('logs', self.name)
        return r.stdout + r.stderr

    def state(self)->dict: return json.loads(engine('inspect', '--format', '{{json .State}}', self.name, check=True).stdout)

    def wait_for_log(self, text:str, timeout:float=300)->str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.logs()
            if text in out: return out
            assert self.state()['Running'], f'the container stopped before logging {text!r}:\n{out[-4000:]}'
            time.sleep(0.5)
        pytest.fail(f'{text!r} not logged within {timeout} s:\n{self.logs()[-4000:]}')

    def remove(self): engine('rm', '-f', '-t', '0', self.name)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    "A tree trained by `IMAGE train`: (base, output)."
    base = tree(tmp_path_factory, 'trained', n_train=600, max_epochs='2')
    r = run_image(base, 'train')
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-5000:]
    return base, out


# --- train --------------------------------------------------------------------------------------------

def test_train_writes_a_complete_model_dir_and_a_final_line(trained):
    base, out = trained
    names = {p.name for p in (base/'model').iterdir()}
    assert MODEL_FILES <= names, f'missing {MODEL_FILES - names}\n{out[-3000:]}'
    final = [l for l in out.splitlines() if l.startswith('final ')]
    assert len(final) == 1, out[-3000:]
    auroc = float(re.search(r'\btest_auroc=([0-9.]+)', final[0]).group(1))
    assert auroc == pytest.approx(json.loads((base/'model'/'metrics.json').read_text())['test']['auroc'], abs=1e-4)
    assert auroc > 0.6, final[0] # the synthetic label is learnable: a broken encoder would sit at 0.5
    assert not (base/'output'/'failure').exists()


def test_bad_hyperparameter_exits_255_with_a_failure_file_naming_it(tmp_path_factory):
    base = tree(tmp_path_factory, 'bad', max_epochs='many')
    r = run_image(base, 'train', timeout=300)
    assert r.returncode == 255, r.stdout[-2000:] + r.stderr[-2000:]
    failure = (base/'output'/'failure').read_text()
    assert 'max_epochs' in failure and 'many' in failure, failure
    assert not (base/'model'/'bsm_model.json').exists()


def test_sigterm_mid_training_exits_143_and_the_next_run_resumes(tmp_path_factory, trained):
    """SageMaker stops a job (spot reclaim, StopTrainingJob) with SIGTERM; the next run, here with no command as local
    mode starts it, resumes and ends where the uninterrupted run of the same data (`trained`) ended."""
    base = tree(tmp_path_factory, 'spot', n_train=600, max_epochs='2', checkpoint_every_n_steps='5') # `trained`'s data
    c = Container('--network', 'none', '-v', f'{base}:/opt/ml', IMAGE, 'train')
    try:
        c.wait_for_log('bsm-e0000-s00000010.ckpt')
        t0 = time.monotonic()
        engine('kill', '--signal', 'TERM', c.name, check=True)
        code = int(engine('wait', c.name, timeout=120, check=True).stdout.strip())
        stopped_in, out = time.monotonic() - t0, c.logs()
    finally: c.remove()
    assert code == 143, out[-4000:]
    assert stopped_in < 30, stopped_in # SageMaker sends SIGKILL 30 s after SIGTERM
    assert 'SIGTERM' in (base/'output'/'failure').read_text()
    assert list((base/'checkpoints').glob('bsm-*.ckpt')) and not list((base/'checkpoints').glob('.tmp-*'))
    assert not (base/'model'/'bsm_model.json').exists()

    (base/'output'/'failure').unlink()
    r = run_image(base) # no command: the image's default is train
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-5000:]
    assert re.search(r'resumed from \S+bsm-e0000-s\d+\.ckpt at epoch 0 step \d+', out), out[-5000:]
    assert MODEL_FILES <= {p.name for p in (base/'model').iterdir()}
    assert any(l.startswith('final ') for l in out.splitlines())
    got, ref = (json.loads((b/'model'/'metrics.json').read_text()) for b in (base, trained[0]))
    assert got['steps'] == ref['steps'] and got['test']['auroc'] == pytest.approx(ref['test']['auroc'], abs=1e-4), (got, ref)


def test_unknown_command_is_refused(tmp_path_factory):
    r = engine('run', '--rm', '--network', 'none', IMAGE, 'fit', timeout=120)
    assert r.returncode == 64 and "unknown command 'fit'" in r.stderr, r.stderr


# --- serve --------------------------------------------------------------------------------------------

def free_port()->int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Server(Container):
    "`IMAGE serve` with the trained tree at /opt/ml, its port published on loopback."
    def __init__(self, base:Path, port:int=8080, *env):
        self.host_port = free_port()
        self.url = f'http://127.0.0.1:{self.host_port}'
        super().__init__('-p', f'127.0.0.1:{self.host_port}:{port}', '-v', f'{base}:/opt/ml', *env, IMAGE, 'serve')

    def wait_ready(self, timeout:float=240)->list:
        "Ping until 200; the statuses seen on the way."
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = requests.get(f'{self.url}/ping', timeout=5)
                seen.append(r.status_code)
                if r.status_code == 200: return seen
            except requests.ConnectionError: pass
            assert self.state()['Running'], f'serve exited:\n{self.logs()[-4000:]}'
            time.sleep(0.1)
        pytest.fail(f'/ping not 200 within {timeout} s (seen {seen[-5:]}):\n{self.logs()[-4000:]}')

    def post(self, body:bytes, content_type:str, accept:str|None=None)->requests.Response:
        headers = {'Content-Type': content_type, **({'Accept': accept} if accept else {})}
        return requests.post(f'{self.url}/invocations', data=body, headers=headers, timeout=60)

    def stop(self)->tuple:
        "SageMaker's stop: SIGTERM, SIGKILL 30 s later. (exit code, seconds taken)."
        t0 = time.monotonic()
        engine('stop', '-t', '30', self.name, timeout=90, check=True)
        return self.state()['ExitCode'], time.monotonic() - t0


@pytest.fixture(scope='module')
def server(trained):
    s = Server(trained[0])
    try:
        s.seen = s.wait_ready()
        yield s
    finally: s.remove()


def test_ping_says_503_while_loading_then_200(server):
    assert server.seen[-1] == 200 and 503 in server.seen, server.seen
    assert requests.get(f'{server.url}/ping', timeout=5).json() == {'status': 'ready'}


def test_invocations_in_json_csv_and_jsonlines_match_training_predictions(server, trained):
    base = trained[0]
    rows = pd.read_csv(base/'input'/'data'/'test'/'test.csv', dtype=str).iloc[:20]
    recs = rows.astype(object).where(rows.notna(), None).to_dict('records')
    bodies = {JSON: json.dumps(recs).encode(), CSV: rows.to_csv(index=False).encode(),
              JSONL: ''.join(json.dumps(r) + '\n' for r in recs).encode()}
    answers = {}
    for content_type, body in bodies.items():
        r = server.post(body, content_type, accept=content_type)
        assert r.status_code == 200, (content_type, r.text)
        if content_type == CSV: got = pd.read_csv(io.StringIO(r.text), header=None, names=['id', 'probability', 'label'], dtype={'id': str})
        elif content_type == JSON: got = pd.DataFrame(r.json()['predictions'])
        else: got = pd.DataFrame([json.loads(l) for l in r.text.splitlines()])
        answers[content_type] = got
        assert got['id'].astype(str).tolist() == rows['case_id'].tolist()
    for got in answers.values(): # one model, one answer, whatever the format
        np.testing.assert_allclose(got['probability'].astype(float), answers[JSON]['probability'].astype(float), atol=1e-5)
    # and the answer training gave for the same rows in predictions.csv
    saved = pd.read_csv(base/'model'/'predictions.csv', dtype={'case_id': str, 'id': str})
    id_col = 'case_id' if 'case_id' in saved else 'id'
    prob_col = next(c for c in saved.columns if 'prob' in c)
    saved = saved.set_index(id_col).loc[rows['case_id']]
    np.testing.assert_allclose(answers[JSON]['probability'].astype(float), saved[prob_col].astype(float), atol=0.02)


def test_execution_parameters_the_row_limit_and_a_client_error(server):
    "The row limit measured when the model loaded (logged) is what /execution-parameters' payload and a 413 follow."
    m = re.search(r'at most (\d+) rows a request', server.logs())
    assert m, server.logs()[-3000:]
    limit = int(m.group(1))
    r = requests.get(f'{server.url}/execution-parameters', timeout=5)
    assert r.status_code == 200 and r.json()['BatchStrategy'] == 'MULTI_RECORD', r.text
    assert r.json()['MaxPayloadInMB'] == max(1, min(6, limit * 100 // 2**20)), (limit, r.json())
    r = server.post(json.dumps([{'message': 'hi'}] * (limit + 1)).encode(), JSON)
    assert r.status_code == 413 and f'at most {limit} rows a request' in r.json()['error'], r.text[:300]
    r = server.post(b'<a/>', 'application/xml')
    assert r.status_code == 415 and 'unsupported Content-Type' in r.json()['error']
    r = server.post(b'[{"message": ', JSON)
    assert r.status_code == 400 and 'error' in r.json()


def test_serve_on_sagemaker_bind_to_port_and_stop_within_30s(trained):
    s = Server(trained[0], 9091, '-e', 'SAGEMAKER_BIND_TO_PORT=9091', '-e', 'MAX_ROWS_PER_REQUEST=5')
    try:
        s.wait_ready()
        r = s.post(json.dumps([{'message': 'hi'}] * 6).encode(), JSON) # the environment's limit, not the measured one
        assert r.status_code == 413 and 'at most 5 rows a request' in r.json()['error'], r.text[:300]
        procs = engine('top', s.name, 'args', check=True).stdout
        assert 'nginx' in procs and ('gunicorn' in procs or 'run_app_server' in procs), procs
        code, took = s.stop()
        logs = s.logs()
    finally: s.remove()
    assert code == 0, logs[-4000:] # 137 would mean SageMaker's SIGKILL had to end it
    assert took < 30, took
    assert 'stopped' in logs


# --- a base that brings its own torch (an AWS Deep Learning Container, pytorch/pytorch) ---------------------

WHEELS = Path(os.environ.get('BSM_TORCH_BASE_WHEELS', '/opt/wheels'))
BASE = os.environ.get('BSM_BASE_IMAGE', 'localhost/bsm-rehearsal-base:bookworm')

def test_a_base_with_its_own_torch_keeps_it(tmp_path):
    "The Dockerfile on a base whose python3 already imports torch: that torch stays, the rest installs beside it."
    torch_wheels = sorted(WHEELS.glob('torch-*.whl'))
    if not torch_wheels: pytest.skip(f'no torch wheel in {WHEELS} to make a base with torch (BSM_TORCH_BASE_WHEELS)')
    wheel = torch_wheels[-1].name
    (tmp_path/'Containerfile').write_text(
        f'FROM {BASE}\n'
        'RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv && rm -rf /var/lib/apt/lists/*\n'
        f'RUN pip install --no-cache-dir --break-system-packages /wheels/{wheel}\n')
    base_with_torch, image = 'localhost/bsm-test-base-with-torch:latest', 'localhost/bsm-nb:test-base-with-torch'
    engine('build', '--format', 'docker', '--network', 'host', '-v', f'{WHEELS}:/wheels:ro', '-t', base_with_torch, tmp_path, timeout=900, check=True)
    engine('build', '--format', 'docker', '--network', 'host', '-f', ROOT/'docker'/'Dockerfile', '--build-arg', f'BASE_IMAGE={base_with_torch}',
           '-t', image, ROOT, timeout=1200, check=True)
    probe = ('import importlib.metadata as m, torch, bsm_nb.entrypoint, bsm_nb.serve; '
             'print(m.version("torch"), torch.__file__, open("/opt/venv/torch-constraint.txt").read().strip())')
    r = engine('run', '--rm', '--network', 'none', image, 'python', '-c', probe, timeout=300, check=True)
    version, path, pin = r.stdout.split()
    assert path.startswith('/usr/local/lib/python3') or path.startswith('/usr/lib/python3'), path # the base's, not the venv's
    assert not path.startswith('/opt/venv') and pin == f'torch=={version}' and version in wheel, (r.stdout, wheel)
    r = engine('run', '--rm', '--network', 'none', image, 'serve', '--print-nginx-conf', timeout=300, check=True)
    assert 'listen 8080;' in r.stdout
