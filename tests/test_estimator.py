"""`bsm_nb.estimator.BSMClassifier` (nbs/15_estimator.ipynb) at process level: one fit whose saved model dir answers as
bsm-predict and bsm-serve answer, `evaluate` against metrics.json, and launch, from_training_job, deploy and transform
against moto; plus the progress bar of `fit(progress=True)` and its absence from `bsm-train` on a terminal."""
import dataclasses, fcntl, io, json, os, select, struct, subprocess, sys, tarfile, termios, time
from pathlib import Path
from types import SimpleNamespace

import numpy as np, pandas as pd
import pytest

from bsm_nb.config import ConfigError, config_from_dict, load_config
from bsm_nb.estimator import BSMClassifier, training_env
from bsm_nb.files import split_s3_uri
from bsm_nb.launch import model_data_uri
from bsm_nb.reading import DataError
from bsm_nb.serve import ServeSettings, create_app
from bsm_nb.synthetic import DEFAULT_FIELDS, make_messaging_cases
from conftest import ROOT, BSM_TRAIN, train_environment
import test_launch
from test_launch import BUCKET, IMAGE, sdk_session
from test_serve import NGINX, Server, records

BIN = Path(sys.executable).parent
PARAMS = dict(text='message', cat=DEFAULT_FIELDS['cat_field_list'], num=DEFAULT_FIELDS['tab_field_list'], id='case_id')
TOL = 1e-6
aws = test_launch.aws # the moto fixture: an offline AWS with an execution role and a bucket


@pytest.fixture(scope='module')
def data():
    "Synthetic train, val and test frames of 200, 60 and 60 rows."
    cases = make_messaging_cases(320, seed=0)
    return cases[:200].reset_index(drop=True), cases[200:260].reset_index(drop=True), cases[260:].reset_index(drop=True)


@pytest.fixture(scope='module')
def fitted(tmp_path_factory, tiny_bert_dir, data):
    "One fit of the tiny encoder (one epoch), the config it read, and its model dir saved as `<base>/model`."
    root = tmp_path_factory.mktemp('estimator')
    clf = BSMClassifier(**PARAMS, work_dir=root/'run', max_epochs=1, batch_size=32,
                        pretrained_model=str(tiny_bert_dir)).fit(*data)
    cfg, _ = load_config([], training_env(root/'run'))
    saved = clf.save(root/'sm'/'model')
    return SimpleNamespace(clf=clf, cfg=cfg, saved=saved, base=root/'sm')


def assert_answers(got:pd.DataFrame, clf:BSMClassifier, df:pd.DataFrame):
    "`got` (id, probability, label) is what `clf` answers for `df`, probabilities to 1e-6."
    exp = clf.predict_frame(df)
    assert got['id'].astype(str).tolist() == exp['id'].astype(str).tolist() == df['case_id'].tolist()
    np.testing.assert_allclose(got['probability'].to_numpy(float), exp['probability'].to_numpy(float), rtol=0, atol=TOL)
    np.testing.assert_allclose(got['probability'].to_numpy(float), clf.predict_proba(df)[:, 1], rtol=0, atol=TOL)
    assert got['label'].astype(str).tolist() == exp['label'].astype(str).tolist()


# --- the saved model dir answers as the fitted object ---------------------------------------------

@pytest.mark.parametrize('fmt', ['jsonl', 'csv'])
def test_bsm_predict_program_answers_as_the_estimator(fitted, data, tmp_path, fmt):
    "The exported bsm-predict, on the saved dir in a fresh process, gives predict_frame's answers."
    test = data[2]
    src = tmp_path/f'rows.{fmt}'
    if fmt == 'csv': test.to_csv(src, index=False)
    else: src.write_text(''.join(json.dumps(r) + '\n' for r in records(test)))
    r = subprocess.run([str(BIN/'bsm-predict'), str(fitted.saved), str(src), str(tmp_path/'out.csv')],
                       capture_output=True, text=True, timeout=300, env=train_environment())
    assert r.returncode == 0, r.stderr[-3000:]
    assert f'{len(test)} predictions written' in r.stderr
    assert_answers(pd.read_csv(tmp_path/'out.csv', dtype={'id': str, 'label': str}), fitted.clf, test)


@pytest.mark.skipif(NGINX is None, reason='nginx is not installed (apt-get install -y nginx): bsm-serve runs nginx')
def test_bsm_serve_answers_as_the_estimator(fitted, data, tmp_path):
    "bsm-serve (nginx + gunicorn) on the saved dir answers a JSON request as predict_frame does."
    s = Server(fitted.base, tmp_path/'serve.log')
    try:
        s.wait()
        r = s.post(json.dumps(records(data[2])).encode())
    finally: s.stop()
    assert r.status_code == 200, r.text
    assert_answers(pd.DataFrame(r.json()['predictions']), fitted.clf, data[2])


def test_flask_app_answers_as_the_estimator(fitted, data):
    "The serving app, loading the saved dir itself, answers as predict_frame does."
    app = create_app(ServeSettings(model_dir=fitted.saved, torch_threads=0))
    assert app.extensions['bsm_model'].wait(120) == 'ready'
    r = app.test_client().post('/invocations', data=json.dumps(records(data[2])), content_type='application/json')
    assert r.status_code == 200, r.data[:500]
    assert_answers(pd.DataFrame(r.get_json()['predictions']), fitted.clf, data[2])


# --- evaluate --------------------------------------------------------------------------------------

def test_evaluate_all_row_is_metrics_json_test(fitted, data):
    "evaluate(test_df)'s 'all' row equals the test figures train wrote to metrics.json."
    written = json.loads((fitted.saved/'metrics.json').read_text())['test']
    ev = fitted.clf.evaluate(data[2])
    assert list(ev.index) == ['all'] and ev.loc['all', 'rows'] == len(data[2])
    for k in ('auroc', 'average_precision', 'f1_score', 'accuracy', 'loss'):
        assert abs(ev.loc['all', k] - written[k]) <= 1e-4, (k, ev.loc['all', k], written[k])


def test_evaluate_by_a_column_has_a_row_per_value(fitted, data):
    "evaluate(df, by=col) has 'all' and one row per value of col, their rows adding up; an unknown col is a KeyError."
    test = data[2]
    ev = fitted.clf.evaluate(test, by='order_status')
    values = test['order_status'].unique()
    assert list(ev.index)[0] == 'all' and len(ev) == 1 + len(values)
    assert set(ev.index[1:]) == {f'order_status={v}' for v in values}
    assert ev['rows'].iloc[1:].sum() == ev.loc['all', 'rows'] == len(test)
    with pytest.raises(KeyError, match="by='nope'"): fitted.clf.evaluate(test, by='nope')


def test_evaluate_refuses_an_unknown_label_as_train_does(fitted, data):
    "A label outside the classes fails evaluate with train's message, naming the label."
    from bsm_nb.job import encode_split
    bad = data[2].astype({'label': object})
    bad.loc[5, 'label'] = 'maybe'
    b = fitted.clf.bundle
    with pytest.raises(DataError) as in_train: encode_split('test', bad, b.config, b.processor)
    with pytest.raises(ValueError) as e: fitted.clf.evaluate(bad)
    assert "label 'maybe' is not one of" in str(e.value) and 'row 5' in str(e.value)
    assert str(in_train.value) == f'test channel: {e.value}'


# --- SageMaker, against moto -----------------------------------------------------------------------

def channel_files(aws, uri:str)->dict:
    "Relative key -> bytes of the objects under an S3 channel URI."
    bucket, prefix = split_s3_uri(uri, key=True)
    objs = aws.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get('Contents', [])
    return {o['Key'][len(prefix):]: aws.s3.get_object(Bucket=bucket, Key=o['Key'])['Body'].read() for o in objs}


def test_launch_sends_the_fit_config_and_uploaded_channels(fitted, data, aws, tiny_bert_dir):
    "launch after fit: one CreateTrainingJob with fit's config (encoder as a channel) and channels that exist in S3."
    job = fitted.clf.launch(IMAGE, aws.role, sagemaker_session=sdk_session(aws), instance_type='ml.g5.xlarge',
                            spot=True)
    [req] = aws.calls('CreateTrainingJob')
    assert req['TrainingJobName'] == job.training_job_name == fitted.clf.training_job_name_
    assert fitted.cfg.pretrained_model == str(tiny_bert_dir)
    assert config_from_dict(req['HyperParameters']) == dataclasses.replace(fitted.cfg, pretrained_model='')
    assert req['EnableManagedSpotTraining'] is True and req['ResourceConfig']['InstanceType'] == 'ml.g5.xlarge'
    uris = {c['ChannelName']: c['DataSource']['S3DataSource']['S3Uri'] for c in req['InputDataConfig']}
    assert set(uris) == {'train', 'val', 'test', 'pretrained'}
    for split, df in zip(('train', 'val', 'test'), data):
        files = channel_files(aws, uris[split])
        assert list(files) == [f'{split}.parquet']
        pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(files[f'{split}.parquet'])), df)
    encoder = {p.relative_to(tiny_bert_dir).as_posix(): p.read_bytes() for p in tiny_bert_dir.rglob('*') if p.is_file()}
    assert channel_files(aws, uris['pretrained']) == encoder


def test_bad_hyperparameter_fails_launch_before_any_request(data, aws, tmp_path):
    "A misspelt hyperparameter fails launch with train's message, before any S3 upload or SageMaker request."
    clf = BSMClassifier(**PARAMS, work_dir=tmp_path/'run', batch_sise=8)
    session = sdk_session(aws)
    sent = len(aws.ops())
    with pytest.raises(ConfigError) as in_train: config_from_dict({'batch_sise': '8'})
    with pytest.raises(ConfigError) as e: clf.launch(IMAGE, aws.role, train_df=data[0], sagemaker_session=session)
    assert str(e.value) == str(in_train.value) and "'batch_sise'" in str(e.value)
    assert aws.ops()[sent:] == []
    assert aws.s3.list_objects_v2(Bucket=BUCKET)['KeyCount'] == 0


def test_launch_without_a_fit_takes_the_frames_given(data, aws, tmp_path, tiny_bert_dir):
    "launch(train_df=...) on an unfitted estimator uploads that frame; with no frame and no fit it fails first."
    clf = BSMClassifier(**PARAMS, work_dir=tmp_path/'run', max_epochs=3, pretrained_model=str(tiny_bert_dir))
    with pytest.raises(ValueError, match='no data; pass train_df'):
        clf.launch(IMAGE, aws.role, sagemaker_session=sdk_session(aws))
    assert aws.calls('CreateTrainingJob') == []
    clf.launch(IMAGE, aws.role, train_df=data[0], sagemaker_session=sdk_session(aws))
    [req] = aws.calls('CreateTrainingJob')
    assert config_from_dict(req['HyperParameters']) == dataclasses.replace(clf.config, pretrained_model='')
    uris = {c['ChannelName']: c['DataSource']['S3DataSource']['S3Uri'] for c in req['InputDataConfig']}
    assert set(uris) == {'train', 'pretrained'}
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(channel_files(aws, uris['train'])['train.parquet'])),
                                  data[0])
    assert not (tmp_path/'run'/'model'/'bsm_model.json').exists() # nothing trained locally


def tar_gz(members:list)->bytes:
    "A .tar.gz of (name, bytes) files and TarInfo entries, in order."
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz') as tar:
        for m in members:
            if isinstance(m, tarfile.TarInfo): tar.addfile(m)
            else:
                info = tarfile.TarInfo(m[0]); info.size = len(m[1]); tar.addfile(info, io.BytesIO(m[1]))
    return buf.getvalue()


def put_model(aws, job_name:str, body:bytes)->str:
    "Upload `body` where the completed job's model.tar.gz belongs; its S3 URI."
    uri = model_data_uri(job_name, aws.sm)
    bucket, key = split_s3_uri(uri, key=True)
    aws.s3.put_object(Bucket=bucket, Key=key, Body=body)
    return uri


def test_round_trip_from_training_job_deploy_and_transform(fitted, data, aws):
    "The job's model.tar.gz loads back predicting exactly as the fit; deploy and transform name that model."
    test = data[2]
    job = fitted.clf.launch(IMAGE, aws.role, sagemaker_session=sdk_session(aws))
    model_files = sorted(fitted.saved.rglob('*'))
    uri = put_model(aws, job.training_job_name, tar_gz(
        [(p.relative_to(fitted.saved).as_posix(), p.read_bytes()) for p in model_files if p.is_file()]))
    back = BSMClassifier.from_training_job(job.training_job_name, sagemaker_client=aws.sm, s3=aws.s3)
    np.testing.assert_array_equal(back.predict_proba(test), fitted.clf.predict_proba(test))
    assert back.training_job_name_ == job.training_job_name and back.config == fitted.clf.config

    names = fitted.clf.deploy(IMAGE, aws.role, 'bsm-est', sagemaker_client=aws.sm)
    container = aws.sm.describe_model(ModelName=names['model_name'])['PrimaryContainer']
    assert (container['Image'], container['ModelDataUrl']) == (IMAGE, uri)
    variants = aws.sm.describe_endpoint_config(EndpointConfigName=names['endpoint_config_name'])['ProductionVariants']
    assert [v['ModelName'] for v in variants] == [names['model_name']]
    assert aws.sm.describe_endpoint(EndpointName='bsm-est')['EndpointConfigName'] == names['endpoint_config_name']

    rows = test.drop(columns='label')
    name = back.transform(rows, f's3://{BUCKET}/scores/', IMAGE, aws.role, sagemaker_client=aws.sm, s3=aws.s3)
    [req] = aws.calls('CreateTransformJob')
    src = req['TransformInput']['DataSource']['S3DataSource']['S3Uri']
    assert req['TransformJobName'] == name and src.endswith('.jsonl')
    assert req['TransformOutput']['S3OutputPath'] == f's3://{BUCKET}/scores/'
    bucket, key = split_s3_uri(src, key=True)
    sent = [json.loads(ln) for ln in aws.s3.get_object(Bucket=bucket, Key=key)['Body'].read().splitlines()]
    assert sent == records(rows) and 'label' not in sent[0] # every row and field as given, missing ones as null
    assert aws.sm.describe_model(ModelName=req['ModelName'])['PrimaryContainer']['ModelDataUrl'] == uri
    assert aws.sm.describe_transform_job(TransformJobName=name)['ModelName'] == req['ModelName']


def symlink(name:str, target:str)->tarfile.TarInfo:
    info = tarfile.TarInfo(name); info.type, info.linkname = tarfile.SYMTYPE, target
    return info


@pytest.mark.parametrize('bad,named', [(symlink('evil', '../../outside'), 'evil'), (('../x', b'escaped'), '../x')])
def test_from_training_job_refuses_links_and_escaping_members(fitted, aws, tmp_path, bad, named):
    "A model.tar.gz with a symlink or a '../' member is refused, naming it; nothing of it lands, anywhere."
    job = fitted.clf.launch(IMAGE, aws.role, sagemaker_session=sdk_session(aws))
    put_model(aws, job.training_job_name, tar_gz([('ok.txt', b'fine'), bad]))
    work = tmp_path/'w'
    with pytest.raises(DataError, match=f"member {named!r} is not a plain file"):
        BSMClassifier.from_training_job(job.training_job_name, work_dir=work, sagemaker_client=aws.sm, s3=aws.s3)
    assert not (work/'x').exists() and not (tmp_path/'x').exists() and not (tmp_path/'outside').exists()
    assert [p.relative_to(work).as_posix() for p in sorted(work.rglob('*'))] == [] # no half-unpacked model dir


# --- the progress bar ------------------------------------------------------------------------------

def run_on_terminal(cmd:list, env:dict, timeout:float=600)->tuple:
    "Run `cmd` with stdin, stdout and stderr on a pseudo-terminal that keeps '\\n' as is: (returncode, output)."
    master, slave = os.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR # the terminal would turn each '\n' into '\r\n'
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 120, 0, 0)) # 0x0 would hide tqdm's bar
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT)
    os.close(slave)
    out, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 1)[0]:
                try: chunk = os.read(master, 65536)
                except OSError: break # EIO: every writer has closed the terminal
                if not chunk: break
                out.append(chunk)
        else: proc.kill()
    finally: os.close(master)
    return proc.wait(), b''.join(out).decode(errors='replace')


def test_bsm_train_on_a_terminal_writes_no_progress_bar(train_tree, tiny_bert_dir):
    "bsm-train, the container's program, logs lines only even when its output is a terminal."
    env = train_environment()
    probe = 'import sys, tqdm; print(sys.stderr.isatty()); [i for i in tqdm.tqdm(range(3))]' # a bar shows here
    rc, out = run_on_terminal([sys.executable, '-c', probe], env)
    assert rc == 0 and out.startswith('True\n') and '\r' in out and 'it/s' in out, out
    base = train_tree('pty', n_train=120, n_val=40, n_test=40)
    rc, out = run_on_terminal([str(BSM_TRAIN), '--pretrained_model', str(tiny_bert_dir), '--max_epochs', '1'],
                              train_environment(base))
    assert rc == 0, out[-3000:]
    assert 'final ' in out and (base/'model'/'bsm_model.json').exists(), out[-3000:]
    assert '\r' not in out and 'it/s' not in out, out[-3000:]


FIT = """import sys
from bsm_nb.estimator import BSMClassifier
from bsm_nb.synthetic import make_messaging_cases
cases = make_messaging_cases(160, seed=1)
BSMClassifier(text='message', id='case_id', work_dir=sys.argv[1], max_epochs=1, batch_size=32,
              pretrained_model=sys.argv[2], progress=True).fit(cases[:120], cases[120:])
"""


def test_fit_with_progress_writes_lightnings_bar(tmp_path, tiny_bert_dir):
    "fit(progress=True) in a plain process (output not a terminal) shows Lightning's progress bar."
    r = subprocess.run([sys.executable, '-c', FIT, str(tmp_path/'run'), str(tiny_bert_dir)], capture_output=True,
                       text=True, timeout=600, cwd=tmp_path, env=train_environment())
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    bar = r.stdout + r.stderr # Lightning's TQDM bar writes to stdout
    assert 'Epoch 0' in bar and ('\r' in bar or 'it/s' in bar), bar[-3000:]
    assert (tmp_path/'run'/'model'/'bsm_model.json').exists()
