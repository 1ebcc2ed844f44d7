"""`bsm-train` as SageMaker runs it: a real process, a temporary `SAGEMAKER_BASE_DIR` (or script mode's `SM_*`
variables), and everything it leaves behind checked: the model dir, metrics, predictions, plots, TensorBoard events,
log lines, and for bad input exit code 255 with a failure file whose first line names the culprit.
The catalogue of bad inputs (section 4) and the fuzzing of hyperparameters.json (section 6) run its `main` in this
process, so that torch is imported once; what needs a real process (imports, exit codes of the script) is in section 5.
Most runs use a tiny random BERT (`tiny_bert_dir`); one uses the real packaged MiniLM on the Women's Clothing data."""
import gzip, io, json, os, re, shutil, struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np, pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
WOMENS = ROOT.parent/'shared'/'data'/'womens_clothing'
WORKERS = 2 # concurrent bsm-train processes: each start spends ~5 s importing torch, lightning and transformers
MODEL_FILES = {'bsm_model.json', 'model.safetensors', 'preprocessor.json', 'tokenizer', 'metrics.json',
               'predictions.csv', 'predictions_val.csv', 'roc_curve.png', 'pr_curve.png',
               'calibration_curve.png'} # + the trees the answers use

pytestmark = pytest.mark.timeout(900)


# --- helpers ----------------------------------------------------------------------------------------

def meta_of(model_dir:Path)->dict: return json.loads((Path(model_dir)/'bsm_model.json').read_text())
def metrics_of(model_dir:Path)->dict: return json.loads((Path(model_dir)/'metrics.json').read_text())
def channel_csv(base:Path, channel:str)->Path: return base/'input'/'data'/channel/f'{channel}.csv'

def read_predictions(path:Path)->pd.DataFrame:
    return pd.read_csv(path, dtype={'id': str, 'label': str, 'true_label': str})

def png_size(path:Path)->tuple:
    "(width, height) of a PNG file; fails unless the file starts with the PNG signature and an IHDR chunk."
    head = Path(path).read_bytes()[:24]
    assert head[:8] == b'\x89PNG\r\n\x1a\n' and head[12:16] == b'IHDR', f'{path} is not a PNG file'
    return struct.unpack('>II', head[16:24])

def staging_left(model_dir:Path)->list: return [p.name for p in Path(model_dir).glob('.staging-*')]

def assert_complete_model_dir(model_dir:Path, out:str):
    "Every file of a finished run, valid plots, and no staging directory."
    names = {p.name for p in Path(model_dir).iterdir()}
    assert MODEL_FILES <= names, f'missing {MODEL_FILES - names}\n{out[-3000:]}'
    weights = meta_of(model_dir)['ensemble_weights']
    assert (names & {'trees.txt', 'trees_fields.txt'}
            == {f'{p}.txt' for p, w in weights.items() if w and p != 'network'}), (names, weights)
    assert not staging_left(model_dir)
    assert (model_dir/'tokenizer'/'tokenizer.json').exists() or (model_dir/'tokenizer'/'vocab.txt').exists()
    for png in ('roc_curve.png', 'pr_curve.png', 'calibration_curve.png'):
        w, h = png_size(model_dir/png)
        assert w > 100 and h > 100, (png, w, h)


# --- 1. synthetic data, end to end ------------------------------------------------------------------

@pytest.fixture(scope='module')
def synthetic_run(train_tree, train_run, tiny_bert_dir):
    "One run on synthetic cases: two epochs, lr 2e-05 in the file and 1e-4 on the command line."
    base = train_tree('e2e', n_train=200, n_val=60, n_test=60, seed=3,
                      hyperparameters={'max_epochs': 2, 'batch_size': 32, 'lr': '2e-05', 'early_stop_patience': 5})
    rc, out, base = train_run(base, '--pretrained_model', tiny_bert_dir, '--lr', '1e-4')
    assert rc == 0, out[-4000:]
    return base, out


def test_synthetic_run_writes_a_complete_model_dir(synthetic_run):
    "A successful run leaves every model-dir file (valid PNG plots, tokenizer) and no staging directory."
    base, out = synthetic_run
    assert_complete_model_dir(base/'model', out)
    assert not (base/'output'/'failure').exists()


def test_synthetic_model_dir_records_the_encoder_it_started_from(synthetic_run, tiny_bert_dir):
    "bsm_model.json names the encoder and the sha256 of its weights file, which `sha256sum` would give."
    import hashlib
    from bsm_nb.model import encoder_sha256
    meta = meta_of(synthetic_run[0]/'model')
    assert meta['encoder'] == str(tiny_bert_dir)
    assert (meta['encoder_sha256'] == encoder_sha256(tiny_bert_dir)
            == hashlib.sha256((tiny_bert_dir/'model.safetensors').read_bytes()).hexdigest())

def test_synthetic_metrics_json(synthetic_run):
    """metrics.json holds val and test metrics in [0, 1] with the right row counts,
    and the threshold bsm_model.json uses."""
    base, _ = synthetic_run
    m, meta = metrics_of(base/'model'), meta_of(base/'model')
    assert {'val', 'test', 'threshold'} <= set(m)
    for split, rows in (('val', 60), ('test', 60)):
        assert {'auroc', 'average_precision', 'f1_score'} <= set(m[split]), m[split]
        assert all(0 <= m[split][k] <= 1 for k in ('auroc', 'average_precision', 'f1_score')), m[split]
        assert m[split]['rows'] == rows
    assert 0 < m['threshold'] < 1
    assert meta['threshold'] == pytest.approx(m['threshold'])
    assert meta['label_list'] == ['0', '1']


def test_synthetic_predictions_follow_the_test_file(synthetic_run):
    "predictions.csv has one row per test row, the test ids in file order, true labels, and labels from the threshold."
    base, _ = synthetic_run
    test = pd.read_csv(channel_csv(base, 'test'), dtype={'case_id': str})
    pred = read_predictions(base/'model'/'predictions.csv')
    assert list(pred.columns) == ['id', 'probability', 'label', 'true_label']
    assert len(pred) == len(test) == 60
    assert pred.id.tolist() == test.case_id.tolist()
    assert pred.true_label.tolist() == test.label.astype(str).tolist()
    assert pred.probability.between(0, 1).all()
    t = metrics_of(base/'model')['threshold']
    assert pred.label.tolist() == np.where(pred.probability >= t, '1', '0').tolist()
    val = pd.read_csv(channel_csv(base, 'val'), dtype={'case_id': str})
    assert read_predictions(base/'model'/'predictions_val.csv').id.tolist() == val.case_id.tolist()


def test_synthetic_log_has_metric_lines(synthetic_run):
    """stdout has an `epoch=N` line per epoch with val_auroc and val_loss,
    and a `final` line whose test_auroc is metrics.json's."""
    base, out = synthetic_run
    epochs = [l for l in out.splitlines() if l.startswith('epoch=')]
    assert [l.split()[0] for l in epochs] == ['epoch=1', 'epoch=2'], out[-3000:]
    assert all('val_auroc=' in l and 'val_loss=' in l for l in epochs), epochs
    final = [l for l in out.splitlines() if l.startswith('final ')]
    assert len(final) == 1, out[-3000:]
    logged = float(re.search(r'\btest_auroc=([0-9.]+)', final[0]).group(1))
    assert logged == pytest.approx(metrics_of(base/'model')['test']['auroc'], abs=1e-4)


def test_synthetic_tensorboard_events(synthetic_run):
    "TensorBoard event files under output/tensorboard hold val_auroc and val_loss for each of the two epochs."
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    base, _ = synthetic_run
    tb = base/'output'/'tensorboard'
    assert list(tb.rglob('events.out.tfevents.*')), f'no event files under {tb}'
    ea = EventAccumulator(str(tb)); ea.Reload()
    for tag in ('val_auroc', 'val_loss'):
        assert tag in ea.Tags()['scalars'], ea.Tags()
        assert len(ea.Scalars(tag)) == 2


def test_synthetic_model_dir_reloads_to_the_same_predictions(synthetic_run):
    """`load_bundle(model_dir).predict_frame` on the test file
    (read by pandas, typed) gives predictions.csv's probabilities."""
    from bsm_nb.artifacts import load_bundle
    base, _ = synthetic_run
    test = pd.read_csv(channel_csv(base, 'test'))
    got = load_bundle(base/'model', device='cpu').predict_frame(test)
    ref = read_predictions(base/'model'/'predictions.csv')
    assert got.id.astype(str).tolist() == ref.id.tolist()
    np.testing.assert_allclose(got.probability.to_numpy(), ref.probability.to_numpy(), atol=1e-5, rtol=0)
    assert got.label.astype(str).tolist() == ref.label.tolist()


def test_synthetic_run_reports_the_network_the_trees_and_their_blend(synthetic_run):
    """The default `ensemble=auto`: metrics.json and the final line give each part's val and test scores, the
    weight and the temperature chosen on val, and ECE / Brier before and after calibration; bsm_model.json
    holds what reproduces them."""
    base, out = synthetic_run
    m, meta = metrics_of(base/'model'), meta_of(base/'model')
    assert set(m['parts']) == {'network', 'trees', 'trees_fields', 'answers'}, m['parts']
    for part in m['parts'].values():
        assert all(0 <= part[k][f] <= 1 for k in ('val', 'test') for f in ('auroc', 'ece')) and part['test']['loss'] > 0
    assert {k: v for k, v in m['parts']['answers']['test'].items() if k != 'ece'} == m['test']
    assert m['parts']['answers']['threshold'] == m['threshold']
    ens = m['ensemble']
    w, T = ens['ensemble_weights'], ens['temperature']
    assert ens['ensemble'] == 'auto' and set(w) == {'network', 'trees', 'trees_fields'} and T > 0, ens
    assert abs(sum(w.values()) - 1) < 1e-9 and ens['choice'] in ('best part', 'blend'), ens
    assert set(ens['cv_log_loss']) == {'best part', 'blend'} and ens['folds'] == 5, ens # chosen by cross-fitting on val
    assert ({p: c['weight'] for p, c in ens['candidates'].items()} == w
            and all(c['why'] for c in ens['candidates'].values()))
    assert (meta['ensemble_weights'], meta['temperature'], meta['format_version']) == (w, T, 3)
    assert set(m['calibration']['test']) == {'ece_before', 'ece_after', 'brier_before', 'brier_after'}
    final = next(ln for ln in out.splitlines() if ln.startswith('final '))
    for p in w: assert (f'weight_{p}={w[p]:.4f}' in final
                        and f'{p}_test_auroc={m["parts"][p]["test"]["auroc"]:.4f}' in final), final


def test_the_tree_parts_read_what_they_are_named_for(synthetic_run):
    """trees.txt reads the fields and a count per word piece of the saved tokenizer, trees_fields.txt the fields alone;
    the model dir holds the parts with weight (`assert_complete_model_dir`), and they load as those parts."""
    from bsm_nb.artifacts import load_bundle
    from bsm_nb.ensemble import load_tree_parts
    from bsm_nb.model import load_tokenizer
    base, _ = synthetic_run
    cfg, weights = meta_of(base/'model')['config'], meta_of(base/'model')['ensemble_weights']
    n_fields = len(cfg['cat_field_list']) + len(cfg['tab_field_list'])
    want = {'trees': n_fields + len(load_tokenizer(str(base/'model'/'tokenizer'))), 'trees_fields': n_fields}
    parts = load_tree_parts(base/'model')
    assert set(parts) == {p for p, w in weights.items() if w and p != 'network'}, (parts, weights)
    assert {p: b.num_feature() for p, b in parts.items()} == {p: want[p] for p in parts}
    assert set(load_bundle(base/'model', device='cpu').trees) == set(parts)


def test_predict_and_serve_answer_what_training_wrote(synthetic_run):
    """predictions.csv, `predict` (load_bundle) and the server (`create_app`, in process) give the same blended,
    calibrated probabilities, to within 1e-6, and the same labels."""
    from bsm_nb.protocol import predict
    from bsm_nb.serve import ServeSettings, create_app
    base, _ = synthetic_run
    test = pd.read_csv(channel_csv(base, 'test'))
    ref = read_predictions(base/'model'/'predictions.csv')
    got = predict(base/'model', test)
    np.testing.assert_allclose(got.probability.to_numpy(), ref.probability.to_numpy(), atol=1e-6, rtol=0)
    assert got.label.astype(str).tolist() == ref.label.tolist()
    app = create_app(ServeSettings(model_dir=base/'model', torch_threads=0))
    assert app.extensions['bsm_model'].wait(120) == 'ready'
    r = app.test_client().post('/invocations', data=channel_csv(base, 'test').read_bytes(), content_type='text/csv',
                               headers={'Accept': 'application/json'})
    assert r.status_code == 200, r.text
    served = r.json['predictions']
    assert [p['id'] for p in served] == ref.id.tolist()
    np.testing.assert_allclose([p['probability'] for p in served], ref.probability.to_numpy(), atol=1e-6, rtol=0)


def test_a_model_dir_never_runs_code_it_names(synthetic_run, tmp_path):
    """A model dir whose config names a text hook is data asking to run code: `predict`, `bsm-predict` and the server
    refuse it unless the deployer allows the hook (BSM_TEXT_HOOKS), refuse Python's own callables always, and nothing
    it names runs, not even a module's import."""
    import subprocess, sys
    from bsm_nb.protocol import predict
    from bsm_nb.serve import ServeSettings, create_app
    base, _ = synthetic_run
    hooks, marker, imported = tmp_path/'hooks', tmp_path/'pwned', tmp_path/'imported'
    hooks.mkdir()
    (hooks/'team_hooks.py').write_text(f'open({str(imported)!r}, "w").close()\ndef shout(s): return s.upper()\n')
    def model_with(hook:str)->Path:
        d = tmp_path/hook.replace(':', '_'); shutil.copytree(base/'model', d)
        m = meta_of(d); m['config']['text_hook'] = hook; (d/'bsm_model.json').write_text(json.dumps(m)); return d
    rows = pd.read_csv(channel_csv(base, 'test')).head(3).assign(message=f'touch {marker}')
    (tmp_path/'rows.csv').write_text(rows.to_csv(index=False))
    env = {**os.environ, 'PYTHONPATH': str(hooks), 'HF_HUB_OFFLINE': '1'}
    env.pop('BSM_TEXT_HOOKS', None)
    bsm_predict = Path(sys.executable).parent/'bsm-predict'
    def run_predict(d:Path, **extra):
        return subprocess.run([str(bsm_predict), str(d), str(tmp_path/'rows.csv'), str(tmp_path/'out.jsonl')],
                              capture_output=True, text=True, env={**env, **extra}, timeout=300)
    for hook in ['os:system', 'builtins:eval', 'subprocess:getoutput']:
        d = model_with(hook)
        with pytest.raises(ValueError, match='never accepted as a hook'): predict(d, rows)
        r = run_predict(d, BSM_TEXT_HOOKS=hook) # not even a deployer can allow Python's own callables
        assert r.returncode == 2 and 'never accepted as a hook' in r.stderr, r.stderr[-2000:]
        app = create_app(ServeSettings(model_dir=d, torch_threads=0))
        assert app.extensions['bsm_model'].wait(120) == 'failed'
        c = app.test_client()
        assert c.get('/ping').status_code != 200
        assert c.post('/invocations', data=(tmp_path/'rows.csv').read_bytes(),
                      content_type='text/csv').status_code != 200
    assert not marker.exists()
    d = model_with('team_hooks:shout') # a package of the team's own, not allowed by this deployment
    r = run_predict(d)
    assert r.returncode == 2 and 'does not allow' in r.stderr and 'BSM_TEXT_HOOKS' in r.stderr, r.stderr[-2000:]
    assert not imported.exists() and not (tmp_path/'out.jsonl').exists()
    r = run_predict(d, BSM_TEXT_HOOKS='team_hooks:shout') # the deployer allows it
    assert r.returncode == 0, r.stderr[-2000:]
    assert imported.exists() and len((tmp_path/'out.jsonl').read_text().splitlines()) == 3


def test_command_line_flag_overrides_the_hyperparameters_file(synthetic_run, tiny_bert_dir):
    "`--lr 1e-4` wins over the file's lr 2e-05; the file's other values stay; the config is saved in bsm_model.json."
    base, _ = synthetic_run
    cfg = meta_of(base/'model')['config']
    assert json.loads((base/'input/config/hyperparameters.json').read_text())['lr'] == '2e-05'
    assert ((cfg['lr'], cfg['max_epochs'], cfg['batch_size'], cfg['pretrained_model'])
            == (1e-4, 2, 32, str(tiny_bert_dir)))


# --- 2. real data: Women's Clothing reviews ----------------------------------------------------------

@pytest.fixture(scope='module')
def womens_clothing():
    "(column_info, {split: first rows}) of the Women's Clothing splits, the unnamed index column renamed to `row_id`."
    if not (WOMENS/'train.csv').exists():
        pytest.skip(f'../shared/data/womens_clothing not found (looked for {WOMENS}/train.csv): the real-data tests '
                    'need it')
    info = json.loads((WOMENS/'column_info.json').read_text())
    def read(name, n):
        df = pd.read_csv(WOMENS/name, nrows=n)
        assert df.columns[0].startswith('Unnamed'), df.columns[0] # the README: the first, unnamed column is the row id
        return df.rename(columns={df.columns[0]: 'row_id'})
    return info, {'train': read('train.csv', 300), 'val': read('val.csv', 100), 'test': read('test.csv', 100)}


def womens_hyperparameters(info:dict, **extra)->dict:
    """Both text fields, the three categoricals, Age and Positive Feedback Count
    (not Rating, which gives the label away)."""
    return {'id_name': 'row_id', 'text_name': json.dumps(info['text_cols']),
            'cat_field_list': json.dumps(info['cat_cols']),
            'tab_field_list': json.dumps([c for c in info['num_cols'] if c != 'Rating']),
            'label_name': info['label_col'], 'label_list': json.dumps(info['label_list']),
            **{k: str(v) for k, v in extra.items()}}


def write_tree(base:Path, hyperparameters:dict, files:dict)->Path:
    "A SageMaker tree under `base`: `files` maps 'channel/name' to a writer called with the file's path."
    (base/'input'/'config').mkdir(parents=True)
    (base/'input'/'config'/'hyperparameters.json').write_text(json.dumps(hyperparameters))
    for rel, write in files.items():
        p = base/'input'/'data'/rel
        p.parent.mkdir(parents=True, exist_ok=True); write(p)
    return base


def check_womens_outputs(base:Path, info:dict, splits:dict, out:str):
    "Model dir complete; predictions for every test row, in order, labels from label_list; true labels correct."
    model = base/'model'
    assert_complete_model_dir(model, out)
    m = metrics_of(model)
    assert (m['val']['rows'], m['test']['rows'], m['train_rows']) == (len(splits['val']),
                                                                      len(splits['test']), len(splits['train']))
    names = info['label_list']
    pred = read_predictions(model/'predictions.csv')
    assert pred.id.tolist() == splits['test'].row_id.astype(str).tolist()
    assert set(pred.label) <= set(names)
    assert pred.true_label.tolist() == [names[int(y)] for y in splits['test'][info['label_col']]]
    cfg = meta_of(model)['config']
    assert cfg['text_name'] == info['text_cols'] and 'Rating' not in cfg['tab_field_list']
    return m


@pytest.mark.timeout(1200)
def test_real_minilm_on_womens_clothing(womens_clothing, train_run, tmp_path):
    "The packaged MiniLM (no pretrained_model), one epoch on 300 real reviews, beats chance clearly on 100 test rows."
    from bsm_nb.model import packaged_encoder_path
    info, splits = womens_clothing
    hps = womens_hyperparameters(info, max_epochs=1, batch_size=32, max_seq_length=64)
    base = write_tree(tmp_path/'ml', hps,
                      {f'{k}/{k}.csv': (lambda p, df=df: df.to_csv(p, index=False)) for k, df in splits.items()})
    assert ' ' in ''.join(pd.read_csv(base/'input/data/train/train.csv', nrows=0).columns) # column names with spaces
    rc, out, _ = train_run(base)
    assert rc == 0, out[-4000:]
    m = check_womens_outputs(base, info, splits, out)
    enc = meta_of(base/'model')['encoder_config']
    packaged = json.loads((packaged_encoder_path()/'config.json').read_text())
    assert (enc['hidden_size'], enc['num_hidden_layers']) == (packaged['hidden_size'], packaged['num_hidden_layers'])
    assert m['test']['auroc'] > 0.6, m['test']


def test_mixed_file_formats_in_one_channel(womens_clothing, train_run, tiny_bert_dir, tmp_path):
    """Train as Parquet + JSON Lines + gzipped CSV in one channel, val as gzipped JSON Lines, test as Parquet: the run
    reads every row in file order, and fits exactly the vocabularies and statistics that one plain CSV gives."""
    from bsm_nb.config import BSMConfig
    from bsm_nb.data import FeatureProcessor
    from bsm_nb.reading import read_data_file
    info, splits = womens_clothing
    tr = splits['train']
    files = {'train/part-0.parquet': lambda p: tr.iloc[:100].to_parquet(p, index=False),
             'train/part-1.jsonl': lambda p: tr.iloc[100:200].to_json(p, orient='records', lines=True),
             'train/part-2.csv.gz': lambda p: tr.iloc[200:].to_csv(p, index=False, compression='gzip'),
             'train/_SUCCESS': lambda p: p.touch(),
             'val/val.jsonl.gz': lambda p: splits['val'].to_json(p, orient='records', lines=True, compression='gzip'),
             'test/test.parquet': lambda p: splits['test'].to_parquet(p, index=False)}
    base = write_tree(tmp_path/'ml', womens_hyperparameters(info, max_epochs=1, batch_size=32, max_seq_length=32),
                      files)
    rc, out, _ = train_run(base, '--pretrained_model', tiny_bert_dir)
    assert rc == 0, out[-4000:]
    check_womens_outputs(base, info, splits, out)
    val_pred = read_predictions(base/'model'/'predictions_val.csv')
    assert val_pred.id.tolist() == splits['val'].row_id.astype(str).tolist()
    # the same rows as one CSV file give the same fitted preprocessing
    tr.to_csv(tmp_path/'all.csv', index=False)
    cfg = BSMConfig(**meta_of(base/'model')['config'])
    expected = FeatureProcessor.fit(read_data_file(tmp_path/'all.csv', cfg.read_fields), cfg).to_dict()
    assert json.loads((base/'model'/'preprocessor.json').read_text()) == json.loads(json.dumps(expected))


# --- 3. hyperparameter encodings, script mode --------------------------------------------------------

def encoding_config(tiny:Path)->dict:
    "Typed values of one config; each encoding below writes it to hyperparameters.json its own way."
    return {'id_name': 'case_id', 'text_name': ['message'], 'label_name': 'label',
            'cat_field_list': ['marketplace', 'order_status', 'item_category'],
            'tab_field_list': ['order_amount', 'days_since_order', 'messages_so_far'],
            'text_cleaning': ['whitespace', 'html', 'lowercase'], 'label_list': ['0', '1'],
            'pretrained_model': str(tiny), 'lr': 2e-05, 'head_lr': 0.003, 'dropout': 0.2, 'batch_size': 16,
            'max_epochs': 1, 'max_seq_length': 48, 'seed': 7, 'reinit_pooler': True, 'length_bucketing': False,
            'fusion': 'gated', 'pooling': 'cls'}

def _raw(v): return ','.join(v) if isinstance(v, list) else str(v) # 2e-05, True, a,b
def _python_literal(v): return str(v) # SDK v2 Estimator: str() of every value: "['a', 'b']", True
def _v3_json(v): return v if isinstance(v, str) else json.dumps(v) # SDK v3 ModelTrainer: true, ["a", "b"]
# v2 framework estimators json.dumps the strings they are given: "\"2e-05\""
def _json_quoted(v): return json.dumps(_v3_json(v))

ENCODINGS = {
    'raw_strings': (_raw, {}),
    'python_literal': (_python_literal, {'_tuning_objective_metric': 'val_auroc'}),
    'v3_json': (_v3_json, {}),
    'json_quoted': (_json_quoted,
                    {'sagemaker_program': '"train.py"', 'sagemaker_submit_directory': '"s3://bucket/src.tar.gz"',
                     'sagemaker_container_log_level': '20', 'sagemaker_region': '"us-east-1"'}),
}


@pytest.fixture(scope='module')
def encoding_runs(train_tree, train_run, tiny_bert_dir):
    "The same config, encoded four ways, each trained in its own process (`--num_threads 1`, run two at a time)."
    typed, bases = encoding_config(tiny_bert_dir), {}
    for name, (encode, extra) in ENCODINGS.items():
        base = bases[name] = train_tree(f'enc_{name}', n_train=120, n_val=40, n_test=40, seed=1)
        hps = {**{k: encode(v) for k, v in typed.items()}, **extra}
        assert all(isinstance(v, str) for v in hps.values())
        (base/'input'/'config'/'hyperparameters.json').write_text(json.dumps(hps, indent=1))
    with ThreadPoolExecutor(WORKERS) as ex:
        runs = dict(zip(bases, ex.map(lambda b: train_run(b, '--num_threads', '1'), bases.values())))
    for name, (rc, out, _) in runs.items(): assert rc == 0, f'{name}:\n{out[-4000:]}'
    return typed, runs


def test_every_hyperparameter_encoding_gives_the_same_config(encoding_runs):
    """Raw strings, Python literals (v2), JSON (v3) and JSON-quoted strings
    (v2 framework) all train with one identical config."""
    typed, runs = encoding_runs
    raw_file = json.loads((runs['raw_strings'][2]/'input/config/hyperparameters.json').read_text())
    quoted_file = json.loads((runs['json_quoted'][2]/'input/config/hyperparameters.json').read_text())
    assert (raw_file['lr'], raw_file['reinit_pooler'], quoted_file['lr'], quoted_file['cat_field_list']) == \
        ('2e-05', 'True', '"2e-05"', json.dumps(json.dumps(typed['cat_field_list'])))
    configs = {name: meta_of(base/'model')['config'] for name, (_, _, base) in runs.items()}
    first = configs['v3_json']
    for name, cfg in configs.items(): assert cfg == first, name
    assert {k: first[k] for k in typed} == typed
    assert first['num_threads'] == 1


def test_same_config_and_seed_give_identical_results(encoding_runs):
    "Separate CPU processes with one config and seed (`--num_threads 1`) write identical metrics and predictions."
    _, runs = encoding_runs
    bases = [base for _, _, base in runs.values()]
    metrics = [metrics_of(b/'model') for b in bases]
    for m in metrics[1:]:
        assert (m['val'], m['test'], m['threshold']) == (metrics[0]['val'], metrics[0]['test'], metrics[0]['threshold'])
    probs = [read_predictions(b/'model'/'predictions.csv').probability.to_numpy() for b in bases]
    for p in probs[1:]: np.testing.assert_array_equal(p, probs[0])


def test_script_mode_with_sm_variables(train_tree, train_run, train_env, tiny_bert_dir, tmp_path):
    """Script mode (AWS PyTorch toolkit): no SAGEMAKER_BASE_DIR, SM_* directories, SM_HPS with typed values and the same
    values as `--key value` flags (lists as Python reprs) plus `--use-cuda True`; no val channel, so val is held out."""
    data = train_tree('script_data', n_train=150, n_val=10, n_test=50, seed=2)
    d = {k: tmp_path/k for k in ('train', 'test', 'model', 'output', 'output_data', 'checkpoints')}
    shutil.copytree(data/'input/data/train', d['train']); shutil.copytree(data/'input/data/test', d['test'])
    hps = {'id_name': 'case_id', 'text_name': 'message', 'label_name': 'label',
           'cat_field_list': ['marketplace', 'order_status', 'item_category'],
           'tab_field_list': ['order_amount', 'messages_so_far'], 'max_epochs': 1, 'batch_size': 16, 'lr': 5e-05,
           'reinit_pooler': False, 'val_split': 0.2, 'pretrained_model': str(tiny_bert_dir)}
    env = train_env(None, SM_MODEL_DIR=d['model'], SM_CHANNEL_TRAIN=d['train'], SM_CHANNEL_TEST=d['test'],
                    SM_OUTPUT_DATA_DIR=d['output_data'], SM_OUTPUT_DIR=d['output'], SM_CHECKPOINT_DIR=d['checkpoints'],
                    SM_HPS=json.dumps(hps), SM_CHANNELS='["test", "train"]', SM_NUM_GPUS=0, SM_CURRENT_HOST='algo-1',
                    SM_HOSTS='["algo-1"]', SM_USER_ARGS=json.dumps([]))
    args = [a for k, v in hps.items() for a in (f'--{k}', str(v))] + ['--use-cuda', 'True']
    assert "['marketplace', 'order_status', 'item_category']" in args
    opt_ml_existed = Path('/opt/ml').exists()
    rc, out, _ = train_run(None, *args, env=env)
    assert rc == 0, out[-4000:]
    assert_complete_model_dir(d['model'], out)
    cfg = meta_of(d['model'])['config']
    assert {k: cfg[k] for k in hps} == {**hps, 'text_name': ['message']}
    m = metrics_of(d['model'])
    assert m['val']['rows'] + m['train_rows'] == 150 and abs(m['val']['rows'] - 30) <= 1 and m['test']['rows'] == 50
    assert list((d['output']/'tensorboard').rglob('events.out.tfevents.*'))
    assert '--use-cuda is accepted' in out
    if not opt_ml_existed: assert not Path('/opt/ml').exists(), 'script mode wrote under /opt/ml'


# --- 4. bad input, in-process: exit 255, a failure file that names the culprit, nothing in the model dir --------
# A catalogue of bad hyperparameters, files and data values. Each case runs `bsm_nb.entrypoint.main` in this process
# (torch is imported once, not once per case) on its own small tree;
# section 5 keeps the checks that need a real process.

def _edit_csv(base:Path, channel:str, edit):
    f = channel_csv(base, channel)
    df = pd.read_csv(f, dtype=str); edit(df); df.to_csv(f, index=False)

def _set(channel:str, row:int, col:str, value):
    "Prepare step: put `value` in data row `row` (0-based, as pandas counts) of `col` in the channel's CSV."
    def edit(df): df.loc[row, col] = value
    return lambda b: _edit_csv(b, channel, edit)

def _set_all(channel:str, col:str, value):
    "Prepare step: put `value` in every row of `col` in the channel's CSV."
    def edit(df): df[col] = value
    return lambda b: _edit_csv(b, channel, edit)

def _drop(channel:str, col:str):
    "Prepare step: remove column `col` from the channel's CSV."
    def edit(df): del df[col]
    return lambda b: _edit_csv(b, channel, edit)

def _one_class(b): _set_all('train', 'label', '0')(b)
def _only_success(b):
    shutil.rmtree(b/'input/data/train'); (b/'input/data/train').mkdir(); (b/'input/data/train/_SUCCESS').touch()
def _hps_file(data:bytes|str):
    "Prepare step: replace hyperparameters.json with `data`."
    def prepare(b):
        f = b/'input/config/hyperparameters.json'
        f.write_bytes(data if isinstance(data, bytes) else data.encode())
    return prepare
def _hps_typed(**values):
    """Prepare step: set typed JSON values (null, lists, objects, NaN) in hyperparameters.json,
    as a hand-written file may hold."""
    def prepare(b):
        f = b/'input/config/hyperparameters.json'
        f.write_text(json.dumps({**json.loads(f.read_text()), **values}))
    return prepare
def _hps_encoded(encoding:str):
    "Prepare step: rewrite hyperparameters.json in `encoding`, with a value (`Résumé`) that is not ASCII."
    def prepare(b):
        f = b/'input/config/hyperparameters.json'
        hps = {**json.loads(f.read_text()), 'label_list': '["Résumé", "other"]'}
        f.write_bytes(json.dumps(hps, ensure_ascii=False).encode(encoding))
    return prepare
def _repeat_column(channel:str, col:str):
    "Prepare step: append a second column named `col` to the channel's CSV (pandas would read it as `col.1`)."
    def prepare(b):
        f = channel_csv(b, channel); df = pd.read_csv(f, dtype=str)
        df.insert(len(df.columns), 'dup', 'other text'); df.to_csv(f, index=False, header=[*df.columns[:-1], col])
    return prepare
def _as_json_array(channel:str):
    "Prepare step: replace the channel's CSV with a .json file holding one JSON array of the same rows."
    def prepare(b):
        f = channel_csv(b, channel)
        f.with_suffix('.json').write_text(pd.read_csv(f, dtype=str).to_json(orient='records')); f.unlink()
    return prepare
def _no_val_and(edit):
    "Prepare step: remove the val channel (so val is held out of train), then `edit`."
    def prepare(b): shutil.rmtree(b/'input/data/val'); edit(b)
    return prepare
def _replace_file(channel:str, name:str, make):
    "Prepare step: replace the channel's CSV with the file `name`, whose bytes are `make(text of the CSV)`."
    def prepare(b):
        f = channel_csv(b, channel); text = f.read_text(); f.unlink()
        (f.parent/name).write_bytes(make(text))
    return prepare
def _lines(edit):
    "`make` for `_replace_file`: the CSV's lines, edited in place by `edit(lines)`, as UTF-8."
    def make(text):
        lines = text.splitlines(); edit(lines)
        return ('\n'.join(lines) + '\n').encode()
    return make
def _accented(text:str)->str: return text.replace('\n', '\nCafé-', 1) # line 2's id now holds an é
def _jsonl(text:str)->str:
    return pd.read_csv(io.StringIO(text), dtype=str).to_json(orient='records', lines=True, force_ascii=False)
def _tsv(text:str)->str: return pd.read_csv(io.StringIO(text), dtype=str).to_csv(sep='\t', index=False)
def _parquet(text:str, rows:slice=slice(None))->bytes:
    buf = io.BytesIO(); pd.read_csv(io.StringIO(text), dtype=str).iloc[rows].to_parquet(buf, index=False)
    return buf.getvalue()
def _cut(data:bytes)->bytes: return data[:len(data) // 2] # a file whose copy was interrupted
def _symlink(channel:str, name:str, target):
    "Prepare step: add a symbolic link `name` to `target(base)` in the channel."
    return lambda b: (b/'input/data'/channel/name).symlink_to(target(b))
def _unreadable(b): channel_csv(b, 'train').chmod(0)
def _mkdir(rel:str): return lambda b: (b/rel).mkdir(parents=True)

@dataclass
class Bad:
    name:str
    # what is bad: 'hyperparameters' (hyperparameters.json, SM_HPS, flags), 'files'
    # (channels, files, formats) or 'data' (values)
    kind:str
    expect:list # substrings of the failure file's first line; a tuple: any one of them
    hps:dict = field(default_factory=dict) # added to hyperparameters.json
    prepare:object = None # edits the tree before the run
    args:tuple = () # command-line flags; `{base}` is the tree
    env:dict = field(default_factory=dict) # environment on top of SAGEMAKER_BASE_DIR; `{base}` is the tree
    skip:str = '' # a reason to skip the case here

HPS, FILES, DATA = 'hyperparameters', 'files', 'data'
HPS_FILE = 'hyperparameters.json'
BAD = [
    # hyperparameters: keys, types, ranges, choices, rules between fields, the file itself, SM_HPS, the command line
    Bad('unknown_key_typo', HPS, ["unknown hyperparameter 'batch_sise'", "Did you mean 'batch_size'"],
        hps={'batch_sise': '8'}),
    Bad('unknown_key', HPS, ["unknown hyperparameter 'zzz'", 'Valid keys: id_name'], hps={'zzz': '1'}),
    Bad('bad_int', HPS, ["'max_epochs'", "'two'", 'integer'], hps={'max_epochs': 'two'}),
    Bad('int_not_whole', HPS, ["'batch_size'", "'8.5'", 'not an integer'], hps={'batch_size': '8.5'}),
    Bad('int_infinite', HPS, ["'max_epochs'", "'inf'", 'not an integer'], hps={'max_epochs': 'inf'}),
    Bad('float_word', HPS, ["'lr'", "'fast'", 'not a number'], hps={'lr': 'fast'}),
    Bad('bad_bool', HPS, ["'reinit_pooler'", "'maybe'", 'boolean'], hps={'reinit_pooler': 'maybe'}),
    Bad('bool_typo', HPS, ["'length_bucketing'", "'ture'", 'boolean'], hps={'length_bucketing': 'ture'}),
    Bad('bad_list', HPS, ["'cat_field_list'", 'list'], hps={'cat_field_list': '["marketplace", "order_status"'}),
    Bad('python_list_unclosed', HPS, ["'text_cleaning'", '"[\'html\'"', 'list of names'],
        hps={'text_cleaning': "['html'"}),
    Bad('list_of_lists', HPS, ["'tab_field_list'", 'list of names'],
        hps={'tab_field_list': '[["order_amount"], "days_since_order"]'}),
    Bad('unknown_fusion', HPS, ["'fusion'", "'sum'", 'concat'], hps={'fusion': 'sum'}),
    Bad('unknown_pooling', HPS, ["'pooling'", "'max'", 'mean, cls, pooler'], hps={'pooling': 'max'}),
    Bad('unknown_model_class', HPS, ["'model_class'", "'roberta'", 'multimodal_bert'], hps={'model_class': 'roberta'}),
    Bad('unknown_cleaning_step', HPS, ["'text_cleaning'", "'stem'", 'whitespace, html'],
        hps={'text_cleaning': 'html,stem'}),
    Bad('unknown_class_weights', HPS, ["'class_weights'", "'auto'", 'none, balanced'], hps={'class_weights': 'auto'}),
    # found only after the data was read and the model built, in Lightning's words; now from the config
    Bad('unknown_precision', HPS, ["'precision'", "'fp8'", 'bf16-mixed'], hps={'precision': 'fp8'}),
    # a Lightning precision this image cannot run: a raw ModuleNotFoundError before
    Bad('precision_transformer_engine', HPS, ["'precision'", "'transformer-engine'"],
        hps={'precision': 'transformer-engine'}),
    # the key at fault is metric_choices, which the user set, not early_stop_metric, which they left alone
    Bad('unknown_metric_choice', HPS, ['metric_choices', "'auc'"], hps={'metric_choices': '["auc"]'}),
    Bad('early_stop_metric_not_logged', HPS, ["'early_stop_metric'", "'val_accuracy'", 'val_loss, val_auroc'],
        hps={'early_stop_metric': 'val_accuracy'}),
    Bad('lr_out_of_range_on_command_line', HPS, ["'lr'", 'between 0 and 1'], args=('--lr', '5')),
    Bad('lr_zero', HPS, ["'lr'", 'value 0.0', 'between 0 and 1 (both excluded)'], hps={'lr': '0'}),
    Bad('lr_nan', HPS, ["'lr'", 'value nan', 'between 0 and 1'], hps={'lr': 'NaN'}),
    Bad('dropout_one', HPS, ["'dropout'", 'value 1.0', 'in [0, 1)'], hps={'dropout': '1'}),
    Bad('warmup_ratio_negative', HPS, ["'warmup_ratio'", 'value -0.1', 'in [0, 1)'], hps={'warmup_ratio': '-0.1'}),
    Bad('batch_size_zero', HPS, ["'batch_size'", 'value 0', 'at least 1'], hps={'batch_size': '0'}),
    Bad('max_seq_length_over_512', HPS, ["'max_seq_length'", '1000', '512'], hps={'max_seq_length': '1000'}),
    Bad('seed_beyond_32_bits', HPS, ["'seed'", 'value 4294967296', 'in [0, 4294967295]'], hps={'seed': '4294967296'}),
    Bad('master_port_too_big', HPS, ["'master_port'", 'value 70000', 'in [1, 65534]'], hps={'master_port': '70000'}),
    # numbers of the right type but outside their range: these trained silently or failed deep in torch
    Bad('cat_embedding_dim_zero', HPS, ["'cat_embedding_dim'", 'value 0', 'at least 1'],
        hps={'cat_embedding_dim': '0'}),
    Bad('weight_decay_negative', HPS, ["'weight_decay'", 'value -5.0', 'at least 0'], hps={'weight_decay': '-5'}),
    Bad('tab_hidden_dim_negative', HPS, ["'tab_hidden_dim'", 'value -1', 'in [1, 8192]'], hps={'tab_hidden_dim': '-1'}),
    # torch: "can't allocate memory"
    Bad('tab_hidden_dim_huge', HPS, ["'tab_hidden_dim'", 'value 100000000', 'in [1, 8192]'],
        hps={'tab_hidden_dim': '1e8'}),
    # torch, mid-epoch: "expanded size ... 512"
    Bad('pad_multiple_over_512', HPS, ["'pad_multiple'", 'value 600', 'in [1, 512]'], hps={'pad_multiple': '600'}),
    # "Overflow when unpacking long"
    Bad('num_threads_beyond_32_bits', HPS, ["'num_threads'", f'value {2**40}', 'in [0, 1024]'],
        hps={'num_threads': str(2**40)}),
    # "int too big to convert"
    Bad('int_beyond_64_bits', HPS, ["'accumulate_grad_batches'", 'at most 9223372036854775807 (64 bits)'],
        hps={'accumulate_grad_batches': '1e30'}),
    Bad('reinit_layers_too_many', HPS, ['reinit_layers', '5', 'only 2 layers'], hps={'reinit_layers': '5'}),
    Bad('text_hook_not_module_function', HPS, ["'text_hook'", "'nocolon'", 'module:function'],
        hps={'text_hook': 'nocolon'}),
    Bad('text_hook_unimportable', HPS, ['text_hook', "'nosuchmodule_xyz:clean'", 'nosuchmodule_xyz'],
        hps={'text_hook': 'nosuchmodule_xyz:clean'}),
    Bad('text_hook_function_missing', HPS, ['text_hook', "'bsm_nb.text:nosuchfn'", 'cannot be loaded'],
        hps={'text_hook': 'bsm_nb.text:nosuchfn'}),
    # a hook that raises on the text: the reason must name the hook, not only the hook's own exception
    Bad('text_hook_raises', HPS, ['text_hook', "'numpy:int64'", 'failed on text'], hps={'text_hook': 'numpy:int64'}),
    # Python's own callables are no cleaning function, whoever names them
    Bad('text_hook_standard_library', HPS, ['text_hook', "'os:system'", 'never accepted as a hook'],
        hps={'text_hook': 'os:system'}),
    Bad('text_hook_builtin', HPS, ['text_hook', "'builtins:eval'", 'never accepted as a hook'],
        hps={'text_hook': 'builtins:eval'}),
    Bad('no_text_field', HPS, ["'text_name'", 'no text field named', 'model_class tab_mlp'], hps={'text_name': '[]'}),
    Bad('tabular_model_without_fields', HPS, ["'cat_field_list'/'tab_field_list'", 'no tabular field'],
        hps={'model_class': 'tab_mlp', 'cat_field_list': '[]', 'tab_field_list': '[]'}),
    # a bare KeyError ('marketplace') from the data chapter before
    Bad('full_field_list_leaves_out_a_field', HPS,
        ["'full_field_list'", "leaves out ['marketplace', ", 'which other hyperparameters name'],
        hps={'full_field_list': '["case_id", "message", "label"]'}),
    Bad('id_as_a_feature', HPS, ["id 'case_id'", 'also listed as a feature'],
        hps={'cat_field_list': '["case_id", "marketplace"]'}),
    # trained a three-class head for two classes before
    Bad('label_list_twice', HPS, ["'label_list'", "['1', '1.0']", 'more than once'],
        hps={'label_list': '["0", "1", "1.0"]'}),
    # "label 'label' has 1 class(es) ['spam'] in train" before, after the data was read
    Bad('label_list_one_class', HPS, ["'label_list'", "['spam'] names 1 class", 'at least 2'],
        hps={'label_list': 'spam'}),
    Bad('positive_label_not_in_label_list', HPS, ["'positive_label'", "'spam'", "label_list ['0', '1']"],
        hps={'label_list': '["0", "1"]', 'positive_label': 'spam'}),
    Bad('positive_label_multiclass', HPS, ["'positive_label'", "'a'", 'label_list has 3'],
        hps={'label_list': 'a,b,c', 'positive_label': 'a'}),
    # JSON a hand-written file may hold: these named a column 'None' or "['a', 'b']" before
    Bad('string_key_null', HPS, ["'id_name'", 'value None', 'not a string'], prepare=_hps_typed(id_name=None)),
    Bad('string_key_list', HPS, ["'label_name'", "value ['label', 'y']", 'not a string'],
        prepare=_hps_typed(label_name=['label', 'y'])),
    Bad('number_as_object', HPS, ["'lr'", "value {'value': 0.0001}", 'not a number'],
        prepare=_hps_typed(lr={'value': 1e-4})),
    Bad('nan_literal', HPS, ["'dropout'", 'value nan'], prepare=_hps_typed(dropout=float('nan'))),
    Bad('hyperparameters_not_json', HPS, [HPS_FILE, 'not valid JSON'], prepare=_hps_file('{"lr": "1e-4", ')),
    Bad('hyperparameters_array', HPS, [HPS_FILE, 'must hold a JSON object', 'not list'],
        prepare=_hps_file('[{"lr": "1e-4"}]')),
    # a ValueError and a RecursionError from json before, naming no file
    Bad('hyperparameters_huge_integer', HPS, [HPS_FILE, 'not usable JSON', '4300 digits'],
        prepare=_hps_file('{"seed": 1' + '0' * 5000 + '}')),
    Bad('hyperparameters_nested_too_deep', HPS, [HPS_FILE, 'not usable JSON'],
        prepare=_hps_file('{"text_name": ' + '[' * 100_000 + ']' * 100_000 + '}')),
    Bad('hyperparameters_latin1', HPS, [HPS_FILE, 'not UTF-8', 'byte 0xe9', 'expected UTF-8 JSON'],
        prepare=_hps_encoded('latin-1')),
    Bad('hyperparameters_utf16', HPS, [HPS_FILE, 'not UTF-8', 'UTF-16', 'expected UTF-8 JSON'],
        prepare=_hps_encoded('utf-16')),
    # Word's curly quotes
    Bad('hyperparameters_cp1252_quotes', HPS, [HPS_FILE, 'not UTF-8', 'byte 0x93'],
        prepare=_hps_file(b'{"text_name": \x93message\x94}')),
    Bad('sm_hps_not_json', HPS, ['SM_HPS is not valid JSON'],
        prepare=lambda b: (b/'input/config/hyperparameters.json').unlink(), env={'SM_HPS': '{"lr": '}),
    # an AttributeError ('list' object has no attribute 'items') before
    Bad('sm_hps_array', HPS, ['SM_HPS must hold a JSON object', 'not list'],
        prepare=lambda b: (b/'input/config/hyperparameters.json').unlink(), env={'SM_HPS': '["lr", "1e-4"]'}),
    Bad('command_line_stray_argument', HPS, ['command line', "unexpected argument 'oops'", '--key value'],
        args=('oops',)),
    Bad('command_line_flag_without_value', HPS, ["'batch_size'", "value 'true'", 'integer'], args=('--batch_size',)),
    # a transformers error ("Couldn't instantiate the backend tokenizer") after the data was read, before
    Bad('pretrained_model_not_an_encoder', HPS,
        ['SetupError', "pretrained_model '", 'neither config.json nor bsm_model.json'], prepare=_mkdir('enc'),
        args=('--pretrained_model', '{base}/enc')),
    Bad('pretrained_model_a_file', HPS, ['SetupError', 'hyperparameters.json', 'a file, not a directory'],
        args=('--pretrained_model', '{base}/input/config/hyperparameters.json')),
    Bad('hub_name_offline', HPS,
        ["pretrained_model 'no-such-org/no-such-bert'", 'HF_HUB_OFFLINE', 'leave pretrained_model empty'],
        hps={'pretrained_model': 'no-such-org/no-such-bert'}),

    # files: channels, formats, encodings, links
    Bad('missing_train_channel', FILES, ['input/data/train', 'does not exist'],
        prepare=lambda b: shutil.rmtree(b/'input/data/train')),
    Bad('train_channel_variable_nowhere', FILES, ['SetupError', '/no/such/channel', 'the train channel is required'],
        env={'SM_CHANNEL_TRAIN': '/no/such/channel'}),
    Bad('empty_train_channel', FILES, ['input/data/train', 'no data files'], prepare=_only_success),
    # a name that is not UTF-8 reaches Python as a lone surrogate, which UTF-8 cannot write: no failure file before
    Bad('file_name_not_utf8', FILES, ['caf\\udce9.txt', 'unknown data file type'],
        prepare=lambda b: open(bytes(b/'input/data/train') + b'/caf\xe9.txt', 'w').close()),
    Bad('unknown_file_type', FILES, ['notes.txt', 'unknown data file type'],
        prepare=lambda b: (b/'input/data/train/notes.txt').write_text('hi')),
    Bad('empty_csv', FILES, ['input/data/train', "has no rows in ['train.csv']"],
        prepare=_replace_file('train', 'train.csv', lambda t: b'')),
    Bad('header_only_csv', FILES, ['input/data/train', "has no rows in ['train.csv']"],
        prepare=_replace_file('train', 'train.csv', _lines(lambda l: l.__delitem__(slice(1, None))))),
    Bad('test_channel_without_rows', FILES, ['input/data/test', "has no rows in ['test.csv']"],
        prepare=_replace_file('test', 'test.csv', _lines(lambda l: l.__delitem__(slice(1, None))))),
    Bad('csv_row_with_extra_fields', FILES, ['train.csv', 'Expected 9 fields in line 6, saw 11'],
        prepare=_replace_file('train', 'train.csv', _lines(lambda l: l.__setitem__(5, l[5] + ',extra,more')))),
    # a row cut short reads as missing values: the label is the first to be missed
    Bad('csv_row_cut_short', FILES, ['train.csv', 'row 4', "field 'label'", 'value is missing'],
        prepare=_replace_file('train', 'train.csv', _lines(lambda l: l.__setitem__(5, l[5].split(',')[0])))),
    Bad('gzip_that_is_not', FILES, ['train.csv.gz', 'Not a gzipped file'],
        prepare=_replace_file('train', 'train.csv.gz', str.encode)),
    Bad('gzip_truncated', FILES, ['train.csv.gz', 'Compressed file ended before the end-of-stream marker'],
        prepare=_replace_file('train', 'train.csv.gz', lambda t: _cut(gzip.compress(t.encode())))),
    Bad('parquet_truncated', FILES, ['train.parquet', 'cannot read as parquet'],
        prepare=_replace_file('train', 'train.parquet', lambda t: _cut(_parquet(t)))),
    Bad('parquet_without_rows', FILES, ['input/data/train', "has no rows in ['train.parquet']"],
        prepare=_replace_file('train', 'train.parquet', lambda t: _parquet(t, slice(0, 0)))),
    Bad('json_array_not_lines', FILES, ['train.json', 'holds a JSON array', 'expected JSON Lines'],
        prepare=_as_json_array('train')),
    # "No ':' found when decoding object value at position 1098" before: a position in the whole file
    Bad('jsonl_bad_line', FILES, ['train.jsonl', 'line 4 is not valid JSON', 'expected one JSON object per line'],
        prepare=_replace_file('train', 'train.jsonl',
                              lambda t: _lines(lambda l: l.__setitem__(3, l[3][:-5]))(_jsonl(t)))),
    # "'int' object is not iterable" before
    Bad('jsonl_line_not_an_object', FILES, ['train.jsonl', "line 4 holds '5'", 'not a JSON object'],
        prepare=_replace_file('train', 'train.jsonl', lambda t: _lines(lambda l: l.__setitem__(3, '5'))(_jsonl(t)))),
    # "missing field(s) [...]; the file has []" before
    Bad('jsonl_empty', FILES, ['input/data/train', "has no rows in ['train.jsonl']"],
        prepare=_replace_file('train', 'train.jsonl', lambda t: b'\n')),
    Bad('csv_column_twice', FILES, ['train.csv', "column(s) ['message']", 'more than once'],
        prepare=_repeat_column('train', 'message')),
    Bad('tsv_that_is_comma_separated', FILES, ['train.tsv', 'missing field(s)', 'is the file comma-separated?'],
        prepare=_replace_file('train', 'train.tsv', str.encode)),
    Bad('text_field_not_in_file', FILES, ['train.csv', "missing field(s) ['mesage']"], hps={'text_name': 'mesage'}),
    Bad('label_column_missing', FILES, ['train.csv', "missing field(s) ['label']"], prepare=_drop('train', 'label')),
    Bad('categorical_missing_in_val', FILES, ['val.csv', "missing field(s) ['marketplace']"],
        prepare=_drop('val', 'marketplace')),
    # not UTF-8: the file, the byte, its line, and what was expected (pandas' "position 59" was in its read buffer)
    Bad('csv_latin1', FILES, ['train.csv', 'not UTF-8', 'byte 0xe9 on line 2', 'latin-1 or cp1252', 'expected UTF-8'],
        prepare=_replace_file('train', 'train.csv', lambda t: _accented(t).encode('latin-1'))),
    Bad('csv_utf16_with_bom', FILES, ['train.csv', 'not UTF-8', 'UTF-16 or UTF-32 byte-order mark', 'expected UTF-8'],
        prepare=_replace_file('train', 'train.csv', lambda t: t.encode('utf-16'))),
    # "Error tokenizing data. C error: Expected 9 fields in line 3, saw 11" before: NULs are valid UTF-8
    Bad('csv_utf16_without_bom', FILES,
        ['train.csv', 'not UTF-8', 'byte 0x00 on line 1', 'without a byte-order mark', 'expected UTF-8'],
        prepare=_replace_file('train', 'train.csv', lambda t: t.encode('utf-16-le'))),
    Bad('csv_gz_cp1252', FILES, ['train.csv.gz', 'not UTF-8', 'byte 0xe9 on line 2', 'expected UTF-8'],
        prepare=_replace_file('train', 'train.csv.gz', lambda t: gzip.compress(_accented(t).encode('cp1252')))),
    Bad('tsv_latin1_in_val', FILES, ['val.tsv', 'not UTF-8', 'byte 0xe9 on line 2', 'expected UTF-8'],
        prepare=_replace_file('val', 'val.tsv', lambda t: _tsv(_accented(t)).encode('latin-1'))),
    Bad('jsonl_latin1', FILES, ['train.jsonl', 'not UTF-8', 'byte 0xe9 on line 1', 'expected UTF-8'],
        prepare=_replace_file('train', 'train.jsonl', lambda t: _jsonl(_accented(t)).encode('latin-1'))),
    Bad('jsonl_utf16_with_bom', FILES, ['train.jsonl', 'not UTF-8', 'byte-order mark', 'expected UTF-8'],
        prepare=_replace_file('train', 'train.jsonl', lambda t: _jsonl(t).encode('utf-16'))),
    # a link that leads nowhere was skipped without a word, and its rows lost
    Bad('symlink_dangling', FILES, ['part-2.csv', 'a symbolic link to', 'No such file or directory'],
        prepare=_symlink('train', 'part-2.csv', lambda b: b/'moved-away.csv')),
    Bad('symlink_loop', FILES, ['loop.csv', 'a symbolic link to', 'Too many levels of symbolic links'],
        prepare=_symlink('train', 'loop.csv', lambda b: b/'input/data/train/loop.csv')),
    Bad('unreadable_file', FILES, ['train.csv', 'Permission denied'], prepare=_unreadable,
        skip='root reads any file' if hasattr(os, 'geteuid') and os.geteuid() == 0 else ''),
    Bad('no_val_and_val_split_zero', FILES, ['no val channel and val_split is 0'], hps={'val_split': '0'},
        prepare=lambda b: shutil.rmtree(b/'input/data/val')),
    Bad('too_few_rows_to_hold_out_val', FILES, ['train has 3 rows', 'too few to hold out'],
        prepare=_no_val_and(_replace_file('train', 'train.csv', _lines(lambda l: l.__delitem__(slice(4, None)))))),

    # data values
    Bad('numeric_field_holds_a_word', DATA, ['row 5', "'order_amount'", "'lots'"],
        prepare=_set('train', 5, 'order_amount', 'lots')),
    # with val held out of train, the row named must still be the row of the file (data row 50 = line 52)
    Bad('numeric_word_without_val_channel', DATA, ["'order_amount'", "'lots'", ('row 50', 'line 52')],
        prepare=_no_val_and(_set('train', 50, 'order_amount', 'lots'))),
    Bad('numeric_word_in_val', DATA, ['val.csv', 'row 3', "'days_since_order'", "'soon'", 'not a number'],
        prepare=_set('val', 3, 'days_since_order', 'soon')),
    Bad('label_missing', DATA, ['train.csv', 'row 7', "field 'label'", 'value is missing'],
        prepare=_set('train', 7, 'label', None)),
    Bad('label_missing_in_val', DATA, ['val.csv', 'row 3', "field 'label'", 'value is missing'],
        prepare=_set('val', 3, 'label', ' ')),
    Bad('single_class_labels', DATA, ["'label'", '1 class', 'at least 2'], prepare=_one_class),
    Bad('label_outside_label_list', DATA, ["'label'", "'spam'", 'label_list'], hps={'label_list': '["0", "1"]'},
        prepare=_set('train', 3, 'label', 'spam')),
    Bad('label_index_beyond_label_list', DATA, ["'label'", "'7'", "not in label_list ['no', 'yes']"],
        hps={'label_list': 'no,yes'}, prepare=_set('train', 3, 'label', '7')),
    Bad('val_label_outside_labels', DATA, ['row 2', "'label'", "'spam'"], prepare=_set('val', 2, 'label', 'spam')),
    Bad('test_label_outside_labels', DATA, ['test channel', 'row 4', "'label'", "'spam'"],
        prepare=_set('test', 4, 'label', 'spam')),
    Bad('positive_label_not_in_data', DATA, ["positive_label 'spam'", "not one of the labels ['0', '1']"],
        hps={'positive_label': 'spam'}),
    # these trained on nothing before: a wrong column, or an export that lost it
    Bad('text_field_all_empty', DATA, ['train channel', "field 'message' is empty in all 80 rows", 'right column'],
        prepare=_set_all('train', 'message', '')),
    Bad('numeric_field_all_empty', DATA, ['train channel', "field 'order_amount' is empty in all 80 rows"],
        prepare=_set_all('train', 'order_amount', None)),
    Bad('categorical_all_missing', DATA, ['train channel', "field 'marketplace' is empty in all 80 rows"],
        prepare=_set_all('train', 'marketplace', 'nan')),
]
assert len({c.name for c in BAD}) == len(BAD)
CATALOGUE = {k: sum(c.kind == k for c in BAD) for k in (HPS, FILES, DATA)}
assert sum(CATALOGUE.values()) == len(BAD) >= 50 and min(CATALOGUE.values()) >= 10, CATALOGUE


@pytest.fixture
def run_main(monkeypatch):
    """`run_main(base, *args, **env)` runs `bsm_nb.entrypoint.main` in this process on the tree `base`, with SageMaker's
    variables of this process removed, offline; returns (exit code, what it printed). Whatever a run changes in this
    process (environment, signal and logging handlers, warning filters, torch threads) is put back afterwards."""
    import contextlib, logging, signal, sys, warnings
    from bsm_nb.entrypoint import main
    env0 = dict(os.environ)
    signals = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
    loggers = [logging.getLogger(n) for n in ('bsm_nb', 'lightning', 'lightning.pytorch', 'lightning.fabric')]
    logs = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    threads = sys.modules['torch'].get_num_threads() if 'torch' in sys.modules else None
    def run(base:Path, *args, **env)->tuple:
        monkeypatch.chdir(base) # a relative path drawn as a tracking URI (or any output) lands in the run's tree
        for k in [k for k in os.environ if k.startswith('SM_')]: monkeypatch.delenv(k)
        for k, v in {'SAGEMAKER_BASE_DIR': base, 'HF_HUB_OFFLINE': '1', 'TOKENIZERS_PARALLELISM': 'false',
                     **env}.items():
            monkeypatch.setenv(k, str(v).replace('{base}', str(base)))
        out = io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stdout(out):
            rc = main([str(a).replace('{base}', str(base)) for a in args])
        return rc, out.getvalue()
    yield run
    os.environ.clear(); os.environ.update(env0)
    for s, h in signals.items(): signal.signal(s, h)
    for lg, handlers, level, propagate in logs: lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate
    if 'torch' in sys.modules: sys.modules['torch'].set_num_threads(threads or os.cpu_count() or 1)


def check_failure(base:Path, rc:int, out:str)->str:
    """Exit code 255; output/failure's first line (at most 1024 characters, as SageMaker shows it) is one of our errors,
    not a bare exception, and the traceback follows; the model dir holds nothing. Returns the first line."""
    assert rc == 255, f'exit code {rc}\n{out[-3000:]}'
    failure = base/'output'/'failure'
    assert failure.exists(), out[-3000:]
    text = failure.read_text(encoding='utf-8')
    first = text.splitlines()[0]
    assert 0 < len(first) <= 1024
    assert re.match(r'(ConfigError|SetupError|DataError|ValueError): \S', first), first
    assert 'Traceback' in text # the details follow the reason
    model = base/'model'
    # no bsm_model.json, no .staging-*
    assert not model.exists() or not any(model.iterdir()), sorted(p.name for p in model.iterdir())
    return first


@pytest.mark.parametrize('case', [pytest.param(c, id=c.name, marks=[pytest.mark.skip(reason=c.skip)] if c.skip else [])
                                  for c in BAD])
def test_bad_input_fails_with_a_reason(case, train_tree, tiny_bert_dir, run_main):
    """Each bad input of the catalogue: exit code 255, a failure file whose first line names the culprit
    (`case.expect`), and nothing in the model dir. 80 train rows and one epoch of the tiny BERT: a case that trains by
    mistake ends in about a second, and fails here."""
    base = train_tree(f'bad_{case.name}', n_train=80, n_val=20, n_test=20, seed=4,
                      hyperparameters={'max_epochs': 1, 'batch_size': 32, 'num_threads': 1,
                                       'pretrained_model': str(tiny_bert_dir), **case.hps})
    if case.prepare: case.prepare(base)
    rc, out = run_main(base, *case.args, **case.env)
    first = check_failure(base, rc, out)
    for want in case.expect:
        options = want if isinstance(want, tuple) else (want,)
        assert any(o in first for o in options), f'{options} not in the first line: {first!r}'


# --- 5. fail fast: config and setup errors come before torch, Lightning and transformers are imported -----

HEAVY = ('torch', 'lightning', 'transformers')
# `main` in a fresh interpreter; prints which heavy modules were imported by the time it returned
PROBE = ("import sys; from bsm_nb.entrypoint import main; rc = main(sys.argv[1:]); "
         "print('HEAVY', ','.join(m for m in %r if m in sys.modules), 'RC', rc)" % (HEAVY,))

def main_in_fresh_process(env:dict, *args)->tuple:
    "(exit code of `main`, heavy modules imported when it returned, output) of `main(args)` in a new interpreter."
    import subprocess, sys
    r = subprocess.run([sys.executable, '-c', PROBE, *map(str, args)], env=env, capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    m = re.search(r'^HEAVY (\S*) RC (\d+)$', r.stdout, re.M)
    assert m, r.stdout[-3000:] + r.stderr[-3000:]
    return int(m.group(2)), [x for x in m.group(1).split(',') if x], r.stdout + r.stderr

def first_failure_line(base:Path)->str: return (base/'output'/'failure').read_text().splitlines()[0]


def test_config_error_fails_before_the_heavy_imports(train_tree, train_env):
    """A hyperparameter typo writes the failure file and exits 255 before torch, Lightning or transformers is imported:
    checked in-process through `sys.modules`, and for the real `bsm-train` script with `python -X importtime`."""
    import subprocess, sys
    BSM_TRAIN = Path(sys.executable).parent/'bsm-train'
    base = train_tree('fast_typo', n_train=40, n_val=10, n_test=10, hyperparameters={'batch_sise': '8'})
    rc, heavy, out = main_in_fresh_process(train_env(base))
    assert rc == 255 and heavy == [], (rc, heavy, out[-3000:])
    assert "unknown hyperparameter 'batch_sise'" in first_failure_line(base)
    (base/'output'/'failure').unlink()
    r = subprocess.run([sys.executable, '-X', 'importtime', str(BSM_TRAIN)], env=train_env(base), capture_output=True,
                       text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 255, r.stdout[-3000:] + r.stderr[-3000:]
    imported = {ln.rsplit('|', 1)[-1].strip() for ln in r.stderr.splitlines() if ln.startswith('import time:')}
    assert 'bsm_nb.entrypoint' in imported and 'bsm_nb.config' in imported, sorted(imported)[:50]
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    assert "unknown hyperparameter 'batch_sise'" in first_failure_line(base)


def _file_in_the_way(b:Path): (b/'a_file').write_text('not a directory')

# name, first-line substrings, prepare(base), extra environment (base -> dict)
SETUP_CASES = [
    ('missing_train_channel', ['SetupError', 'input/data/train', 'does not exist'],
     lambda b: shutil.rmtree(b/'input/data/train'), lambda b: {}),
    ('model_dir_under_a_file', ['SetupError', 'model dir', 'a_file/model', 'cannot be created or written'],
     _file_in_the_way, lambda b: {'SM_MODEL_DIR': b/'a_file'/'model'}),
    ('model_dir_is_a_file', ['SetupError', 'model dir', 'a_file', 'cannot be created or written'], _file_in_the_way,
     lambda b: {'SM_MODEL_DIR': b/'a_file'}),
    ('local_pretrained_model_missing', ['SetupError', "pretrained_model '/no/such/encoder'", 'no such directory'], None,
     lambda b: {}),
]

@pytest.mark.parametrize('name,expect,prepare,extra', SETUP_CASES, ids=[c[0] for c in SETUP_CASES])
def test_setup_errors_fail_before_data_is_read(name, expect, prepare, extra, train_tree, train_env):
    """A missing train channel, a model dir that cannot be created or written, and a local `pretrained_model` that is
    not there fail with exit 255 before any heavy module is imported, so before any data is read or encoder loaded."""
    hps = {'max_epochs': '1',
           **({'pretrained_model': '/no/such/encoder'} if name == 'local_pretrained_model_missing' else {})}
    base = train_tree(f'fast_{name}', n_train=40, n_val=10, n_test=10, hyperparameters=hps)
    if prepare: prepare(base)
    rc, heavy, out = main_in_fresh_process(train_env(base, **extra(base)))
    assert rc == 255 and heavy == [], (rc, heavy, out[-3000:])
    first = first_failure_line(base)
    for want in expect: assert want in first, (want, first)
    assert not (base/'model'/'bsm_model.json').exists()


def test_hub_name_is_checked_before_data_is_read(train_tree, train_run):
    """A hub `pretrained_model` that is neither cached nor reachable (offline) is reported even when the train channel
    also holds a file that reading would reject: the hub check comes right after the imports, before the data."""
    base = train_tree('fast_hub', n_train=40, n_val=10, n_test=10,
                      hyperparameters={'max_epochs': '1', 'pretrained_model': 'no-such-org/no-such-bert'})
    (base/'input/data/train/notes.txt').write_text('not data') # reading the channel would fail on this file
    rc, out, _ = train_run(base)
    assert rc == 255, out[-3000:]
    first = first_failure_line(base)
    assert "pretrained_model 'no-such-org/no-such-bert'" in first and 'notes.txt' not in first, first
    assert 'rows: ' not in out # no split was read


# --- 6. fuzzing hyperparameters.json: a success, or a failure file that names the culprit, and nothing else -------

from hypothesis import HealthCheck, event, given, settings, strategies as st
from bsm_nb.config import ALIASES, FUSIONS, IGNORED, MODEL_CLASSES, POOLINGS, check_ranges, field_types
from bsm_nb.synthetic import DEFAULT_HYPERPARAMETERS as DEFAULT_TREE_HPS

TYPES = field_types()
KEYS = st.one_of(st.sampled_from([*TYPES, *ALIASES, *IGNORED, 'sagemaker_program']), st.text(max_size=20))
ODD = st.sampled_from(['', ' ', '0', '1', '-1', '2.5', '1e400', '-1e400', '1e30', 'nan', 'NaN', 'inf', '-Infinity',
                       'true', 'True', 'maybe', 'null', 'None', '[]', '()', '["a"]', "['a'", '[1, [2]]', '[null]',
                       '{"a": 1}', '"\\"x\\""', '""', 'a,b', ',', ' , ', 'message', 'label', 'case_id',
                       'module:function', 'json:loads', ':', '/', '.', '~', '..', 'bert-base-uncased', '\u2028', '\x00',
                       'ü', '\ud800'])
ANY_CHAR = st.characters() | st.characters(categories=['Cs']) # lone surrogates too: JSON's \ud800 becomes one
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-10**40, 10**40), st.floats(), ODD,
                    st.text(ANY_CHAR, max_size=30),
                    st.text(ANY_CHAR, min_size=1, max_size=3).map(lambda s: s * 3000)) # long
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
WAYS = ['utf-8', 'utf-8-sig', 'utf-16', 'utf-16-le', 'utf-32', 'latin-1', 'cp1252', 'python-repr', 'cut-off',
        'random-bytes', 'long-number', 'deep-nesting']

@st.composite
def hyperparameters_files(draw)->tuple:
    "(how, bytes): a hyperparameters.json of random keys and values, written one of `WAYS`."
    hps, how = draw(st.dictionaries(KEYS, VALUES, max_size=5)), draw(st.sampled_from(WAYS))
    if how == 'random-bytes': return how, draw(st.binary(max_size=300))
    n, key = draw(st.integers(1, 6000)), json.dumps(draw(KEYS))
    if how == 'long-number': return how, f'{{{key}: {"9" * n}}}'.encode() # Python reads no integer of over 4300 digits
    if how == 'deep-nesting': return how, f'{{{key}: {"[" * n}{"]" * n}}}'.encode() # json recurses once per level
    # NaN and Infinity as JSON literals
    text = repr(hps) if how == 'python-repr' else json.dumps(hps, ensure_ascii=draw(st.booleans()))
    if how == 'cut-off': text = text[:draw(st.integers(0, len(text)))]
    enc = how if how in WAYS[:7] else 'utf-8'
    return how, text.encode(enc, errors='surrogatepass' if enc.startswith('utf') else 'replace')

NAMES_A_CULPRIT = re.compile(r"hyperparameter|hyperparameters\.json|pretrained_model")
FUZZ_SETTINGS = dict(database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                           HealthCheck.data_too_large, HealthCheck.large_base_example])

@pytest.fixture
def fuzz_tree(train_tree): return train_tree('fuzz', n_train=40, n_val=12, n_test=12, seed=5)


@pytest.mark.timeout(600)
@settings(max_examples=200, deadline=5000, **FUZZ_SETTINGS)
@given(case=hyperparameters_files())
def test_fuzzed_hyperparameters_file_is_accepted_or_fails_clearly(case, fuzz_tree, run_main, monkeypatch):
    """Random keys, values (null, lists, objects, huge and non-finite numbers, any code point, long strings) and ways to
    write them (UTF-8 with and without BOM, UTF-16, UTF-32, latin-1, cp1252, Python literals, cut-off JSON, random
    bytes): `main` either accepts the config, or exits 255 with a failure file whose first line is a config or setup
    error naming a hyperparameter or the file, never a bare exception; within 5 s. Training itself is replaced by a
    check of the config it would get (the next test trains)."""
    import bsm_nb.job as job
    how, raw = case
    accepted = []
    monkeypatch.setattr(job, 'train_job',
                        lambda cfg, paths, env=None, hub_name=False, progress=False:
                        (check_ranges(cfg), accepted.append(cfg)))
    (fuzz_tree/'input/config/hyperparameters.json').write_bytes(raw)
    (fuzz_tree/'output/failure').unlink(missing_ok=True)
    rc, out = run_main(fuzz_tree)
    event(f'{how}: ' + ('accepted' if rc == 0 else 'failure file'))
    if rc == 0:
        assert len(accepted) == 1 and not (fuzz_tree/'output/failure').exists(), (how, raw[:300])
        return
    first = check_failure(fuzz_tree, rc, out)
    assert first.startswith(('ConfigError: ', 'SetupError: ')), (how, raw[:300], first) # before any import or data
    assert NAMES_A_CULPRIT.search(first), (how, raw[:300], first)


COLUMNS = ['case_id', 'message', 'marketplace', 'order_status', 'item_category', 'order_amount', 'days_since_order',
           'messages_so_far', 'label']
# on the command line: runs stay short
PINNED = ('max_epochs', 'batch_size', 'num_threads', 'num_workers', 'pretrained_model', 'checkpoint_every_n_steps')

CATS, NUMS = COLUMNS[2:5], COLUMNS[5:8]
SENSIBLE = { # values that should train, for the fields whose good values are not just numbers in range
    'fusion': FUSIONS, 'pooling': POOLINGS, 'model_class': [*MODEL_CLASSES], 'class_weights': ['none', 'balanced'],
    'lr_scaling': ['none', 'linear', 'sqrt'], 'precision': ['auto', '32-true', 'bf16-mixed'],
    'early_stop_metric': ['val_loss', 'val_auroc'], 'id_name': ['case_id'], 'label_name': ['label'],
    'positive_label': ['', '0', '1'], 'text_hook': ['', 'numpy:str_'],
    'text_name': ['message', '["message", "order_status"]'], 'cat_field_list': ['[]', json.dumps(CATS[:2])],
    'tab_field_list': ['[]', json.dumps(NUMS)], 'text_cleaning': ['[]', 'html,lowercase,urls'],
    'metric_choices': ['auroc', '["accuracy", "f1_score", "auroc"]'], 'label_list': ['', '0,1', 'no,yes'],
    'full_field_list': ['']}

def odd(typ:str):
    "Values a careless person might write for a field of type `typ`."
    if typ == 'str': return st.sampled_from([*COLUMNS, '', 'nope', 'balanced', 'gated', 'tab_only', 'cls', 'pooler',
                                             'tab_mlp', 'bert', 'fp8', '32-true', 'sqrt', 'val_loss', 'val_accuracy',
                                             '0', '1', 'json:loads', 'nosuch:fn'])
    if typ == 'list': return (st.lists(st.sampled_from([*COLUMNS, 'nope', 'html', 'lowercase', 'auroc', 'accuracy',
                                                        '0', '1']), max_size=3).map(json.dumps)
                              | st.sampled_from(['', '[', 'a,,b', '[[1]]', '0,1,1']))
    if typ == 'int': return st.integers(-2, 520).map(str) | st.sampled_from(['1e30', 'inf', 'x', '2.5'])
    if typ == 'float': return st.floats(-0.5, 1.5).map(repr) | st.sampled_from(['nan', '-inf', '1e-9', 'x'])
    return st.sampled_from(['maybe', '1', '0', '', 'none'])

def plausible(key:str):
    "Mostly a value of `key` that should train, sometimes an `odd` one."
    typ = TYPES[key]
    good = (st.sampled_from(SENSIBLE[key]) if key in SENSIBLE else st.integers(0, 64).map(str) if typ == 'int'
            else st.floats(0, 0.9).map(repr) if typ == 'float' else st.sampled_from(['true', 'false']))
    return st.one_of(good, good, odd(typ))

@st.composite
def plausible_hyperparameters(draw)->dict:
    "One to four fields (not the pinned ones) with `plausible` values."
    keys = draw(st.lists(st.sampled_from(sorted(k for k in TYPES if k not in PINNED)), min_size=1, max_size=4,
                         unique=True))
    return {k: draw(plausible(k)) for k in keys}


@pytest.mark.timeout(900)
@settings(max_examples=15, deadline=None, **FUZZ_SETTINGS)
@given(hps=plausible_hyperparameters())
def test_fuzzed_hyperparameters_train_or_fail_clearly(hps, fuzz_tree, run_main, tiny_bert_dir):
    """The whole of `main`, training included, on random but plausible values of one to four hyperparameters (one
    epoch of the tiny BERT): a complete model dir, or exit 255 with a failure file whose first line is one of our errors
    and names a hyperparameter, a channel, a file or a field, and nothing in the model dir."""
    f = fuzz_tree/'input/config/hyperparameters.json'
    f.write_text(json.dumps({**DEFAULT_TREE_HPS, **hps}))
    (fuzz_tree/'output/failure').unlink(missing_ok=True)
    for d in ('model', 'checkpoints'): shutil.rmtree(fuzz_tree/d, ignore_errors=True) # a new run, not a resumed one
    rc, out = run_main(fuzz_tree, '--max_epochs', '1', '--batch_size', '16', '--num_threads', '1', '--num_workers', '0',
                       '--checkpoint_every_n_steps', '0', '--pretrained_model', tiny_bert_dir)
    event('trained' if rc == 0 else 'failure file')
    if rc == 0:
        assert ((fuzz_tree/'model'/'bsm_model.json').exists()
                and not (fuzz_tree/'output/failure').exists()), (hps, out[-3000:])
        return
    first = check_failure(fuzz_tree, rc, out)
    assert re.search(r"hyperparameter|channel|\.(csv|tsv|jsonl|parquet)\b|"
                     + '|'.join(map(re.escape, [*TYPES, *COLUMNS])), first), (hps, first)


def test_sigterm_after_training_loop_exits_143_and_the_next_start_finishes(train_tree, tiny_bert_dir, run_main,
                                                                           monkeypatch):
    """A stop during test prediction (after Lightning's `fit` has put its handler away) is still exit 143 with a failure
    file and nothing published; the next start resumes from the last epoch's checkpoint and lands the model."""
    import signal
    import bsm_nb.job as job
    base = train_tree('late_stop', n_train=48, n_val=16, n_test=16, seed=2,
                      hyperparameters={'max_epochs': 1, 'batch_size': 16})
    real = job.predict_splits
    def stopped(*args, **kw):
        signal.raise_signal(signal.SIGTERM) # SageMaker's stop arrives here
        return real(*args, **kw)
    monkeypatch.setattr(job, 'predict_splits', stopped)
    rc, out = run_main(base, '--pretrained_model', tiny_bert_dir)
    assert rc == 143, out[-3000:]
    assert 'SIGTERM' in (base/'output'/'failure').read_text()
    assert not (base/'model'/'bsm_model.json').exists() and not staging_left(base/'model')
    monkeypatch.setattr(job, 'predict_splits', real)
    (base/'output'/'failure').unlink()
    rc, out = run_main(base, '--pretrained_model', tiny_bert_dir)
    assert rc == 0, out[-3000:]
    assert (base/'model'/'bsm_model.json').exists() and 'final ' in out
