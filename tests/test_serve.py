"""bsm-serve as SageMaker runs it: real nginx in front of gunicorn on loopback, serving a model that bsm-train
wrote (a tiny random BERT, one epoch), checked against `ModelBundle.predict_frame` on the same rows; plus
bsm-predict on files and the multiclass answer shape. Chapters 09 (nbs/09_protocol.ipynb), 10 (nbs/10_serve.ipynb)
and 10a (nbs/10a_server.ipynb) unit-test the request protocol and the server's parts."""
import csv, io, json, os, shutil, signal, socket, subprocess, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np, pandas as pd
import pytest
import requests

from bsm_nb.artifacts import load_bundle
from bsm_nb.reading import read_data_file
from bsm_nb.model import save_tiny_bert
from bsm_nb.protocol import predict, predict_main
from bsm_nb.serve import ServeSettings, create_app
from bsm_nb.server import free_port, reference_nginx_conf
from bsm_nb.synthetic import write_sagemaker_tree

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NGINX = shutil.which('nginx') or next((p for p in ('/usr/sbin/nginx', '/usr/local/sbin/nginx')
                                       if os.access(p, os.X_OK)), None)
needs_nginx = pytest.mark.skipif(NGINX is None,
                                 reason='nginx is not installed (apt-get install -y nginx; the Makefile installs it): '
                                        'these tests run real nginx in front of gunicorn')
CSV, JSON, JSONL = 'text/csv', 'application/json', 'application/jsonlines'
TOL = 1e-5


# --- fixtures: a trained model dir, its reference predictions, a running server -------------------

def train(root:Path, tiny:Path, relabel=None, *args:str)->Path:
    "Write a synthetic SageMaker tree under `root`, optionally relabel it, run bsm-train (with `args`); the base dir."
    base = write_sagemaker_tree(root, n_train=300, n_val=100, n_test=100, seed=0)
    if relabel:
        for f in (base/'input'/'data').rglob('*.csv'):
            df = pd.read_csv(f); df['label'] = relabel(df); df.to_csv(f, index=False)
    r = subprocess.run([str(BIN/'bsm-train'), '--pretrained_model', str(tiny), '--max_epochs', '1', *args],
                       capture_output=True, text=True, env={**os.environ, 'SAGEMAKER_BASE_DIR': str(base)}, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return base


@pytest.fixture(scope='module')
def tiny(tmp_path_factory): return save_tiny_bert(tmp_path_factory.mktemp('tiny_bert'))

@pytest.fixture(scope='module')
def base(tmp_path_factory, tiny): return train(tmp_path_factory.mktemp('sm'), tiny)

@pytest.fixture(scope='module')
def bundle(base): return load_bundle(base/'model', device='cpu')

@pytest.fixture(scope='module')
def net_base(tmp_path_factory, tiny):
    "A model dir whose network answers (`ensemble=network`): the slow path that deadlines and stuck workers are about."
    return train(tmp_path_factory.mktemp('sm_net'), tiny, None, '--ensemble', 'network')

@pytest.fixture(scope='module')
def net_bundle(net_base): return load_bundle(net_base/'model', device='cpu')

@pytest.fixture(scope='module')
def rows(base):
    "The test channel as training reads it: strings, NaN where missing, with id and label columns."
    return read_data_file(base/'input'/'data'/'test'/'test.csv')


class Server:
    "`bsm-serve` in a subprocess on a free loopback port; its output goes to a log file."
    def __init__(self, base:Path, log:Path, **env):
        self.port, self.log = free_port(), log
        env = {**os.environ, 'SAGEMAKER_BASE_DIR': str(base), 'SAGEMAKER_BIND_TO_PORT': str(self.port),
               'BSM_SERVE_HOST': '127.0.0.1', 'MODEL_SERVER_WORKERS': '2', **env}
        with open(log, 'wb') as out:
            self.proc = subprocess.Popen([str(BIN/'bsm-serve')], env=env, stdout=out, stderr=subprocess.STDOUT)
        self.url = f'http://127.0.0.1:{self.port}'

    def ping(self)->requests.Response: return requests.get(f'{self.url}/ping', timeout=5)

    def wait(self, until=lambda r: r.status_code == 200, timeout:float=240)->requests.Response:
        "Ping until `until(response)` holds; fail with the server's log otherwise."
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, \
                f'bsm-serve exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}'
            try:
                r = self.ping()
                if until(r): return r
            except requests.ConnectionError: pass
            time.sleep(0.25)
        pytest.fail(f'bsm-serve not in the expected state within {timeout} s:\n{self.log.read_text()[-4000:]}')

    def post(self, body:bytes, content_type:str|None=JSON, accept:str|None=None,
             path='/invocations')->requests.Response:
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
        return pd.read_csv(io.StringIO(r.text), header=None, names=['id', 'probability', 'label'],
                           dtype={'id': str, 'label': str})
    assert r.headers['Content-Type'] == accept
    recs = r.json()['predictions'] if accept == JSON else [json.loads(l) for l in r.text.splitlines()]
    return pd.DataFrame(recs, columns=['id', 'probability', 'label'])

def assert_same(got:pd.DataFrame, expected:pd.DataFrame):
    assert got['id'].astype(str).tolist() == expected['id'].astype(str).tolist()
    np.testing.assert_allclose(got['probability'].to_numpy(float), expected['probability'].to_numpy(float), rtol=0,
                               atol=TOL)
    assert got['label'].astype(str).tolist() == expected['label'].astype(str).tolist()


# --- the server ---------------------------------------------------------------------------------

@needs_nginx
def test_ping_is_fast_and_json(server):
    t0 = time.perf_counter()
    r = server.ping()
    assert time.perf_counter() - t0 < 1
    assert (r.status_code, r.headers['Content-Type'], r.json()) == (200, JSON, {'status': 'ready'})


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
    *[(f'{c} charset', b'message\nhi\n', f'text/csv; charset={c}', None, 415, f"unsupported charset '{c}' (")
      for c in ('rot13', 'base64', 'zlib', 'bz2', 'hex', 'uu', 'quopri', 'punycode', 'idna', 'undefined',
                'unicode_escape')],
    ('accept png', b'[{"message": "hi"}]', JSON, 'image/png', 406, 'cannot answer in'),
    ('empty body', b'', JSON, None, 400, 'empty request body'),
    ('blank body', b' \n\n', CSV, None, 400, 'empty request body'),
    ('malformed json', b'[{"message": "hi"', JSON, None, 400, 'malformed JSON'),
    ('json scalar', b'"hello"', JSON, None, 400, 'must be a list of records'),
    ('json empty list', b'[]', JSON, None, 400, 'no records'),
    ('no input field', b'[{"msg": "hi", "amount": 3}]', JSON, None, 400, "none of the model's input fields"),
    ('null fields only', b'[{"message": "hi"}, {"message": null, "case_id": "x"}]', JSON, None, 400,
     'row 1 has no value'),
    ('nested value', b'[{"message": {"text": "hi"}}]', JSON, None, 400,
     "row 0, field 'message': expected a single value"),
    ('record not object', b'[{"message": "hi"}, 42]', JSON, None, 400, 'row 1: a record must be an object'),
    ('number not numeric json', b'[{"message": "hi"}, {"message": "hi", "order_amount": "abc"}]', JSON, None, 400,
     "row 1, field 'order_amount': 'abc' is not a number"),
    ('number not numeric csv', b'message,order_amount\nhi,1\nhi,2\nhi,twelve\n', CSV, None, 400,
     "row 2, field 'order_amount': 'twelve'"),
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
    else: r = server.post(body, content_type, accept,
                          {'unknown path': '/predict', 'post ping': '/ping'}.get(name, '/invocations'))
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
    """A model dir of another format version: 503 with the reason on /ping, in the log too;
    nginx's limit follows the env; SIGTERM stops all."""
    model = tmp_path/'sm'/'model'
    shutil.copytree(base/'model', model)
    meta = json.loads((model/'bsm_model.json').read_text())
    (model/'bsm_model.json').write_text(json.dumps({**meta, 'format_version': 99}))
    s = Server(tmp_path/'sm', tmp_path/'serve.log', MODEL_SERVER_WORKERS='1', SAGEMAKER_MAX_PAYLOAD_IN_MB='1',
               SAGEMAKER_BATCH='true')
    try:
        r = s.wait(until=lambda r: r.json().get('status') == 'failed')
        assert (r.status_code, r.headers['Content-Type']) == (503, JSON)
        # no path, no file names
        failed = {'status': 'failed', 'error': 'the model failed to load; the server log says why'}
        assert r.json() == failed
        r = s.post(b'[{"message": "hi"}]')
        assert r.status_code == 503 and r.json() == failed
        assert 'model format 99' in s.log.read_text() and 'reads format 1' in s.log.read_text()
        assert (requests.get(f'{s.url}/execution-parameters', timeout=5).json()
                == {'MaxConcurrentTransforms': 1, 'BatchStrategy': 'MULTI_RECORD', 'MaxPayloadInMB': 1})
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
    """Ubuntu 22.04's and Debian bullseye's nginx, 1.18 (older than `-e`):
    started, answering, its own errors JSON, stopped."""
    if not (NGINX_1_18/'nginx').exists():
        pytest.skip(f'nginx 1.18 is not in {NGINX_1_18}: `make install` puts it there '
                    '(tests/tools/fetch_nginx_1_18.sh, from Debian bullseye)')
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


# --- never a 500 for what a client sends: property-based fuzzing of bodies, headers and structure -------------------

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

FIELDS = ['case_id', 'message', 'marketplace', 'order_status', 'item_category', 'order_amount', 'days_since_order',
          'messages_so_far', 'label']
# lone surrogates (JSON's "\ud800" escapes), NULs, bidi controls and zero-width characters, alone and inside words
UNUSUAL = ['\ud800', '\udc80', 'a\udbffb', '\udfff\ud800', '\x00', 'a\x00b', '\u202e', 'abc\u202edef', '\u2066x\u2069',
           '\u200f', '\u061c', '\u200b', '\u200c\u200d', '\u2060', '\ufeff', '\u2028', '\x85']
odd = st.sampled_from(['', 'NA', 'nan', 'inf', '-inf', '-1e309', '1e-400', '0x1F', ' 3 ', '١٢', '\x00', '\ufeff',
                       'é' * 5, 'a' * 5000, '"', ',', '\n', *UNUSUAL])
HUGE = ['a' * MB, 'word ' * (MB // 5), '\u202e\u200b' * (MB // 2), 'x\ud800' * (MB // 2)] # 1 MB single fields

def _codec_names()->list:
    "Every name `codecs.lookup` accepts here: the aliases, what they stand for, and the modules of `encodings`."
    import codecs, encodings, pkgutil
    from encodings.aliases import aliases
    names = {*aliases, *aliases.values(), *(m.name for m in pkgutil.iter_modules(encodings.__path__))}
    def ok(n):
        try: codecs.lookup(n); return True
        except LookupError: return False
    return sorted(n for n in names if ok(n))
CODEC_NAMES = _codec_names()
scalars = (st.none() | st.booleans() | st.integers() | st.integers(-10**400, 10**400) | st.floats()
           | st.text(max_size=30) | odd)
nested = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
value = st.one_of(scalars, scalars, scalars, nested) # mostly single values, as a model field holds
NUMERIC = ('order_amount', 'days_since_order', 'messages_so_far')
numbers = (st.floats() | st.integers() | st.floats().map(str)
           | st.sampled_from(['1e308', '-0', ' 12 ', '3.5e-2', 'NaN', '']))

def field_value(name:str):
    "What a caller would plausibly send for `name` most of the time, and anything else sometimes."
    plausible = numbers if name in NUMERIC else st.none() | st.text(max_size=60) | st.integers()
    return st.sampled_from([True] * 15 + [False]).flatmap(lambda p: plausible if p else value)

field_record = st.lists(st.sampled_from(FIELDS), min_size=1, max_size=9, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({n: field_value(n) for n in names}))
record = st.sampled_from(['fields'] * 6 + ['any keys', 'array', 'value']).flatmap(lambda k: {
    'fields': field_record, 'any keys': st.dictionaries(st.text(max_size=10), value, max_size=4),
    'array': st.lists(value, max_size=10), 'value': value}[k])
cell = st.sampled_from(['text', 'number', 'odd']).flatmap(lambda k: {'text': st.text(max_size=20),
                                                                     'number': numbers.map(str), 'odd': odd}[k])

def csv_text(header:list, rows:list)->str:
    out = io.StringIO(); w = csv.writer(out)
    for r in ([header] if header else []) + rows: w.writerow(r)
    return out.getvalue()

@st.composite
def fuzzed_request(draw):
    "(body, Content-Type, Accept): mostly well-formed requests with odd contents, sometimes odd headers or bytes."
    kind = draw(st.sampled_from(['json', 'json', 'jsonl', 'csv', 'csv', 'raw-csv', 'deep', 'bytes', 'huge']))
    if kind == 'json':
        recs = st.lists(record, min_size=1, max_size=6)
        doc = draw(st.sampled_from(['list'] * 4 + ['instances', 'one', 'other']).flatmap(lambda k: {
            'list': recs, 'instances': st.fixed_dictionaries({'instances': recs}), 'one': field_record,
            'other': value}[k]))
        body, ctype = json.dumps(doc, allow_nan=True).encode(), JSON
    elif kind == 'jsonl':
        line = st.sampled_from([True] * 6 + [False]).flatmap(lambda r: record.map(json.dumps) if r
                                                             else st.text(max_size=30))
        body, ctype = '\n'.join(draw(st.lists(line, min_size=1, max_size=6))).encode(), JSONL
    elif kind in ('csv', 'raw-csv'):
        header = draw(st.sampled_from(['fields'] * 4 + ['any', 'none']).flatmap(lambda k: {
            'fields': st.lists(st.sampled_from(FIELDS), min_size=1, max_size=9, unique=True),
            'any': st.lists(st.text(max_size=8), max_size=9), 'none': st.just([])}[k]))
        width = st.integers(0, 12) if kind == 'raw-csv' else st.just(max(len(header), 1))
        rows = draw(st.lists(width.flatmap(lambda n: st.lists(cell, min_size=n, max_size=n)), min_size=1, max_size=6))
        text = csv_text(header, rows) if kind == 'csv' else '\n'.join(','.join(r) for r in [header, *rows])
        body, ctype = text.encode(draw(st.sampled_from(['utf-8'] * 6 + ['utf-16', 'latin-1'])), 'replace'), CSV
    elif kind == 'deep':
        n = draw(st.integers(1_000, 200_000))
        body, ctype = draw(st.sampled_from([('[' * n + ']' * n), ('{"message": ' * n + '1' + '}' * n),
                                            ('[' * n)])).encode(), draw(st.sampled_from([JSON, JSONL]))
    elif kind == 'huge': # one row, one field of 1 MB
        text, fmt = draw(st.sampled_from(HUGE)), draw(st.sampled_from([JSON, JSONL, CSV]))
        rec = {'case_id': 'big', 'message': text, 'marketplace': draw(st.sampled_from(['US', *UNUSUAL]))}
        body = (csv_text(list(rec), [list(rec.values())]).encode('utf-8', 'replace') if fmt == CSV else
                json.dumps([rec] if fmt == JSON else rec).encode())
        ctype = fmt
    else: body, ctype = draw(st.binary(max_size=300)), draw(st.sampled_from([CSV, JSON, JSONL]))
    params = draw(st.sampled_from(['', '', '', '', '', '', '; charset=utf-8', '; charset=latin-1', '; charset=utf-16',
                                   '; charset=klingon', '; header=absent', '; header=present', 'codec', 'codec',
                                   'codec']))
    # any codec Python knows, text encoding or not
    if params == 'codec': params = f'; charset={draw(st.sampled_from(CODEC_NAMES))}'
    # headers: well-formed most of the time, so that most bodies reach the model
    ctype = draw(st.sampled_from([ctype + params] * 30 + ['application/x-ndjson', 'text/plain', '', None]))
    if ctype is None: ctype = draw(header_text)
    accept = draw(st.sampled_from([None] * 24 + [JSON, CSV, JSONL, '*/*', 'text/csv;header=present', 'image/png',
                                                 'application/*;q=0', '']))
    if accept == '': accept = draw(header_text)
    return body, ctype, accept

header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)

def assert_not_a_server_error(status:int, content_type:str, body:bytes):
    assert status == 200 or 400 <= status < 500, (status, body[:300])
    if status != 200: assert content_type.startswith(JSON) and json.loads(body)['error'], body[:300]


@pytest.fixture(scope='module')
def app_client(base, bundle):
    "The real app of one worker, with the trained tiny model, driven in-process."
    app = create_app(ServeSettings(model_dir=base/'model', torch_threads=0), loader=lambda d: bundle)
    assert app.extensions['bsm_model'].wait(120) == 'ready'
    return app.test_client()

@hsettings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
           derandomize=True)
@given(req=fuzzed_request())
def test_fuzzed_requests_get_200_or_a_4xx_in_process(app_client, req):
    "Any body, Content-Type and Accept: 200, or a 4xx with a JSON reason; never a 500."
    body, content_type, accept = req
    headers = {'Content-Type': content_type, **({'Accept': accept} if accept is not None else {})}
    r = app_client.post('/invocations', data=body, headers=headers)
    assert_not_a_server_error(r.status_code, r.headers.get('Content-Type', ''), r.data)


def test_still_serving_after_fuzzing_in_process(app_client, bundle, rows):
    r = app_client.post('/invocations', data=encode(rows.iloc[:5], JSON), content_type=JSON)
    assert [p['id'] for p in r.json['predictions']] == rows.iloc[:5]['case_id'].tolist()


@needs_nginx
@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                  HealthCheck.function_scoped_fixture],
           derandomize=True)
@given(req=fuzzed_request())
def test_fuzzed_requests_through_nginx_and_gunicorn(server, req):
    "A smaller sample through the real stack: nginx's own answers count too."
    body, content_type, accept = req
    headers = {'Content-Type': content_type, **({'Accept': accept} if accept is not None else {})}
    r = requests.post(f'{server.url}/invocations', data=body, headers=headers, timeout=60)
    assert_not_a_server_error(r.status_code, r.headers.get('Content-Type', ''), r.content)


@needs_nginx
def test_still_serving_after_fuzzing(server, bundle, rows):
    assert server.ping().status_code == 200
    assert_same(decode(server.post(encode(rows.iloc[:5], JSON), JSON), JSON), bundle.predict_frame(rows.iloc[:5]))
    assert ' 500 ' not in server.log.read_text() and 'internal error' not in server.log.read_text()


def test_too_many_records_are_refused_before_parsing(base, bundle, monkeypatch):
    """Bodies of many tiny records (5 MB) are a 413 from the count on the text, before any parser runs
    (the parsers fail the test if called); a body within the limit is parsed and answered as before."""
    import bsm_nb.protocol as protocol
    app = create_app(ServeSettings(model_dir=base/'model', torch_threads=0, max_rows=1000), loader=lambda d: bundle)
    assert app.extensions['bsm_model'].wait(120) == 'ready'
    client = app.test_client()
    n = 5 * MB // 18
    bodies = [(b'message\n' + b'a\n' * (5 * MB // 2), CSV), (b'[' + b'{"message": "a"},' * n + b'{}]', JSON),
              (json.dumps({'instances': [{'message': 'a'}] * n}).encode(), JSON), (b'{"message": "a"}\n' * n, JSONL),
              (b'message\n' + b'"a\nb"\n' * 1001, CSV)] # quoted line breaks: 1001 records of two lines each
    def parsed(*a, **k): raise AssertionError('the body was parsed')
    with monkeypatch.context() as m:
        for name in ('read_csv_rows', 'json_records', 'jsonlines_records', 'records_frame'):
            m.setattr(protocol, name, parsed)
        for body, ctype in bodies:
            r = client.post('/invocations', data=body, content_type=ctype)
            assert (r.status_code, r.mimetype) == (413, JSON), r.data[:300]
            assert 'rows in one request; this server answers at most 1000 rows a request' in r.json['error'], r.json
    # 2000 lines, 1000 records: within
    r = client.post('/invocations', data=b'message\n' + b'"a\nb"\n' * 1000, content_type=CSV)
    assert r.status_code == 200 and len(r.json['predictions']) == 1000, r.data[:300]


def proc_uid(pid:int)->int:
    return int(next(l for l in Path(f'/proc/{pid}/status').read_text().splitlines() if l.startswith('Uid:')).split()[1])
def cmdline(pid:int)->list: return Path(f'/proc/{pid}/cmdline').read_bytes().decode(errors='replace').split('\0')


def python_readable_by(uid:int)->bool:
    """Whether `uid` can reach this interpreter's own modules
    (not so for a Python under /root, as on some build machines)."""
    from bsm_nb.server import _can, _groups
    import pwd
    py, gid = Path(sys.base_prefix), next(p.pw_gid for p in pwd.getpwall() if p.pw_uid == uid)
    return all(_can(p.stat(), uid, _groups(uid, gid), 1) for p in [*py.parents, py])


def server_processes(s:Server)->tuple:
    "(gunicorn master, its workers, nginx's workers, the socket) of a running `Server`."
    family = descendants(s.proc.pid)
    master = next(p for p in family if any('run_app_server' in a for a in cmdline(p)))
    nginx_workers = [p for p in family if cmdline(p)[0].startswith('nginx: worker process')]
    args = [a for a in cmdline(master) if a]
    return master, descendants(master), nginx_workers, Path(args[-1])


@needs_nginx
@pytest.mark.skipif(os.geteuid() != 0, reason='serve changes users only when started as root')
def test_socket_and_run_dir_are_closed_to_others_and_a_stalled_client_is_cut_off(server, tmp_path, base):
    """As root: the run dir is root's and the socket group's (0750), the socket 0660 in that group, which nginx's
    workers run in (as their own user); gunicorn's workers run as bsm where the image has it, else stay root with a
    warning. A client that stops sending its body is disconnected after BSM_CLIENT_TIMEOUT (2 s here, not nginx's 60 s),
    one that stops in its header as quickly, and the server answers as before."""
    import pwd, stat
    from bsm_nb.server import nginx_worker_user
    web = pwd.getpwnam(nginx_worker_user())
    s = Server(base, tmp_path/'serve.log', BSM_CLIENT_TIMEOUT='2', MODEL_SERVER_WORKERS='1')
    try:
        s.wait()
        master, workers, nginx_workers, sock = server_processes(s)
        st_sock, st_run = sock.stat(), sock.parent.stat()
        try: bsm = pwd.getpwnam('bsm')
        except KeyError: bsm = None
        group = bsm.pw_gid if bsm else web.pw_gid
        assert workers and nginx_workers and proc_uid(master) == 0
        assert ({proc_uid(p) for p in workers} == {bsm.pw_uid if bsm else 0}
                and {proc_uid(p) for p in nginx_workers} == {web.pw_uid})
        assert (stat.S_ISSOCK(st_sock.st_mode)
                and (stat.S_IMODE(st_sock.st_mode), st_sock.st_gid) == (0o660, group)), oct(st_sock.st_mode)
        assert (stat.S_IMODE(st_run.st_mode), st_run.st_uid, st_run.st_gid) == (0o750, 0, group), oct(st_run.st_mode)
        assert bsm or "no user 'bsm' here: gunicorn's workers run as root" in s.log.read_text()

        stalled = socket.create_connection(('127.0.0.1', s.port), timeout=30)
        stalled.sendall(b'POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: '
                        b'1000\r\n\r\nmessage\nhi')
        t0, answer = time.monotonic(), b''
        while chunk := stalled.recv(65536): answer += chunk
        took = time.monotonic() - t0
        assert 1.5 < took < 6, took
        assert answer == b'', answer[:500] # closed, nothing sent: nginx logs a 408
        half_header = socket.create_connection(('127.0.0.1', s.port), timeout=30)
        half_header.sendall(b'POST /invocations HTTP/1.1\r\nHost: x\r\n')
        t0 = time.monotonic()
        while half_header.recv(65536): pass
        assert time.monotonic() - t0 < 6
        assert s.ping().status_code == 200
    finally: s.stop()


@needs_nginx
@pytest.mark.skipif(os.geteuid() != 0, reason='serve changes users only when started as root')
def test_workers_run_as_the_serve_user(base, bundle, rows, tmp_path):
    """BSM_SERVE_USER=nobody: gunicorn's workers run as nobody (the master stays root), the socket is nobody's (0660),
    the run dir root's and nobody's group's (0750), nginx's workers are in that group, and requests are answered."""
    import pwd, stat, tempfile
    nobody = pwd.getpwnam('nobody')
    if not python_readable_by(nobody.pw_uid):
        pytest.skip(f'nobody cannot read this Python ({sys.base_prefix}): its workers could not import the standard '
                    'library; make container-test checks the image, whose Python is readable')
    # a model dir nobody can read (pytest's tmp dirs are root's only)
    home = Path(tempfile.mkdtemp(dir='/tmp', prefix='bsm-model-'))
    home.chmod(0o755)
    shutil.copytree(base/'model', home/'model')
    subprocess.run(['chmod', '-R', 'a+rX', str(home)], check=True)
    s = Server(home, tmp_path/'serve.log', BSM_SERVE_USER='nobody', MODEL_SERVER_WORKERS='1')
    try:
        s.wait()
        assert_same(decode(s.post(encode(rows.iloc[:5], JSON)), JSON), bundle.predict_frame(rows.iloc[:5]))
        master, workers, nginx_workers, sock = server_processes(s)
        assert proc_uid(master) == 0 and workers and {proc_uid(p) for p in workers} == {nobody.pw_uid}
        st_sock, st_run = sock.stat(), sock.parent.stat()
        assert (stat.S_IMODE(st_sock.st_mode), st_sock.st_uid, st_sock.st_gid) == (0o660, nobody.pw_uid, nobody.pw_gid)
        assert (stat.S_IMODE(st_run.st_mode), st_run.st_uid, st_run.st_gid) == (0o750, 0, nobody.pw_gid)
        assert "gunicorn's workers run as nobody" in s.log.read_text()
    finally:
        s.stop(); shutil.rmtree(home, ignore_errors=True)


# --- under pressure: row limit, deadlines, clients that leave, load shedding, stuck workers ---------------

def long_rows(bundle, n:int)->pd.DataFrame:
    "`n` rows whose message fills `max_seq_length` tokens: the slowest rows to predict."
    from bsm_nb.protocol import longest_rows
    return longest_rows(bundle.config, n)

def limit_in_log(log:Path)->int:
    "The rows-a-request limit a worker logged when its model was ready."
    import re
    m = re.search(r'at most (\d+) rows a request', log.read_text())
    assert m, log.read_text()[-3000:]
    return int(m.group(1))

def raw_request(port:int, body:bytes, content_type:str=CSV)->socket.socket:
    "Send a POST /invocations on a raw connection and return it unread, so that the test can leave without the answer."
    s = socket.create_connection(('127.0.0.1', port), timeout=30)
    s.sendall(b'POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: ' + content_type.encode() +
              f'\r\nContent-Length: {len(body)}\r\n\r\n'.encode() + body)
    return s

def wait_for_log(log:Path, text:str, timeout:float=30)->str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in (out := log.read_text()): return out
        time.sleep(0.1)
    pytest.fail(f'{text!r} not in the log within {timeout} s:\n{log.read_text()[-3000:]}')


@needs_nginx
def test_execution_parameters_fit_the_row_limit(server):
    "MaxPayloadInMB: the payload limit, lowered where the measured row limit holds fewer 100-byte rows."
    limit = limit_in_log(server.log)
    r = requests.get(f'{server.url}/execution-parameters', timeout=5).json()
    assert r == {'MaxConcurrentTransforms': 2, 'BatchStrategy': 'MULTI_RECORD',
                 'MaxPayloadInMB': max(1, min(6, limit * 100 // MB))}


@needs_nginx
def test_more_rows_than_fit_are_refused_at_once(base, bundle, tmp_path):
    """With an 8 s timeout, the measured limit refuses a larger request at once (413, naming the limit),
    and a request of exactly the limit, in the slowest rows there are, is answered within the timeout."""
    s = Server(base, tmp_path/'serve.log', MODEL_SERVER_WORKERS='1', MODEL_SERVER_TIMEOUT='8',
               SAGEMAKER_MAX_PAYLOAD_IN_MB='30')
    try:
        s.wait()
        limit = limit_in_log(s.log)
        assert 10 <= limit < 100_000, limit
        t0 = time.monotonic()
        r = s.post(encode(pd.DataFrame({'message': ['hi'] * (limit + 1)}), CSV), CSV)
        assert (r.status_code, r.headers['Content-Type']) == (413, JSON), r.text
        assert f'at most {limit} rows a request within its 8 s timeout (MAX_ROWS_PER_REQUEST)' in r.json()['error']
        assert time.monotonic() - t0 < 1.5
        t0 = time.monotonic()
        r = s.post(encode(long_rows(bundle, limit), CSV), CSV)
        assert r.status_code == 200 and len(r.json()['predictions']) == limit, r.text[:500]
        assert time.monotonic() - t0 < 8
    finally: s.stop()


@pytest.fixture(scope='module')
def slow_server(net_base, tmp_path_factory):
    "One worker, a 5 s timeout (4 s of work), no row limit to speak of, 30 MB bodies, at most 2 requests held."
    if NGINX is None: pytest.skip('nginx is not installed')
    s = Server(net_base, tmp_path_factory.mktemp('log')/'serve.log', MODEL_SERVER_WORKERS='1', MODEL_SERVER_TIMEOUT='5',
               MAX_ROWS_PER_REQUEST='100000', SAGEMAKER_MAX_PAYLOAD_IN_MB='30', BSM_MAX_QUEUE='2')
    try:
        s.wait()
        yield s
    finally: s.stop()

def too_many(server)->int:
    """Rows of `long_rows` whose work is twice the 5 s timeout at the pace the worker logged
    (12,000 at least, ~0.75 kB each)."""
    import re
    m = re.search(r'its slowest rows take ([0-9.]+) ms each', server.log.read_text())
    assert m, server.log.read_text()[-3000:]
    return max(12_000, min(36_000, int(2 * 5000 / max(float(m.group(1)), 0.1))))


@needs_nginx
def test_too_slow_request_stops_at_its_deadline_and_the_next_is_prompt(slow_server, net_bundle, rows):
    """A request of more work than its 5 s timeout is stopped before its deadline with a JSON 504 saying how far it got
    and how many rows fit (not nginx's bare 504 after the timeout); a request sent meanwhile is shed at once with 503
    and Retry-After; the next normal request is answered in its normal time."""
    n = too_many(slow_server)
    s, normal = slow_server, encode(rows.iloc[:10], JSON)
    s.post(normal)
    t0 = time.monotonic(); s.post(normal); normal_s = time.monotonic() - t0
    with ThreadPoolExecutor(1) as ex:
        t0 = time.monotonic()
        slow = ex.submit(s.post, encode(long_rows(net_bundle, n), CSV), CSV)
        time.sleep(1.0)
        t1 = time.monotonic()
        r = s.post(normal)
        assert (r.status_code == 503 and int(r.headers['Retry-After']) >= 1
                and 'queued ahead need about' in r.json()['error']), r.text[:300]
        assert time.monotonic() - t1 < 1
        r = slow.result()
    took = time.monotonic() - t0
    assert (r.status_code, r.headers['Content-Type']) == (504, JSON), r.text[:300]
    msg = r.json()['error']
    assert ('too large for the 5 s timeout' in msg and f'of {n} rows were done' in msg
            and 'rows fit in that time' in msg), msg
    assert 3 < took < 5, took
    t0 = time.monotonic()
    assert_same(decode(s.post(normal), JSON), net_bundle.predict_frame(rows.iloc[:10]))
    assert time.monotonic() - t0 < normal_s + 0.5


@needs_nginx
def test_work_for_a_client_that_left_is_not_done(slow_server, net_bundle, rows):
    """A client that leaves 1 s into a long request: nginx closes its connection to gunicorn, and the worker stops at
    the next check instead of computing the rest for nobody. Then the server answers as before."""
    n = too_many(slow_server)
    import re
    s = slow_server
    leaving = raw_request(s.port, encode(long_rows(net_bundle, n), CSV))
    time.sleep(1.0)
    t0 = time.monotonic()
    leaving.close()
    out = wait_for_log(s.log, 'the client closed the connection; stopped after', timeout=10)
    assert time.monotonic() - t0 < 4, out[-2000:] # before the 4 s of work the deadline allows
    done = [int(m) for m in re.findall(rf'the client closed the connection; stopped after (\d+) of {n} rows', out)]
    assert done and done[0] < n, out[-2000:]
    # not also computed to the deadline
    assert 'too large for the 5 s timeout' not in out.split('the client closed the connection')[-1]
    assert s.ping().status_code == 200
    assert_same(decode(s.post(encode(rows.iloc[:5], JSON)), JSON), net_bundle.predict_frame(rows.iloc[:5]))


@needs_nginx
def test_load_is_shed_at_once_while_ping_stays_fast(slow_server, net_bundle):
    """Twelve clients at once, each with about half a second of work, against a worker that holds 2 requests: the others
    get 503 with Retry-After at once, no request waits into a timeout, and /ping answers under 2 s throughout."""
    s, body = slow_server, encode(long_rows(net_bundle, 600), CSV) # ~0.3-0.6 s each
    pings, stop = [], threading.Event()
    def pinger():
        while not stop.is_set():
            t0 = time.perf_counter(); status = s.ping().status_code; pings.append((time.perf_counter() - t0, status))
            stop.wait(0.05)
    def call(_):
        t0 = time.monotonic(); r = s.post(body, CSV); return r, time.monotonic() - t0
    watcher = threading.Thread(target=pinger); watcher.start()
    try:
        with ThreadPoolExecutor(12) as ex: answers = list(ex.map(call, range(12)))
    finally: stop.set(); watcher.join(10)
    codes = sorted(r.status_code for r, _ in answers)
    assert set(codes) <= {200, 503} and codes.count(200) >= 2 and codes.count(503) >= 4, codes
    for r, took in answers:
        if r.status_code == 503:
            assert r.headers['Content-Type'] == JSON and int(r.headers['Retry-After']) >= 1, (r.headers, r.text[:300])
            assert took < 1, took
    assert all(st == 200 for _, st in pings) and max(t for t, _ in pings) < 2, max(pings)


@needs_nginx
def test_stuck_worker_is_replaced(net_base, net_bundle, rows, tmp_path):
    """One prediction that runs past BSM_STUCK_AFTER in a single batch (no check can stop it):
    the worker exits, gunicorn starts another, the caller gets a JSON 503 from nginx, and the server answers again."""
    s = Server(net_base, tmp_path/'serve.log', MODEL_SERVER_WORKERS='1', BSM_STUCK_AFTER='1',
               MODEL_SERVER_TIMEOUT='180', # admitted even at 20 ms a row: the worker must get stuck, not refuse
               BSM_SERVE_BATCH_SIZE='100000', MAX_ROWS_PER_REQUEST='100000')
    try:
        s.wait()
        r = s.post(encode(long_rows(net_bundle, 6000), CSV), CSV) # seconds in one batch, tokenizing included
        assert (r.status_code, r.headers['Content-Type']) == (503, JSON), r.text
        s.wait()
        assert_same(decode(s.post(encode(rows.iloc[:5], JSON)), JSON), net_bundle.predict_frame(rows.iloc[:5]))
        log = s.log.read_text()
        assert 'past BSM_STUCK_AFTER: exiting this worker' in log and 'exited with code 70' in log, log[-3000:]
    finally: assert s.stop() == 0


# --- multiclass, through the app in-process -----------------------------------------------------

@pytest.fixture(scope='module')
def multiclass(tmp_path_factory, tiny):
    relabel = lambda df: pd.cut(df['order_amount'].fillna(30), [-np.inf, 20, 60, np.inf],
                                labels=['low', 'mid', 'high']).astype(str)
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
    r = client.post('/invocations', data=encode(sample, CSV), content_type=CSV,
                    headers={'Accept': 'text/csv;header=present'})
    got = pd.read_csv(io.StringIO(r.text), dtype={'id': str, 'label': str})
    assert list(got.columns) == ['id', *[f'prob_{n}' for n in bundle.label_list], 'label']
    np.testing.assert_allclose(got[[f'prob_{n}' for n in bundle.label_list]],
                               expected[[f'prob_{n}' for n in bundle.label_list]], atol=TOL)


# --- bsm-predict ----------------------------------------------------------------------------------

def test_bsm_predict_console_script_on_csv(base, bundle, rows, tmp_path):
    r = subprocess.run([str(BIN/'bsm-predict'), str(base/'model'), str(base/'input'/'data'/'test'/'test.csv'),
                        str(tmp_path/'out.csv')],
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
        ("docker/model/nginx.conf is stale: python -c 'from bsm_nb.server import reference_nginx_conf; "
         "print(reference_nginx_conf(), end=\"\")' > docker/model/nginx.conf")
    r = subprocess.run([sys.executable, str(ROOT/'docker'/'model'/'serve'), '--print-nginx-conf', '--port', '9123'],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and 'listen 9123;' in r.stdout, r.stderr
    code = ('import wsgi\n'
            'state = wsgi.app.extensions["bsm_model"]\n'
            'assert state.wait(120) == "ready", state.reason\n'
            'print(wsgi.app.test_client().get("/ping").status_code)')
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT/'docker'/'model', capture_output=True, text=True,
                       timeout=300, env={**os.environ, 'SAGEMAKER_BASE_DIR': str(base)})
    assert r.returncode == 0 and r.stdout.split() == ['200'], r.stderr[-3000:]
