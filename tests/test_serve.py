"""bsm-serve as SageMaker runs it: real nginx in front of gunicorn on loopback, serving a model that bsm-train
wrote (a tiny random BERT, one epoch), checked against `ModelBundle.predict_frame` on the same rows; plus
bsm-predict on files and the multiclass answer shape. Chapter 08 (nbs/08_serve.ipynb) unit-tests the parsing."""
import io, json, os, shutil, signal, socket, subprocess, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np, pandas as pd
import pytest
import requests

from bsm_nb.artifacts import load_bundle
from bsm_nb.data import read_data_file
from bsm_nb.model import save_tiny_bert
from bsm_nb.serve import ServeSettings, create_app, predict, predict_main, reference_nginx_conf
from bsm_nb.synthetic import write_sagemaker_tree

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NGINX = shutil.which('nginx') or next((p for p in ('/usr/sbin/nginx', '/usr/local/sbin/nginx') if os.access(p, os.X_OK)), None)
needs_nginx = pytest.mark.skipif(NGINX is None, reason='nginx is not installed (apt-get install -y nginx; the Makefile installs it): '
                                                         'these tests run real nginx in front of gunicorn')
CSV, JSON, JSONL = 'text/csv', 'application/json', 'application/jsonlines'
TOL = 1e-5


# --- fixtures: a trained model dir, its reference predictions, a running server -------------------

def train(root:Path, tiny:Path, relabel=None)->Path:
    "Write a synthetic SageMaker tree under `root`, optionally relabel it, run bsm-train; the base dir."
    base = write_sagemaker_tree(root, n_train=300, n_val=100, n_test=100, seed=0)
    if relabel:
        for f in (base/'input'/'data').rglob('*.csv'):
            df = pd.read_csv(f); df['label'] = relabel(df); df.to_csv(f, index=False)
    r = subprocess.run([str(BIN/'bsm-train'), '--pretrained_model', str(tiny), '--max_epochs', '1'], capture_output=True, text=True,
                       env={**os.environ, 'SAGEMAKER_BASE_DIR': str(base)}, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return base


@pytest.fixture(scope='module')
def tiny(tmp_path_factory): return save_tiny_bert(tmp_path_factory.mktemp('tiny_bert'))

@pytest.fixture(scope='module')
def base(tmp_path_factory, tiny): return train(tmp_path_factory.mktemp('sm'), tiny)

@pytest.fixture(scope='module')
def bundle(base): return load_bundle(base/'model', device='cpu')

@pytest.fixture(scope='module')
def rows(base):
    "The test channel as training reads it: strings, NaN where missing, with id and label columns."
    return read_data_file(base/'input'/'data'/'test'/'test.csv')


def free_port()->int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Server:
    "`bsm-serve` in a subprocess on a free loopback port; its output goes to a log file."
    def __init__(self, base:Path, log:Path, **env):
        self.port, self.log = free_port(), log
        env = {**os.environ, 'SAGEMAKER_BASE_DIR': str(base), 'SAGEMAKER_BIND_TO_PORT': str(self.port), 'BSM_SERVE_HOST': '127.0.0.1',
               'MODEL_SERVER_WORKERS': '2', **env}
        with open(log, 'wb') as out:
            self.proc = subprocess.Popen([str(BIN/'bsm-serve')], env=env, stdout=out, stderr=subprocess.STDOUT)
        self.url = f'http://127.0.0.1:{self.port}'

    def ping(self)->requests.Response: return requests.get(f'{self.url}/ping', timeout=5)

    def wait(self, until=lambda r: r.status_code == 200, timeout:float=240)->requests.Response:
        "Ping until `until(response)` holds; fail with the server's log otherwise."
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f'bsm-serve exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}'
            try:
                r = self.ping()
                if until(r): return r
            except requests.ConnectionError: pass
            time.sleep(0.25)
        pytest.fail(f'bsm-serve not in the expected state within {timeout} s:\n{self.log.read_text()[-4000:]}')

    def post(self, body:bytes, content_type:str|None=JSON, accept:str|None=None, path='/invocations')->requests.Response:
        headers = {k: v for k, v in (('Content-Type', content_type), ('Accept', accept)) if v is not None}
        return requests.post(f'{self.url}{path}', data=body, headers=headers, timeout=60)

    def stop(self, timeout:float=30)->int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try: self.proc.wait(timeout)
            except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope='module')
def server(base, tmp_path_factory):
    if NGINX is None: pytest.skip('nginx is not installed')
    s = Server(base, tmp_path_factory.mktemp('log')/'serve.log')
    try:
        s.wait()
        yield s
    finally: s.stop()


# --- encoding requests and decoding answers ---------------------------------------------------

def records(df:pd.DataFrame)->list: return df.astype(object).where(df.notna(), None).to_dict('records')

def encode(df:pd.DataFrame, content_type:str)->bytes:
    if content_type == CSV: return df.to_csv(index=False).encode()
    if content_type == JSON: return json.dumps(records(df)).encode()
    return ''.join(json.dumps(r) + '\n' for r in records(df)).encode()

def decode(r:requests.Response, accept:str)->pd.DataFrame:
    "The answer as id, probability, label columns."
    assert r.status_code == 200, r.text
    if accept == CSV:
        assert r.headers['Content-Type'].startswith(CSV)
        return pd.read_csv(io.StringIO(r.text), header=None, names=['id', 'probability', 'label'], dtype={'id': str, 'label': str})
    assert r.headers['Content-Type'] == accept
    recs = r.json()['predictions'] if accept == JSON else [json.loads(l) for l in r.text.splitlines()]
    return pd.DataFrame(recs, columns=['id', 'probability', 'label'])

def assert_same(got:pd.DataFrame, expected:pd.DataFrame):
    assert got['id'].astype(str).tolist() == expected['id'].astype(str).tolist()
    np.testing.assert_allclose(got['probability'].to_numpy(float), expected['probability'].to_numpy(float), rtol=0, atol=TOL)
    assert got['label'].astype(str).tolist() == expected['label'].astype(str).tolist()


# --- the server ---------------------------------------------------------------------------------

@needs_nginx
def test_ping_is_fast_and_json(server):
    t0 = time.perf_counter()
    r = server.ping()
    assert time.perf_counter() - t0 < 1
    assert (r.status_code, r.headers['Content-Type'], r.json()) == (200, JSON, {'status': 'ready'})


@needs_nginx
def test_execution_parameters(server):
    r = requests.get(f'{server.url}/execution-parameters', timeout=5)
    assert r.json() == {'MaxConcurrentTransforms': 2, 'BatchStrategy': 'MULTI_RECORD', 'MaxPayloadInMB': 6}


@needs_nginx
@pytest.mark.parametrize('content_type', [CSV, JSON, JSONL])
@pytest.mark.parametrize('accept', [JSON, CSV, JSONL, '*/*', None])
def test_each_content_type_and_accept_matches_predict_frame(server, bundle, rows, content_type, accept):
    sample = rows.iloc[:25]
    r = server.post(encode(sample, content_type), content_type, accept)
    assert_same(decode(r, accept if accept in (CSV, JSONL) else JSON), bundle.predict_frame(sample))


@needs_nginx
def test_every_test_row_in_one_request(server, bundle, rows):
    "100 rows (batched through the model 64 at a time), missing values included, in order."
    assert rows.isna().any().any()
    assert_same(decode(server.post(encode(rows, CSV), CSV), JSON), bundle.predict_frame(rows))


@needs_nginx
def test_csv_without_header_in_each_layout(server, bundle, rows):
    cfg, sample = bundle.config, rows.iloc[:10]
    expected = bundle.predict_frame(sample)
    for cols in (cfg.feature_fields, [cfg.id_name, *cfg.feature_fields], cfg.read_fields):
        got = decode(server.post(sample[cols].to_csv(index=False, header=False).encode(), CSV), JSON)
        if cfg.id_name in cols: assert_same(got, expected)
        else: np.testing.assert_allclose(got.probability, expected.probability, atol=TOL)
    # extra columns, in any order, are ignored when there is a header
    shuffled = sample.assign(extra='x')[['extra', *reversed(list(sample.columns))]]
    assert_same(decode(server.post(shuffled.to_csv(index=False).encode(), 'text/csv; charset=utf-8'), JSON), expected)


@needs_nginx
def test_typed_json_missing_fields_and_unseen_categories(server, bundle, rows):
    "Numbers as numbers, absent and null fields, an unseen category, an `instances` wrapper: same as predict_frame."
    cfg = bundle.config
    recs = records(rows.iloc[:6])
    for r in recs:
        for f in cfg.tab_field_list:
            if r[f] is not None: r[f] = float(r[f])
    del recs[1][cfg.tab_field_list[0]], recs[2][cfg.cat_field_list[0]], recs[3][cfg.text_name[0]]
    recs[4][cfg.cat_field_list[0]] = 'a category never seen in training'
    recs[5] = {k: v for k, v in recs[5].items() if k in (cfg.id_name, cfg.text_name[0])}
    got = decode(server.post(json.dumps({'instances': recs}).encode(), JSON), JSON)
    assert_same(got, bundle.predict_frame(pd.DataFrame(recs)))
    r = server.post(encode(rows.iloc[:3], CSV), CSV, 'text/csv;header=present')
    assert r.text.splitlines()[0] == 'id,probability,label'


MB = 2**20
BAD_REQUESTS = [ # (name, body, content type, accept, status, words of the message)
    ('xml content type', b'<a/>', 'application/xml', None, 415, 'unsupported Content-Type'),
    ('no content type', b'[{"message": "hi"}]', None, None, 415, 'missing Content-Type'),
    ('unknown charset', b'message\nhi\n', 'text/csv; charset=klingon', None, 415, 'unsupported charset'),
    ('accept png', b'[{"message": "hi"}]', JSON, 'image/png', 406, 'cannot answer in'),
    ('empty body', b'', JSON, None, 400, 'empty request body'),
    ('blank body', b' \n\n', CSV, None, 400, 'empty request body'),
    ('malformed json', b'[{"message": "hi"', JSON, None, 400, 'malformed JSON'),
    ('json scalar', b'"hello"', JSON, None, 400, 'must be a list of records'),
    ('json empty list', b'[]', JSON, None, 400, 'no records'),
    ('no input field', b'[{"msg": "hi", "amount": 3}]', JSON, None, 400, "none of the model's input fields"),
    ('null fields only', b'[{"message": "hi"}, {"message": null, "case_id": "x"}]', JSON, None, 400, 'row 1 has no value'),
    ('nested value', b'[{"message": {"text": "hi"}}]', JSON, None, 400, "row 0, field 'message': expected a single value"),
    ('record not object', b'[{"message": "hi"}, 42]', JSON, None, 400, 'row 1: a record must be an object'),
    ('number not numeric json', b'[{"message": "hi"}, {"message": "hi", "order_amount": "abc"}]', JSON, None, 400,
     "row 1, field 'order_amount': 'abc' is not a number"),
    ('number not numeric csv', b'message,order_amount\nhi,1\nhi,2\nhi,twelve\n', CSV, None, 400, "row 2, field 'order_amount': 'twelve'"),
    ('unterminated quote', b'message,order_amount\n"hi,1\n', CSV, None, 400, 'malformed CSV'),
    ('ragged csv', b'message,order_amount\nhi,1\nhi,1,2,3\n', CSV, None, 400, 'malformed CSV: Error tokenizing data'),
    ('headerless wrong width', b'hi,1\n', CSV, None, 400, 'has 2 values; expected 7'),
    ('header without rows', b'case_id,message\n', CSV, None, 400, 'no data rows'),
    ('malformed json lines', b'{"message": "a"}\n{"message": \n', JSONL, None, 400, 'line 2'),
    ('invalid utf-8', b'message\n\xff\xfe\n', CSV, None, 400, 'not valid utf-8'),
    ('array of wrong width', b'[["hi", "US"]]', JSON, None, 400, 'row 0, an array, has 2 values'),
    ('too large', b'x' * (6 * MB + 1), CSV, None, 413, 'larger than 6 MB'),
    ('unknown path', b'', None, None, 404, 'Not Found'),
    ('get invocations', None, None, None, 405, 'Method Not Allowed'),
    ('post ping', b'', JSON, None, 405, 'Method Not Allowed'),
]

@needs_nginx
@pytest.mark.parametrize('name,body,content_type,accept,status,words', BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_request(server, name, body, content_type, accept, status, words):
    if name == 'get invocations': r = requests.get(f'{server.url}/invocations', timeout=10)
    else: r = server.post(body, content_type, accept, {'unknown path': '/predict', 'post ping': '/ping'}.get(name, '/invocations'))
    assert r.status_code == status, r.text
    assert r.headers['Content-Type'] == JSON
    assert words in r.json()['error'], r.json()


@needs_nginx
def test_errors_nginx_answers_itself_are_json(server):
    "Requests that never reach the app: a long URI, and bytes that are not HTTP."
    r = requests.get(f'{server.url}/{"a" * 10_000}', timeout=10)
    assert (r.status_code, r.headers['Content-Type'], r.json()) == (414, JSON, {'error': 'request URI too long'})
    with socket.create_connection(('127.0.0.1', server.port), timeout=10) as s:
        s.sendall(b'NOT HTTP AT ALL\r\n\r\n')
        answer = b''
        while chunk := s.recv(4096): answer += chunk
    head, _, body = answer.partition(b'\r\n\r\n')
    assert head.startswith(b'HTTP/1.1 400') and json.loads(body) == {'error': 'malformed HTTP request'}


@needs_nginx
def test_still_serving_after_bad_requests(server, bundle, rows):
    assert len(BAD_REQUESTS) >= 15
    for _, body, content_type, accept, _, _ in BAD_REQUESTS[:-4]: server.post(body, content_type, accept)
    assert server.ping().status_code == 200
    assert_same(decode(server.post(encode(rows.iloc[:5], JSON), JSON), JSON), bundle.predict_frame(rows.iloc[:5]))
    assert ' 500 ' not in server.log.read_text()


@needs_nginx
def test_burst_of_concurrent_requests_while_ping_stays_fast(server, bundle, rows):
    "200 requests from 16 threads, 1 to 12 rows each in all three formats: all right, and /ping under 2 s throughout."
    rng, stop, pings = np.random.default_rng(0), threading.Event(), []
    jobs = [(rows.iloc[s:s + n].reset_index(drop=True), [CSV, JSON, JSONL][i % 3]) for i, (s, n) in
            enumerate(zip(rng.integers(0, 88, 200), rng.integers(1, 13, 200)))]
    expected = [bundle.predict_frame(sample) for sample, _ in jobs]

    def pinger():
        while not stop.is_set():
            t0 = time.perf_counter()
            status = server.ping().status_code
            pings.append((time.perf_counter() - t0, status))
            stop.wait(0.05)

    def call(i):
        sample, content_type = jobs[i]
        got = decode(server.post(encode(sample, content_type), content_type), JSON)
        assert_same(got, expected[i])
        return len(got)

    watcher = threading.Thread(target=pinger); watcher.start()
    try:
        with ThreadPoolExecutor(16) as pool: answered = list(pool.map(call, range(len(jobs))))
    finally:
        stop.set(); watcher.join(10)
    assert sum(answered) == sum(len(s) for s, _ in jobs)
    assert len(pings) >= 5 and all(status == 200 for _, status in pings)
    assert max(t for t, _ in pings) < 2, max(pings)


@needs_nginx
def test_incompatible_model_is_refused_then_sigterm_stops_everything(base, tmp_path):
    "A model dir of another format version: 503 with the reason on /ping, in the log too; nginx's limit follows the env; SIGTERM stops all."
    model = tmp_path/'sm'/'model'
    shutil.copytree(base/'model', model)
    meta = json.loads((model/'bsm_model.json').read_text())
    (model/'bsm_model.json').write_text(json.dumps({**meta, 'format_version': 99}))
    s = Server(tmp_path/'sm', tmp_path/'serve.log', MODEL_SERVER_WORKERS='1', SAGEMAKER_MAX_PAYLOAD_IN_MB='1', SAGEMAKER_BATCH='true')
    try:
        r = s.wait(until=lambda r: r.json().get('status') == 'failed')
        assert (r.status_code, r.headers['Content-Type']) == (503, JSON)
        assert 'model format 99' in r.json()['error'] and 'reads format 1' in r.json()['error']
        r = s.post(b'[{"message": "hi"}]')
        assert r.status_code == 503 and 'model format 99' in r.json()['error']
        assert requests.get(f'{s.url}/execution-parameters', timeout=5).json() == {'MaxConcurrentTransforms': 1, 'BatchStrategy': 'MULTI_RECORD', 'MaxPayloadInMB': 1}
        r = s.post(b'x' * (MB + MB // 2), CSV)
        assert r.status_code == 413 and 'larger than 1 MB' in r.json()['error']
        family = descendants(s.proc.pid)
        assert len(family) >= 4, family # gunicorn master and worker, nginx master and worker(s)
        t0 = time.monotonic()
        assert s.stop() == 0
        assert time.monotonic() - t0 < 25
        assert [p for p in family if running(p)] == []
        log = s.log.read_text()
        assert 'model format 99' in log and 'received SIGTERM; stopping' in log
    finally: s.stop()


NGINX_1_18 = ROOT/'.cache'/'nginx-1.18'

@needs_nginx
def test_serves_through_nginx_1_18(base, bundle, rows, tmp_path):
    "Ubuntu 22.04's and Debian bullseye's nginx, 1.18 (older than `-e`): started, answering, its own errors JSON, stopped."
    if not (NGINX_1_18/'nginx').exists():
        pytest.skip(f'nginx 1.18 is not in {NGINX_1_18}: `make install` puts it there (tests/tools/fetch_nginx_1_18.sh, from Debian bullseye)')
    s = Server(base, tmp_path/'serve.log', PATH=f'{NGINX_1_18}{os.pathsep}{os.environ["PATH"]}')
    try:
        s.wait()
        assert_same(decode(s.post(encode(rows.iloc[:10], CSV), CSV), JSON), bundle.predict_frame(rows.iloc[:10]))
        r = s.post(b'x' * (6 * MB + 1), CSV) # refused by nginx itself
        assert (r.status_code, r.headers['Content-Type']) == (413, JSON) and 'larger than 6 MB' in r.json()['error']
        family = descendants(s.proc.pid)
    finally: code = s.stop()
    log = s.log.read_text()
    assert code == 0, log[-3000:]
    assert f'nginx 1.18.0: {NGINX_1_18/"nginx"}' in log, log[-3000:]
    assert 'invalid option' not in log and [p for p in family if running(p)] == []


def descendants(pid:int)->list:
    "Every process below `pid`, from /proc."
    children = {}
    for d in Path('/proc').iterdir():
        if not d.name.isdigit(): continue
        try: ppid = int((d/'stat').read_text().rsplit(')', 1)[1].split()[1])
        except (OSError, IndexError, ValueError): continue
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids; todo += kids
    return out

def running(pid:int)->bool:
    "Whether `pid` exists and is not a zombie."
    try: return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError: return False


# --- multiclass, through the app in-process -----------------------------------------------------

@pytest.fixture(scope='module')
def multiclass(tmp_path_factory, tiny):
    relabel = lambda df: pd.cut(df['order_amount'].fillna(30), [-np.inf, 20, 60, np.inf], labels=['low', 'mid', 'high']).astype(str)
    base = train(tmp_path_factory.mktemp('sm3'), tiny, relabel)
    return base, load_bundle(base/'model', device='cpu')


def test_multiclass_answers_carry_each_class(multiclass):
    base, bundle = multiclass
    assert sorted(bundle.label_list) == ['high', 'low', 'mid']
    app = create_app(ServeSettings(model_dir=base/'model', torch_threads=0))
    assert app.extensions['bsm_model'].wait(120) == 'ready'
    client, sample = app.test_client(), read_data_file(base/'input'/'data'/'test'/'test.csv').iloc[:12]
    expected = bundle.predict_frame(sample)
    preds = client.post('/invocations', data=encode(sample, JSON), content_type=JSON).json['predictions']
    assert [p['id'] for p in preds] == expected['id'].tolist()
    assert [p['label'] for p in preds] == expected['label'].tolist()
    for name in bundle.label_list:
        np.testing.assert_allclose([p['probabilities'][name] for p in preds], expected[f'prob_{name}'], atol=TOL)
    r = client.post('/invocations', data=encode(sample, CSV), content_type=CSV, headers={'Accept': 'text/csv;header=present'})
    got = pd.read_csv(io.StringIO(r.text), dtype={'id': str, 'label': str})
    assert list(got.columns) == ['id', *[f'prob_{n}' for n in bundle.label_list], 'label']
    np.testing.assert_allclose(got[[f'prob_{n}' for n in bundle.label_list]], expected[[f'prob_{n}' for n in bundle.label_list]], atol=TOL)


# --- bsm-predict ----------------------------------------------------------------------------------

def test_bsm_predict_console_script_on_csv(base, bundle, rows, tmp_path):
    r = subprocess.run([str(BIN/'bsm-predict'), str(base/'model'), str(base/'input'/'data'/'test'/'test.csv'), str(tmp_path/'out.csv')],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert '100 predictions written' in r.stderr
    got = pd.read_csv(tmp_path/'out.csv', dtype={'id': str, 'label': str})
    assert list(got.columns) == ['id', 'probability', 'label']
    assert_same(got, bundle.predict_frame(rows))


@pytest.mark.parametrize('src,dst', [('parquet', 'parquet'), ('jsonl', 'jsonl'), ('json', 'json'), ('csv', 'parquet')])
def test_bsm_predict_formats(base, bundle, rows, tmp_path, src, dst):
    typed = pd.read_csv(base/'input'/'data'/'test'/'test.csv') # numbers as numbers, as in a Parquet file
    path = tmp_path/f'in.{src}'
    if src == 'parquet': typed.to_parquet(path)
    elif src == 'csv': typed.to_csv(path, index=False)
    elif src == 'jsonl': path.write_text(''.join(json.dumps(r) + '\n' for r in records(typed)))
    else: path.write_text(json.dumps({'instances': records(typed)}))
    assert predict_main([str(base/'model'), str(path), str(tmp_path/f'out.{dst}')]) == 0
    out = tmp_path/f'out.{dst}'
    if dst == 'parquet': got = pd.read_parquet(out)
    elif dst == 'jsonl': got = pd.DataFrame([json.loads(l) for l in out.read_text().splitlines()])
    else: got = pd.DataFrame(json.loads(out.read_text())['predictions'])
    assert_same(got, bundle.predict_frame(typed))


def test_predict_api_and_bad_files(base, bundle, rows, tmp_path, capsys, monkeypatch):
    assert_same(predict(base/'model', rows), bundle.predict_frame(rows))
    assert_same(predict(bundle, rows.drop(columns=['label'])), bundle.predict_frame(rows))
    bad = tmp_path/'bad.csv'
    rows.assign(order_amount=['lots'] + rows['order_amount'].tolist()[1:]).to_csv(bad, index=False)
    assert predict_main([str(base/'model'), str(bad), str(tmp_path/'o.csv')]) == 2
    assert "row 0, field 'order_amount': 'lots' is not a number" in capsys.readouterr().err
    assert predict_main([str(tmp_path/'no-model'), str(bad), str(tmp_path/'o.csv')]) == 2
    assert 'not a complete bsm_nb model dir' in capsys.readouterr().err
    monkeypatch.setenv('SAGEMAKER_BASE_DIR', str(base)) # the model dir defaults to $SAGEMAKER_BASE_DIR/model
    assert predict_main([str(base/'input'/'data'/'test'/'test.csv'), str(tmp_path/'o.jsonl')]) == 0
    assert len((tmp_path/'o.jsonl').read_text().splitlines()) == len(rows)
    assert not (tmp_path/'o.csv').exists()


# --- the container's files -------------------------------------------------------------------------

def test_docker_model_files(base):
    "nginx.conf is the current rendering; serve, predictor.py and wsgi.py are thin wrappers that work."
    assert (ROOT/'docker'/'model'/'nginx.conf').read_text() == reference_nginx_conf(), \
        "docker/model/nginx.conf is stale: python -c 'from bsm_nb.serve import reference_nginx_conf; print(reference_nginx_conf(), end=\"\")' > docker/model/nginx.conf"
    r = subprocess.run([sys.executable, str(ROOT/'docker'/'model'/'serve'), '--print-nginx-conf', '--port', '9123'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and 'listen 9123;' in r.stdout, r.stderr
    code = ('import wsgi\n'
            'state = wsgi.app.extensions["bsm_model"]\n'
            'assert state.wait(120) == "ready", state.reason\n'
            'print(wsgi.app.test_client().get("/ping").status_code)')
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT/'docker'/'model', capture_output=True, text=True, timeout=300,
                       env={**os.environ, 'SAGEMAKER_BASE_DIR': str(base)})
    assert r.returncode == 0 and r.stdout.split() == ['200'], r.stderr[-3000:]
