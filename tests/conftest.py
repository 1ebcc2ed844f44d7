"""Shared fixtures for the process-level tests: a tiny random BERT, synthetic SageMaker trees, and a runner for the
exported `bsm-train` program. Names start with `tiny_` or `train_` so they do not clash with fixtures of other files."""
import os, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BSM_TRAIN = Path(sys.executable).parent/'bsm-train'


def train_environment(base:Path|None=None, **extra)->dict:
    """The environment of a `bsm-train` run: this process's, without any SageMaker variables it may carry, offline,
    with `SAGEMAKER_BASE_DIR=base` (when given) and `extra` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('SM_') and k != 'SAGEMAKER_BASE_DIR'}
    env.update(HF_HUB_OFFLINE='1', TOKENIZERS_PARALLELISM='false')
    if base is not None: env['SAGEMAKER_BASE_DIR'] = str(base)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_bsm_train(base:Path|None, *args, env:dict|None=None, timeout:float=600)->tuple:
    """Run the exported `bsm-train` in a fresh process; `(returncode, stdout + stderr, base)`.
    `env` replaces the default environment of `train_environment(base)` (for script mode, where there is no base)."""
    r = subprocess.run([str(BSM_TRAIN), *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                       env=train_environment(base) if env is None else env)
    return r.returncode, r.stdout + r.stderr, base


@pytest.fixture(scope='session')
def tiny_bert_dir(tmp_path_factory)->Path:
    "A random two-layer BERT (hidden 32) with the packaged MiniLM tokenizer: pass it as `pretrained_model`."
    from bsm_nb.model import save_tiny_bert
    return save_tiny_bert(tmp_path_factory.mktemp('tiny_bert')/'tiny')


@pytest.fixture(scope='session')
def train_tree(tmp_path_factory):
    """Factory: `train_tree(name, n_train=..., n_val=..., n_test=..., seed=..., hyperparameters=...)` writes a synthetic
    SageMaker tree (train/val/test CSV channels, hyperparameters.json, empty model/ and output/) in a new temp dir."""
    from bsm_nb.synthetic import write_sagemaker_tree
    def make(name:str='sm', n_train:int=120, n_val:int=40, n_test:int=40, seed:int=0,
             hyperparameters:dict|None=None)->Path:
        return write_sagemaker_tree(tmp_path_factory.mktemp(name)/'ml', n_train=n_train, n_val=n_val, n_test=n_test,
                                    seed=seed, hyperparameters=hyperparameters)
    return make


@pytest.fixture(scope='session')
def train_run():
    """`train_run(base, *args, env=None)` runs bsm-train as a real process:
    `(returncode, stdout + stderr, base)`; thread-safe."""
    assert BSM_TRAIN.exists(), f'{BSM_TRAIN} is missing: pip install -e . in this venv'
    return run_bsm_train


@pytest.fixture(scope='session')
def train_env():
    """`train_env(base, **extra)`: the environment `train_run` uses,
    for runs that need their own variables (script mode)."""
    return train_environment


def _untracked_at_root()->set:
    "Untracked, unignored files and folders at the top of the checkout (as an MLflow store or `mlruns/` would be)."
    out = subprocess.run(['git', 'ls-files', '--others', '--exclude-standard', '--directory'], cwd=ROOT,
                         capture_output=True, text=True).stdout
    return {ln for ln in out.splitlines() if ln and '/' not in ln.rstrip('/')}


@pytest.fixture(scope='session', autouse=True)
def tests_leave_no_files_in_the_checkout():
    """A test that writes into the checkout (an MLflow store from a relative tracking URI, a model dir) fails the
    session: such files were once committed by accident (a 1,085-file MLflow store at the root)."""
    if not (ROOT/'.git').exists(): yield; return
    before = _untracked_at_root()
    yield
    left = _untracked_at_root() - before
    assert not left, f'tests left {sorted(left)} in {ROOT}: write under tmp_path instead'
