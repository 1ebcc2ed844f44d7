"""`bsm-train` as SageMaker runs it: a real process, a temporary `SAGEMAKER_BASE_DIR` (or script mode's `SM_*`
variables), and everything it leaves behind checked: the model dir, metrics, predictions, plots, TensorBoard events,
log lines, and for bad input exit code 255 with a failure file whose first line names the culprit.
Most runs use a tiny random BERT (`tiny_bert_dir`); one uses the real packaged MiniLM on the Women's Clothing data."""
import json, re, shutil, struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np, pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
WOMENS = ROOT.parent/'shared'/'data'/'womens_clothing'
WORKERS = 2 # concurrent bsm-train processes: each start spends ~5 s importing torch, lightning and transformers
MODEL_FILES = {'bsm_model.json', 'model.safetensors', 'preprocessor.json', 'tokenizer', 'metrics.json', 'predictions.csv',
               'predictions_val.csv', 'roc_curve.png', 'pr_curve.png'}

pytestmark = pytest.mark.timeout(900)


# --- helpers ----------------------------------------------------------------------------------------

def meta_of(model_dir:Path)->dict: return json.loads((Path(model_dir)/'bsm_model.json').read_text())
def metrics_of(model_dir:Path)->dict: return json.loads((Path(model_dir)/'metrics.json').read_text())
def channel_csv(base:Path, channel:str)->Path: return base/'input'/'data'/channel/f'{channel}.csv'

def read_predictions(path:Path)->pd.DataFrame: return pd.read_csv(path, dtype={'id': str, 'label': str, 'true_label': str})

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
    assert not staging_left(model_dir)
    assert (model_dir/'tokenizer'/'tokenizer.json').exists() or (model_dir/'tokenizer'/'vocab.txt').exists()
    for png in ('roc_curve.png', 'pr_curve.png'):
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


def test_synthetic_metrics_json(synthetic_run):
    "metrics.json holds val and test metrics in [0, 1] with the right row counts, and the threshold bsm_model.json uses."
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
    "stdout has an `epoch=N` line per epoch with val_auroc and val_loss, and a `final` line whose test_auroc is metrics.json's."
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
    "`load_bundle(model_dir).predict_frame` on the test file (read by pandas, typed) gives predictions.csv's probabilities."
    from bsm_nb.artifacts import load_bundle
    base, _ = synthetic_run
    test = pd.read_csv(channel_csv(base, 'test'))
    got = load_bundle(base/'model', device='cpu').predict_frame(test)
    ref = read_predictions(base/'model'/'predictions.csv')
    assert got.id.astype(str).tolist() == ref.id.tolist()
    np.testing.assert_allclose(got.probability.to_numpy(), ref.probability.to_numpy(), atol=1e-5, rtol=0)
    assert got.label.astype(str).tolist() == ref.label.tolist()


def test_command_line_flag_overrides_the_hyperparameters_file(synthetic_run, tiny_bert_dir):
    "`--lr 1e-4` wins over the file's lr 2e-05; the file's other values stay; the config is saved in bsm_model.json."
    base, _ = synthetic_run
    cfg = meta_of(base/'model')['config']
    assert json.loads((base/'input/config/hyperparameters.json').read_text())['lr'] == '2e-05'
    assert (cfg['lr'], cfg['max_epochs'], cfg['batch_size'], cfg['pretrained_model']) == (1e-4, 2, 32, str(tiny_bert_dir))


# --- 2. real data: Women's Clothing reviews ----------------------------------------------------------

@pytest.fixture(scope='module')
def womens_clothing():
    "(column_info, {split: first rows}) of the Women's Clothing splits, the unnamed index column renamed to `row_id`."
    if not (WOMENS/'train.csv').exists():
        pytest.skip(f'../shared/data/womens_clothing not found (looked for {WOMENS}/train.csv): the real-data tests need it')
    info = json.loads((WOMENS/'column_info.json').read_text())
    def read(name, n):
        df = pd.read_csv(WOMENS/name, nrows=n)
        assert df.columns[0].startswith('Unnamed'), df.columns[0] # the README: the first, unnamed column is the row id
        return df.rename(columns={df.columns[0]: 'row_id'})
    return info, {'train': read('train.csv', 300), 'val': read('val.csv', 100), 'test': read('test.csv', 100)}


def womens_hyperparameters(info:dict, **extra)->dict:
    "Both text fields, the three categoricals, Age and Positive Feedback Count (not Rating, which gives the label away)."
    return {'id_name': 'row_id', 'text_name': json.dumps(info['text_cols']), 'cat_field_list': json.dumps(info['cat_cols']),
            'tab_field_list': json.dumps([c for c in info['num_cols'] if c != 'Rating']), 'label_name': info['label_col'],
            'label_list': json.dumps(info['label_list']), **{k: str(v) for k, v in extra.items()}}


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
    assert (m['val']['rows'], m['test']['rows'], m['train_rows']) == (len(splits['val']), len(splits['test']), len(splits['train']))
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
    base = write_tree(tmp_path/'ml', hps, {f'{k}/{k}.csv': (lambda p, df=df: df.to_csv(p, index=False)) for k, df in splits.items()})
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
    from bsm_nb.data import FeatureProcessor, read_data_file
    info, splits = womens_clothing
    tr = splits['train']
    files = {'train/part-0.parquet': lambda p: tr.iloc[:100].to_parquet(p, index=False),
             'train/part-1.jsonl': lambda p: tr.iloc[100:200].to_json(p, orient='records', lines=True),
             'train/part-2.csv.gz': lambda p: tr.iloc[200:].to_csv(p, index=False, compression='gzip'),
             'train/_SUCCESS': lambda p: p.touch(),
             'val/val.jsonl.gz': lambda p: splits['val'].to_json(p, orient='records', lines=True, compression='gzip'),
             'test/test.parquet': lambda p: splits['test'].to_parquet(p, index=False)}
    base = write_tree(tmp_path/'ml', womens_hyperparameters(info, max_epochs=1, batch_size=32, max_seq_length=32), files)
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
            'text_cleaning': ['whitespace', 'html', 'lowercase'], 'label_list': ['0', '1'], 'pretrained_model': str(tiny),
            'lr': 2e-05, 'head_lr': 0.003, 'dropout': 0.2, 'batch_size': 16, 'max_epochs': 1, 'max_seq_length': 48, 'seed': 7,
            'reinit_pooler': True, 'length_bucketing': False, 'fusion': 'gated', 'pooling': 'cls'}

def _raw(v): return ','.join(v) if isinstance(v, list) else str(v) # 2e-05, True, a,b
def _python_literal(v): return str(v) # SDK v2 Estimator: str() of every value: "['a', 'b']", True
def _v3_json(v): return v if isinstance(v, str) else json.dumps(v) # SDK v3 ModelTrainer: true, ["a", "b"]
def _json_quoted(v): return json.dumps(_v3_json(v)) # v2 framework estimators json.dumps the strings they are given: "\"2e-05\""

ENCODINGS = {
    'raw_strings': (_raw, {}),
    'python_literal': (_python_literal, {'_tuning_objective_metric': 'val_auroc'}),
    'v3_json': (_v3_json, {}),
    'json_quoted': (_json_quoted, {'sagemaker_program': '"train.py"', 'sagemaker_submit_directory': '"s3://bucket/src.tar.gz"',
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
    "Raw strings, Python literals (v2), JSON (v3) and JSON-quoted strings (v2 framework) all train with one identical config."
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
           'cat_field_list': ['marketplace', 'order_status', 'item_category'], 'tab_field_list': ['order_amount', 'messages_so_far'],
           'max_epochs': 1, 'batch_size': 16, 'lr': 5e-05, 'reinit_pooler': False, 'val_split': 0.2, 'pretrained_model': str(tiny_bert_dir)}
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


# --- 4. bad input: exit 255, a failure file that names the culprit, no complete-looking model dir ------

def _edit_csv(base:Path, channel:str, edit):
    f = channel_csv(base, channel)
    df = pd.read_csv(f, dtype=str); edit(df); df.to_csv(f, index=False)

def _set(channel:str, row:int, col:str, value:str):
    "Prepare step: put `value` in data row `row` (0-based, as pandas counts) of `col` in the channel's CSV."
    def edit(df): df.loc[row, col] = value
    return lambda b: _edit_csv(b, channel, edit)

def _one_class(b):
    def edit(df): df['label'] = '0'
    _edit_csv(b, 'train', edit)
def _only_success(b): shutil.rmtree(b/'input/data/train'); (b/'input/data/train').mkdir(); (b/'input/data/train/_SUCCESS').touch()
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

@dataclass
class Bad:
    name:str
    expect:list # substrings of the failure file's first line
    hps:dict = field(default_factory=dict) # added to hyperparameters.json
    prepare:object = None # edits the tree before the run
    args:tuple = () # command-line flags

BAD = [
    Bad('unknown_key_typo', ["unknown hyperparameter 'batch_sise'", "Did you mean 'batch_size'"], hps={'batch_sise': '8'}),
    Bad('bad_int', ["'max_epochs'", "'two'", 'integer'], hps={'max_epochs': 'two'}),
    Bad('bad_bool', ["'reinit_pooler'", "'maybe'", 'boolean'], hps={'reinit_pooler': 'maybe'}),
    Bad('bad_list', ["'cat_field_list'", 'list'], hps={'cat_field_list': '["marketplace", "order_status"'}),
    Bad('unknown_fusion', ["'fusion'", "'sum'", 'concat'], hps={'fusion': 'sum'}),
    Bad('lr_out_of_range_on_command_line', ["'lr'", 'between 0 and 1'], args=('--lr', '5')),
    Bad('max_seq_length_over_512', ["'max_seq_length'", '1000', '512'], hps={'max_seq_length': '1000'}),
    Bad('text_hook_unimportable', ['text_hook', "'nosuchmodule_xyz:clean'", 'nosuchmodule_xyz'], hps={'text_hook': 'nosuchmodule_xyz:clean'}),
    # a hook that raises on the text: the reason must name the hook, not only the hook's own exception
    Bad('text_hook_raises', ['text_hook', "'json:loads'"], hps={'text_hook': 'json:loads'}),
    # the key at fault is metric_choices, which the user set, not early_stop_metric, which they left alone
    Bad('unknown_metric_choice', ['metric_choices', "'auc'"], hps={'metric_choices': '["auc"]'}),
    Bad('reinit_layers_too_many', ['reinit_layers', '5', 'only 2 layers'], hps={'reinit_layers': '5'}),
    Bad('hyperparameters_not_json', ['hyperparameters.json', 'not valid JSON'],
        prepare=lambda b: (b/'input/config/hyperparameters.json').write_text('{"lr": "1e-4", ')),
    Bad('missing_train_channel', ['input/data/train', 'does not exist'], prepare=lambda b: shutil.rmtree(b/'input/data/train')),
    Bad('empty_train_channel', ['input/data/train', 'no data files'], prepare=_only_success),
    Bad('unknown_file_type', ['notes.txt', 'unknown data file type'], prepare=lambda b: (b/'input/data/train/notes.txt').write_text('hi')),
    Bad('text_field_not_in_file', ['train.csv', "missing field(s) ['mesage']"], hps={'text_name': 'mesage'}),
    Bad('numeric_field_holds_a_word', ['row 5', "'order_amount'", "'lots'"], prepare=_set('train', 5, 'order_amount', 'lots')),
    # with val held out of train, the row named must still be the row of the file (data row 50 = line 52)
    Bad('numeric_word_without_val_channel', ["'order_amount'", "'lots'", ('row 50', 'line 52')],
        prepare=_no_val_and(_set('train', 50, 'order_amount', 'lots'))),
    Bad('single_class_labels', ["'label'", '1 class', 'at least 2'], prepare=_one_class),
    Bad('label_outside_label_list', ["'label'", "'spam'", 'label_list'], hps={'label_list': '["0", "1"]'}, prepare=_set('train', 3, 'label', 'spam')),
    Bad('val_label_outside_labels', ['row 2', "'label'", "'spam'"], prepare=_set('val', 2, 'label', 'spam')),
    # numbers of the right type but outside their range: these trained silently or failed deep in torch
    Bad('cat_embedding_dim_zero', ["'cat_embedding_dim'", 'value 0', 'at least 1'], hps={'cat_embedding_dim': '0'}),
    Bad('weight_decay_negative', ["'weight_decay'", 'value -5.0', 'at least 0'], hps={'weight_decay': '-5'}),
    Bad('tab_hidden_dim_negative', ["'tab_hidden_dim'", 'value -1', 'at least 1'], hps={'tab_hidden_dim': '-1'}),
    Bad('hyperparameters_latin1', ['hyperparameters.json', 'not UTF-8', 'byte 0xe9', 'expected UTF-8 JSON'], prepare=_hps_encoded('latin-1')),
    Bad('hyperparameters_utf16', ['hyperparameters.json', 'not UTF-8', 'UTF-16', 'expected UTF-8 JSON'], prepare=_hps_encoded('utf-16')),
    Bad('csv_column_twice', ['train.csv', "column(s) ['message']", 'more than once'], prepare=_repeat_column('train', 'message')),
    Bad('json_array_not_lines', ['train.json', 'holds a JSON array', 'expected JSON Lines'], prepare=_as_json_array('train')),
    Bad('hub_name_offline', ["pretrained_model 'no-such-org/no-such-bert'", 'HF_HUB_OFFLINE', 'leave pretrained_model empty'],
        hps={'pretrained_model': 'no-such-org/no-such-bert'}),
]
assert len({c.name for c in BAD}) == len(BAD)


@pytest.fixture(scope='module')
def bad_runs(request, train_tree, train_run, tiny_bert_dir):
    "Each selected bad-input case run as its own bsm-train process, two at a time: name -> (returncode, output, base)."
    selected = {item.callspec.params['case'].name for item in request.session.items
                if getattr(item, 'originalname', None) == 'test_bad_input_fails_with_a_reason' and hasattr(item, 'callspec')}
    cases, bases = [c for c in BAD if c.name in selected], {}
    for case in cases:
        base = bases[case.name] = train_tree(f'bad_{case.name}', n_train=120, n_val=30, n_test=30, seed=4,
                                             hyperparameters={'max_epochs': 1, 'batch_size': 32, 'pretrained_model': str(tiny_bert_dir), **case.hps})
        if case.prepare: case.prepare(base)
    def run(case): return train_run(bases[case.name], *case.args)
    with ThreadPoolExecutor(WORKERS) as ex: return dict(zip((c.name for c in cases), ex.map(run, cases)))


@pytest.mark.parametrize('case', BAD, ids=[c.name for c in BAD])
def test_bad_input_fails_with_a_reason(case, bad_runs):
    """Exit code 255; output/failure's first line (at most 1024 characters, as SageMaker shows it) names the culprit;
    the model dir has no bsm_model.json and no staging directory."""
    rc, out, base = bad_runs[case.name]
    assert rc == 255, f'exit code {rc}\n{out[-3000:]}'
    failure = base/'output'/'failure'
    assert failure.exists(), out[-3000:]
    first = failure.read_text().splitlines()[0]
    assert 0 < len(first) <= 1024
    for want in case.expect:
        options = want if isinstance(want, tuple) else (want,)
        assert any(o in first for o in options), f'{options} not in the first line: {first!r}'
    assert 'Traceback' in failure.read_text() # the details follow the reason
    model = base/'model'
    assert not (model/'bsm_model.json').exists() and not staging_left(model), sorted(p.name for p in model.iterdir())


# --- 5. fail fast: config and setup errors come before torch, Lightning and transformers are imported -----

HEAVY = ('torch', 'lightning', 'transformers')
# `main` in a fresh interpreter; prints which heavy modules were imported by the time it returned
PROBE = ("import sys; from bsm_nb.entrypoint import main; rc = main(sys.argv[1:]); "
         "print('HEAVY', ','.join(m for m in %r if m in sys.modules), 'RC', rc)" % (HEAVY,))

def main_in_fresh_process(env:dict, *args)->tuple:
    "(exit code of `main`, heavy modules imported when it returned, output) of `main(args)` in a new interpreter."
    import subprocess, sys
    r = subprocess.run([sys.executable, '-c', PROBE, *map(str, args)], env=env, capture_output=True, text=True, cwd=ROOT, timeout=300)
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
    r = subprocess.run([sys.executable, '-X', 'importtime', str(BSM_TRAIN)], env=train_env(base), capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 255, r.stdout[-3000:] + r.stderr[-3000:]
    imported = {ln.rsplit('|', 1)[-1].strip() for ln in r.stderr.splitlines() if ln.startswith('import time:')}
    assert 'bsm_nb.entrypoint' in imported and 'bsm_nb.config' in imported, sorted(imported)[:50]
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    assert "unknown hyperparameter 'batch_sise'" in first_failure_line(base)


def _file_in_the_way(b:Path): (b/'a_file').write_text('not a directory')

# name, first-line substrings, prepare(base), extra environment (base -> dict)
SETUP_CASES = [
    ('missing_train_channel', ['SetupError', 'input/data/train', 'does not exist'], lambda b: shutil.rmtree(b/'input/data/train'), lambda b: {}),
    ('model_dir_under_a_file', ['SetupError', 'model dir', 'a_file/model', 'cannot be created or written'], _file_in_the_way,
     lambda b: {'SM_MODEL_DIR': b/'a_file'/'model'}),
    ('model_dir_is_a_file', ['SetupError', 'model dir', 'a_file', 'cannot be created or written'], _file_in_the_way,
     lambda b: {'SM_MODEL_DIR': b/'a_file'}),
    ('local_pretrained_model_missing', ['SetupError', "pretrained_model '/no/such/encoder'", 'no such directory'], None,
     lambda b: {}),
]

@pytest.mark.parametrize('name,expect,prepare,extra', SETUP_CASES, ids=[c[0] for c in SETUP_CASES])
def test_setup_errors_fail_before_data_is_read(name, expect, prepare, extra, train_tree, train_env):
    """A missing train channel, a model dir that cannot be created or written, and a local `pretrained_model` that is
    not there fail with exit 255 before any heavy module is imported, so before any data is read or encoder loaded."""
    hps = {'max_epochs': '1', **({'pretrained_model': '/no/such/encoder'} if name == 'local_pretrained_model_missing' else {})}
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
    base = train_tree('fast_hub', n_train=40, n_val=10, n_test=10, hyperparameters={'max_epochs': '1', 'pretrained_model': 'no-such-org/no-such-bert'})
    (base/'input/data/train/notes.txt').write_text('not data') # reading the channel would fail on this file
    rc, out, _ = train_run(base)
    assert rc == 255, out[-3000:]
    first = first_failure_line(base)
    assert "pretrained_model 'no-such-org/no-such-bert'" in first and 'notes.txt' not in first, first
    assert 'rows: ' not in out # no split was read
