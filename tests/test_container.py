"""The image as SageMaker runs it: `IMAGE train` with a SageMaker tree mounted at /opt/ml, `IMAGE serve` on port 8080.

`make container-test` builds docker/Dockerfile with podman (tests/container/build.sh) and runs this file with
BSM_CONTAINER_IMAGE set to the image; elsewhere these tests skip. Containers publish ports on loopback only, and
training runs with no network at all, as a network-isolated SageMaker job would."""
import io, json, os, re, shutil, subprocess, sys, time, uuid
from pathlib import Path

import numpy as np, pandas as pd
import pytest
import requests

from bsm_nb.server import free_port
from bsm_nb.synthetic import write_sagemaker_tree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'docker'))
import lock as image_lock # docker/lock.py: the lock the image is built from
IMAGE = os.environ.get('BSM_CONTAINER_IMAGE', '')
ENGINE = shutil.which(os.environ.get('BSM_CONTAINER_ENGINE', 'podman'))
ENV = {**os.environ,
       'CONTAINERS_CONF': os.environ.get('CONTAINERS_CONF', str(ROOT/'tests'/'container'/'containers.conf'))}
MODEL_FILES = {'bsm_model.json', 'model.safetensors', 'preprocessor.json', 'tokenizer', 'metrics.json',
               'predictions.csv', 'predictions_val.csv', 'roc_curve.png', 'pr_curve.png',
               'calibration_curve.png'} # + the trees the answers use
# small and quick: the packaged MiniLM on a few hundred synthetic rows, short sequences
HPS = {'max_epochs': '1', 'batch_size': '16', 'max_seq_length': '32'}
CSV, JSON, JSONL = 'text/csv', 'application/json', 'application/jsonlines'

pytestmark = [pytest.mark.timeout(900),
              pytest.mark.skipif(not IMAGE or not ENGINE, reason='the image is built and run by `make container-test` '
                                 '(it sets BSM_CONTAINER_IMAGE and needs podman as root)')]


def engine(*args, timeout:float=600, check:bool=False)->subprocess.CompletedProcess:
    r = subprocess.run([ENGINE, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout)
    if check: assert r.returncode == 0, (f'{ENGINE} {" ".join(map(str, args))}: '
                                         f'{r.returncode}\n{r.stdout[-3000:]}{r.stderr[-3000:]}')
    return r


def tree(tmp_path_factory, name:str, n_train:int=200, **hps)->Path:
    "A synthetic SageMaker tree (train/val/test channels, hyperparameters.json, model/, output/), for /opt/ml."
    return write_sagemaker_tree(tmp_path_factory.mktemp(name)/'ml', n_train=n_train, n_val=100, n_test=100, seed=1,
                                hyperparameters={**HPS, **hps})


def run_image(base:Path, *command, timeout:float=600)->subprocess.CompletedProcess:
    "`IMAGE command...` with `base` as /opt/ml and no network; `command` empty = what SageMaker's local mode runs."
    return engine('run', '--rm', '--network', 'none', '-v', f'{base}:/opt/ml', IMAGE, *command, timeout=timeout)


def train_in_image(base:Path, *flags, timeout:float=600)->str:
    "`IMAGE train flags...` on `base`, which must succeed; its output."
    r = run_image(base, 'train', *flags, timeout=timeout)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-5000:]
    return out


def copy_tree(base:Path, tmp_path_factory, name:str)->Path:
    "A copy of the /opt/ml tree `base` (a trained one, say), to change without touching the module's."
    dest = tmp_path_factory.mktemp(name)/'ml'
    shutil.copytree(base, dest, symlinks=True)
    return dest


def python_in_image(code:str, image:str|None=None, timeout:float=300)->str:
    "stdout of `python -c code` in a fresh container of `image` (default the one under test), with no network."
    r = engine('run', '--rm', '--network', 'none', image or IMAGE, 'python', '-c', code, timeout=timeout, check=True)
    return r.stdout


class Container:
    "A detached container of the image, removed at the end."
    def __init__(self, *args):
        self.name = f'bsm-test-{uuid.uuid4().hex[:10]}'
        engine('run', '-d', '--name', self.name, *args, check=True)

    def logs(self)->str:
        r = engine('logs', self.name)
        return r.stdout + r.stderr

    def state(self)->dict:
        return json.loads(engine('inspect', '--format', '{{json .State}}', self.name, check=True).stdout)

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
    return base, train_in_image(base)


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
    # plain log lines for CloudWatch: no progress bar (the notebook API's), no carriage returns
    assert '\r' not in out and not re.search(r'Epoch \d+:.*it/s', out), out[-3000:]


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
    assert (got['steps'] == ref['steps']
            and got['test']['auroc'] == pytest.approx(ref['test']['auroc'], abs=1e-4)), (got, ref)


def tail_tree(tmp_path_factory, name:str)->Path:
    "13 steps an epoch (periodic checkpoints at 5 and 10), 75 validation batches: validation fills most of 10 -> 13."
    return write_sagemaker_tree(tmp_path_factory.mktemp(name)/'ml', n_train=100, n_val=600, n_test=100, seed=1,
                                hyperparameters={**HPS, 'batch_size': '8', 'max_epochs': '2',
                                                 'checkpoint_every_n_steps': '5', 'num_threads': '1'})


def appeared(path:Path, timeout:float=300)->float:
    "Poll (every 5 ms: `wait_for_log` is too coarse for an epoch's tail) until `path` exists; when it did."
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f'{path} did not appear'
        time.sleep(0.005)
    return time.monotonic()


class RunsCode:
    "Unpickled, it would run a command: what a doctored checkpoint on the S3 checkpoint prefix could hold."
    def __reduce__(self): return (os.system, ('touch /opt/ml/output/ran',))


@pytest.fixture(scope='module')
def tail_trained(tmp_path_factory):
    "The uninterrupted run of `tail_tree`'s data through the image: (base, output)."
    base = tail_tree(tmp_path_factory, 'tail-ref')
    return base, train_in_image(base)


@pytest.mark.parametrize('moment', ['validation', 'epoch end'])
def test_sigterm_around_an_epochs_end_then_the_image_resumes(moment, tmp_path_factory, tail_trained):
    """SIGTERM during the last batches' validation, or right after the epoch's checkpoint: exit 143, then
    `IMAGE` resumes and ends with the uninterrupted run's steps, per-epoch validation and metrics. Before the
    second start a doctored checkpoint, newer than the real ones, is put beside them: it is skipped, and the
    command it holds never runs."""
    import torch
    ref_base, ref_out = tail_trained
    ck = lambda b, s: b/'checkpoints'/f'bsm-e0000-s{s:08d}.ckpt'
    for k in ((1.5, 1.0, 2.5) if moment == 'validation' else (0,)): # aim again if load moved the moment
        base = tail_tree(tmp_path_factory, f'tail-{moment.replace(" ", "-")}-{k}')
        c = Container('--network', 'none', '-v', f'{base}:/opt/ml', IMAGE, 'train')
        try:
            t5 = appeared(ck(base, 5)); t10 = appeared(ck(base, 10))
            if moment == 'validation': time.sleep(k * (t10 - t5)) # 3 train batches, then validation (~5x t10 - t5)
            else: appeared(ck(base, 13)) # the epoch end's checkpoint: between epochs
            engine('kill', '--signal', 'TERM', c.name, check=True)
            code = int(engine('wait', c.name, timeout=120, check=True).stdout.strip()); out = c.logs()
        finally: c.remove()
        stop = re.search(r'stopped by SIGTERM at epoch (\d+) step (\d+)', out)
        if moment != 'validation' or (stop and stop.groups() == ('0', '13') and 'epoch=1 ' not in out): break
    assert code == 143 and stop, out[-4000:]
    if moment == 'validation':
        assert stop.groups() == ('0', '13') and 'epoch=1 ' not in out and ck(base, 13).exists(), out[-4000:]
    (base/'output'/'failure').unlink()
    torch.save({'state_dict': RunsCode()}, base/'checkpoints'/'bsm-e0001-s00000099.ckpt')
    r = run_image(base)
    res = r.stdout + r.stderr
    assert r.returncode == 0, res[-5000:]
    assert 'skipping checkpoint' in res and 'bsm-e0001-s00000099.ckpt' in res, res[-5000:]
    assert not (base/'output'/'ran').exists(), 'the doctored checkpoint ran its command'
    assert f'at epoch {stop.group(1)} step {stop.group(2)}' in re.search(r'resumed from .*', res).group(0), res[-5000:]
    val = lambda o: [' '.join(w for w in l.split() if not w.startswith('train_loss')) for l in o.splitlines()
                     if l.startswith('epoch=')]
    assert val(out) + val(res) == val(ref_out) # every epoch validated once, alike
    got, ref = (json.loads((b/'model'/'metrics.json').read_text()) for b in (base, ref_base))
    assert got['steps'] == ref['steps']
    for split in ('val', 'test'): assert got[split] == pytest.approx(ref[split], abs=1e-4), split

def test_unknown_command_is_refused(tmp_path_factory):
    r = engine('run', '--rm', '--network', 'none', IMAGE, 'fit', timeout=120)
    assert r.returncode == 64 and "unknown command 'fit'" in r.stderr, r.stderr


# --- serve --------------------------------------------------------------------------------------------

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
        if content_type == CSV:
            got = pd.read_csv(io.StringIO(r.text), header=None, names=['id', 'probability', 'label'], dtype={'id': str})
        elif content_type == JSON: got = pd.DataFrame(r.json()['predictions'])
        else: got = pd.DataFrame([json.loads(l) for l in r.text.splitlines()])
        answers[content_type] = got
        assert got['id'].astype(str).tolist() == rows['case_id'].tolist()
    for got in answers.values(): # one model, one answer, whatever the format
        np.testing.assert_allclose(got['probability'].astype(float), answers[JSON]['probability'].astype(float),
                                   atol=1e-5)
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


PROCESSES = """import json, os, pwd
procs = []
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        cmd = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode(errors='replace').strip()
        status = dict(l.split(':', 1) for l in open(f'/proc/{pid}/status').read().splitlines() if ':' in l)
    except OSError: continue
    uid = int(status['Uid'].split()[1]) # effective
    procs.append({'pid': int(pid), 'ppid': int(status['PPid']), 'uid': uid, 'user': pwd.getpwuid(uid).pw_name,
                  'cmd': cmd})
print(json.dumps(procs))"""

def test_serving_workers_run_unprivileged(server):
    "gunicorn's workers (forks of its master, each with a model) and nginx's run as users without root's powers."
    procs = json.loads(engine('exec', server.name, 'python', '-c', PROCESSES, check=True).stdout)
    by_pid = {p['pid']: p for p in procs}
    app = [p for p in procs if 'run_app_server' in p['cmd'] or 'gunicorn' in p['cmd']]
    workers = [p for p in app if p['ppid'] in by_pid and by_pid[p['ppid']] in app] # children of the gunicorn master
    assert workers, json.dumps(procs, indent=1)
    assert all(p['uid'] != 0 and p['user'] == 'bsm' for p in workers), json.dumps(workers, indent=1)
    nginx_workers = [p for p in procs if p['cmd'].startswith('nginx: worker')]
    assert nginx_workers and all(p['uid'] != 0 for p in nginx_workers), json.dumps(procs, indent=1)
    ids = engine('exec', server.name, 'id', 'www-data', check=True).stdout
    assert '(bsm)' in ids, ids # nginx's workers reach the workers' socket through group bsm
    r = requests.post(f'{server.url}/invocations', json=[{'message': 'where is my refund'}], timeout=60)
    assert r.status_code == 200, r.text # and the unprivileged workers still answer


def test_the_workers_socket_and_run_dir_are_theirs_alone(server):
    "The socket nginx reaches the workers by is 0660 bsm:bsm in a 0750 root:bsm dir; nothing there is open to others."
    out = engine('exec', server.name, 'sh', '-c', "stat -c '%a %U %G %n' /tmp/bsm-serve-* /tmp/bsm-serve-*/*",
                 check=True).stdout
    modes = {ln.split()[3].rsplit('/', 1)[-1]: ln.split()[:3] for ln in out.splitlines()}
    assert modes['gunicorn.sock'] == ['660', 'bsm', 'bsm'], out
    assert next(v for k, v in modes.items() if k.startswith('bsm-serve-')) == ['750', 'root', 'bsm'], out
    assert not any(int(m[0][-1]) & 2 for m in modes.values()), out # nothing writable by others (nor reachable: 0750)
    logs = server.logs()
    assert "gunicorn's workers run as bsm" in logs and 'is not readable by bsm' not in logs, logs[-3000:]


def test_hostile_requests_get_a_4xx_json_reason_through_the_image(server):
    """A charset that is no text encoding is a 415, a lone surrogate is answered,
    and a body of too many tiny rows is a 413."""
    r = server.post(b'message\nwhere is it\n', 'text/csv; charset=rot13')
    assert r.status_code == 415 and 'rot13' in r.json()['error'], r.text
    r = server.post(b'[{"message": "where is \\ud800 my refund"}]', JSON)
    assert r.status_code == 200 and len(r.json()['predictions']) == 1, r.text
    r = server.post(b'message\n' + b'a\n' * 3_000_000, CSV)
    assert r.status_code == 413 and 'error' in r.json(), r.text[:500]
    assert '/opt/ml' not in r.text and len(r.json()['error']) < 400, r.text[:500]

@pytest.mark.parametrize('hook, says', [
    ('os:system', 'never'), # Python's own callables are never a hook, whoever allows them
    ('pandas:isna', 'BSM_TEXT_HOOKS'), # any other must be allowed by the deployer: the log says how
])
def test_a_model_dir_cannot_bring_a_text_hook(trained, tmp_path_factory, hook, says):
    """A model dir whose config names a text hook the deployment does not allow is refused by `IMAGE serve`: /ping never
    says ready, the log says why and how to allow one, and no caller's text is run as a command."""
    base = copy_tree(trained[0], tmp_path_factory, 'hook')
    meta_path = base/'model'/'bsm_model.json'
    meta = json.loads(meta_path.read_text())
    meta['config']['text_hook'] = hook
    meta_path.write_text(json.dumps(meta))
    target = base/'model'/'pwned'
    (base/'model').chmod(0o777) # writable by the unprivileged workers too: only the refusal keeps the file away
    s = Server(base)
    try:
        seen, deadline, logs = [], time.monotonic() + 240, ''
        while time.monotonic() < deadline:
            try:
                seen.append(requests.get(f'{s.url}/ping', timeout=5).status_code)
                r = s.post(json.dumps([{'message': 'touch /opt/ml/model/pwned'}]).encode(), JSON) # `target`, inside
                seen.append(r.status_code)
            except requests.ConnectionError: pass
            logs = s.logs()
            if hook in logs and says in logs and len(seen) >= 4: break
            if not s.state()['Running']: break # refusing to load may stop the server: fine, it ran nothing
            time.sleep(0.5)
        logs = s.logs()
    finally: s.remove()
    assert 200 not in seen, (seen, logs[-4000:])
    assert hook in logs and says in logs, logs[-4000:]
    assert not target.exists(), f'{target} was created: the hook ran\n{logs[-4000:]}'


# --- the image is the lock ------------------------------------------------------------------------------------

PACKAGES = ("import importlib.metadata as m, json, sys, sysconfig; venv = sys.argv[1] == 'venv'; "
            "found = m.distributions(path=[sysconfig.get_paths()['purelib']]) if venv else m.distributions(); "
            "print(json.dumps([(d.metadata['Name'], d.version) for d in found]))")

def image_packages(image:str|None=None, venv_only:bool=True)->dict:
    "{canonical name: version} of /opt/venv's own packages, or of every one its python sees first (a base's too)."
    found = json.loads(engine('run', '--rm', '--network', 'none', image or IMAGE, 'python', '-c', PACKAGES,
                              'venv' if venv_only else 'all', timeout=300, check=True).stdout)
    seen = {}
    for name, version in found: seen.setdefault(image_lock.canonical(name), version) # the first on sys.path wins
    return seen


def test_the_image_holds_exactly_the_lock():
    "What pip installed in the image is docker/requirements.lock, version for version, and consistent (pip check)."
    locked = {n: p['version'] for n, p in image_lock.parse_lock(image_lock.LOCK.read_text()).items()}
    got = image_packages()
    assert got.pop('bsm-nb', None), got
    assert got == locked, {'not locked': {n: v for n, v in got.items() if locked.get(n) != v},
                           'missing': {n: v for n, v in locked.items() if got.get(n) != v}}
    r = engine('run', '--rm', '--network', 'none', IMAGE, 'pip', 'check', timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


# --- a base that brings its own torch (an AWS Deep Learning Container, pytorch/pytorch) ---------------------

WHEELS = Path(os.environ.get('BSM_TORCH_BASE_WHEELS', '/opt/wheels'))
BASE = os.environ.get('BSM_BASE_IMAGE', 'localhost/bsm-rehearsal-base:bookworm')

def build_image(image:str, **env)->subprocess.CompletedProcess:
    "tests/container/build.sh for `image`, with `env` (BSM_TORCH_WHEEL, BSM_BASE_IMAGE, ...) over the environment."
    return subprocess.run(['bash', str(ROOT/'tests'/'container'/'build.sh')], capture_output=True, text=True,
                          timeout=1800, env={**ENV, 'BSM_IMAGE': image, **env})


def test_a_base_with_its_own_torch_keeps_it():
    "The Dockerfile on a base whose python3 already imports torch: that torch stays, the lock without it goes beside."
    torch_wheels = sorted(WHEELS.glob('torch-*.whl'))
    if not torch_wheels: pytest.skip(f'no torch wheel in {WHEELS} to make a base with torch (BSM_TORCH_BASE_WHEELS)')
    image = 'localhost/bsm-nb:test-base-with-torch'
    r = build_image(image, BSM_TORCH_WHEEL=str(torch_wheels[-1]))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    version, path = python_in_image('import importlib.metadata as m, torch, bsm_nb.entrypoint, bsm_nb.serve, '
                                    'bsm_nb.server; print(m.version("torch"), torch.__file__)', image).split()
    assert path.startswith(('/usr/local/lib/python3', '/usr/lib/python3')), path # the base's, not the venv's
    assert version in torch_wheels[-1].name, (version, torch_wheels[-1])
    rest = image_lock.parse_lock(image_lock.for_base_torch(image_lock.LOCK.read_text()))
    rest = {n: p['version'] for n, p in rest.items()}
    # what python imports is the lock's version, from the venv or, where the base has the same, from the base
    seen = image_packages(image, venv_only=False)
    assert seen.get('bsm-nb') and {n: seen.get(n) for n in rest} == rest, {n: (seen.get(n), v) for n, v in rest.items()
                                                                           if seen.get(n) != v}
    assert 'torch' not in image_packages(image) # the venv has none of its own
    r = engine('run', '--rm', '--network', 'none', image, 'serve', '--print-nginx-conf', timeout=300, check=True)
    assert 'listen 8080;' in r.stdout


def test_a_base_with_a_torch_below_the_floor_fails_the_build(tmp_path):
    "A base whose torch is outside settings.ini's range (a stand-in: a bare torch 2.5.1) fails the build, naming it."
    site = '/usr/lib/python3/dist-packages'
    (tmp_path/'Containerfile').write_text(
        f'FROM {BASE}\n'
        'RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv '
        '&& rm -rf /var/lib/apt/lists/*\n'
        f'RUN mkdir -p {site}/torch {site}/torch-2.5.1.dist-info '
        f'&& echo "__version__ = \'2.5.1\'" > {site}/torch/__init__.py '
        f'&& printf "Metadata-Version: 2.1\\nName: torch\\nVersion: 2.5.1\\n" '
        f'> {site}/torch-2.5.1.dist-info/METADATA\n')
    old_torch = 'localhost/bsm-test-base-old-torch:latest'
    engine('build', '--format', 'docker', '--network', 'host', '-t', old_torch, tmp_path, timeout=900, check=True)
    r = engine('build', '--format', 'docker', '--network', 'host', '-f', ROOT/'docker'/'Dockerfile', '--build-arg',
               f'BASE_IMAGE={old_torch}', '-t', 'localhost/bsm-nb:test-old-torch', ROOT, timeout=1200)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert "the base image has torch 2.5.1, outside bsm_nb's range torch<3,>=2.10 (settings.ini)" in out, out[-3000:]
    assert 'Installing collected packages' not in out, out[-3000:] # it stops before anything is installed
