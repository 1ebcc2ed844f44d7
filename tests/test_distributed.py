"""Data-parallel training as SageMaker runs it, on one machine: two "hosts", 127.0.0.1 and 127.0.0.2, each a `bsm-train`
process with its own SAGEMAKER_BASE_DIR and resourceconfig.json, over gloo on CPU (see nbs/14_distributed.ipynb)."""
import inspect, json, re, shutil, subprocess, sys, textwrap, time
from pathlib import Path

import pytest

import bsm_nb.job
from bsm_nb.server import free_port
from bsm_nb.synthetic import write_sagemaker_tree

BSM_TRAIN = Path(sys.executable).parent/'bsm-train'
pytestmark = pytest.mark.timeout(600)
HOSTS = ['127.0.0.1', '127.0.0.2']
# the same global batch of 16 rows: 2 ranks x 8, or 1 process x 16;
# no dropout, so that the two runs take the same steps;
# fp32, since bf16 autocast (precision auto on a CPU with bf16 in hardware) rounds 2 ranks and 1 process apart by ~1e-4
HPS = {'max_epochs': 2, 'max_seq_length': 32, 'lr': 1e-3, 'head_lr': 1e-3, 'dropout': 0.0, 'num_threads': 1,
       'early_stop_metric': 'val_loss', 'seed': 7, 'precision': '32-true'}
ROWS = dict(n_train=192, n_val=45, n_test=48) # 45 val rows: the ranks validate 23 and 22
METRIC_TOL = 1e-4 # test metrics of 2 ranks vs 1 process: only the order of float sums differs (measured: ~2e-8)
integrated = pytest.mark.skipif('setup_distributed' not in inspect.getsource(bsm_nb.job),
                                reason='bsm-train does not call bsm_nb.distributed yet: apply the 13a_job patch of the '
                                       'distributed chapter')


@pytest.fixture(scope='module')
def tiny(tiny_bert_dir, tmp_path_factory)->Path:
    "The tiny random encoder, with its dropout off."
    path = shutil.copytree(tiny_bert_dir, tmp_path_factory.mktemp('enc')/'tiny')
    conf = json.loads((path/'config.json').read_text())
    conf.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (path/'config.json').write_text(json.dumps(conf))
    return path


def sm_host(root:Path, name:str, hosts:list|None, current:str|None, **hps)->Path:
    """A SageMaker tree with the synthetic channels;
    with `hosts`, the cluster description of `current` (in the original training script's file name)."""
    base = write_sagemaker_tree(root/name, seed=0, hyperparameters={**HPS, **hps}, **ROWS)
    if hosts:
        conf = base/'input'/'config'
        (conf/'resourceConfig.json').write_text(json.dumps({'current_host': current, 'hosts': hosts,
                                                            'network_interface_name': 'lo'}))
        (conf/'inputdataconfig.json').write_text(json.dumps({c: {'TrainingInputMode': 'File',
                                                                 'S3DistributionType': 'FullyReplicated'}
                                                             for c in ('train', 'val', 'test')}))
    return base


def start(base:Path, tiny:Path, **env)->subprocess.Popen:
    """`bsm-train` on `base` in a fresh process (conftest's environment, no torch.distributed variables),
    its output in base/train.log."""
    from conftest import train_environment
    e = train_environment(base, OMP_NUM_THREADS=1, **env)
    for k in ('MASTER_ADDR', 'MASTER_PORT', 'NODE_RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'RANK', 'BSM_DIST_TIMEOUT',
              'BSM_RESOLVE_TIMEOUT'):
        if k not in env: e.pop(k, None)
    out = open(base/'train.log', 'w')
    return subprocess.Popen([str(BSM_TRAIN), '--pretrained_model', str(tiny)], env=e, stdout=out,
                            stderr=subprocess.STDOUT)


def finish(p:subprocess.Popen, base:Path, timeout:float)->tuple:
    try: rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill(); p.wait()
        pytest.fail(f'{base.name}: bsm-train did not finish within {timeout} s\n'
                    + (base/'train.log').read_text()[-3000:])
    return rc, (base/'train.log').read_text()


def metrics_of(base:Path)->dict:
    return json.loads((base/'model'/'metrics.json').read_text())['test']


@integrated
def test_two_hosts_train_like_one_process(tmp_path, tiny):
    port = free_port()
    bases = [sm_host(tmp_path, f'host{i}', HOSTS, h, batch_size=8) for i, h in enumerate(HOSTS)]
    t0 = time.time()
    procs = [start(b, tiny, MASTER_PORT=str(port), BSM_DIST_TIMEOUT='120') for b in bases]
    (rc0, log0), (rc1, log1) = [finish(p, b, 400) for p, b in zip(procs, bases)]
    dist_s = time.time() - t0
    assert (rc0, rc1) == (0, 0), log0[-3000:] + '\n----\n' + log1[-3000:]
    for r, log in enumerate((log0, log1)): # every rank says where it is
        assert f'distributed: world_size=2 node_rank={r} master=127.0.0.1:{port}' in log, log[-2000:]
    # both ranks end with the same weights
    sums = [re.findall(r'distributed: rank=(\d) weights_sha256=([0-9a-f]{64})', log) for log in (log0, log1)]
    assert [s[0][0] for s in sums] == ['0', '1'] and sums[0][0][1] == sums[1][0][1], sums
    # only global rank 0 writes the model dir; the other host's stays empty, with no failure
    assert ({'model.safetensors', 'metrics.json', 'predictions.csv', 'predictions_val.csv'}
            <= {p.name for p in (bases[0]/'model').iterdir()})
    assert list((bases[1]/'model').iterdir()) == []
    assert not (bases[0]/'output'/'failure').exists() and not (bases[1]/'output'/'failure').exists()
    assert 'final ' not in log1 and 'final ' in log0
    m = json.loads((bases[0]/'model'/'metrics.json').read_text())
    assert (m['train_rows'] == ROWS['n_train'] and m['test']['rows'] == ROWS['n_test']
            and m['val']['rows'] == ROWS['n_val'])
    assert m['steps'] == 2 * ROWS['n_train'] // 16 # 12 steps of 16 rows per epoch: 2 ranks x 8
    # one process with the same global batch gets the same test metrics
    t1 = time.time()
    single = sm_host(tmp_path, 'single', None, None, batch_size=16)
    rc, log = finish(start(single, tiny), single, 300)
    assert rc == 0, log[-3000:]
    assert 'distributed: world_size=1 node_rank=0 master=none' in log
    one, two = metrics_of(single), metrics_of(bases[0])
    print(f'\n2 hosts: {dist_s:.0f} s, 1 process: {time.time() - t1:.0f} s\n2 ranks: {two}\n1 proc:  {one}')
    assert json.loads((single/'model'/'metrics.json').read_text())['steps'] == m['steps']
    for k in ('auroc', 'average_precision', 'loss', 'accuracy'):
        assert abs(one[k] - two[k]) <= METRIC_TOL, (k, one[k], two[k])
    assert 0.0 < two['loss'] < 0.69 # and it did learn something


@integrated
def test_sharded_train_channel(tmp_path, tiny):
    """ShardedByS3Key train: each host trains on its own shard, with preprocessing fitted on both,
    and as many steps as the smaller shard allows."""
    import pandas as pd
    port, sizes = free_port(), (104, 88)
    bases = [sm_host(tmp_path, f'shard{i}', HOSTS, h, batch_size=8) for i, h in enumerate(HOSTS)]
    train = pd.read_csv(bases[0]/'input/data/train/train.csv')
    for base, rows in zip(bases, (train[:sizes[0]], train[sizes[0]:])):
        rows.to_csv(base/'input/data/train/train.csv', index=False)
        conf = base/'input/config/inputdataconfig.json'
        conf.write_text(json.dumps({**json.loads(conf.read_text()),
                                    'train': {'TrainingInputMode': 'File', 'S3DistributionType': 'ShardedByS3Key'}}))
    procs = [start(b, tiny, MASTER_PORT=str(port), BSM_DIST_TIMEOUT='120') for b in bases]
    (rc0, log0), (rc1, log1) = [finish(p, b, 400) for p, b in zip(procs, bases)]
    assert (rc0, rc1) == (0, 0), log0[-3000:] + '\n----\n' + log1[-3000:]
    for log in (log0, log1):
        assert 'distributed: preprocessing fitted on 2 train shards (104, 88 rows)' in log, log[-2000:]
    sums = [re.findall(r'weights_sha256=([0-9a-f]{64})', log) for log in (log0, log1)]
    assert sums[0] == sums[1] and len(sums[0]) == 1
    m = json.loads((bases[0]/'model'/'metrics.json').read_text())
    assert m['steps'] == 2 * 11 # ceil(88 / 8) batches per epoch on both ranks
    # the master's preprocessing is the one fitted on all of train: vocabularies of both shards
    pre = json.loads((bases[0]/'model'/'preprocessor.json').read_text())
    for f, vocab in pre['vocabs'].items():
        assert vocab == sorted(set(train[f].dropna().astype(str))), f


@integrated
def test_a_host_that_never_comes_up_fails_clearly(tmp_path, tiny):
    """A worker whose master never starts, and a master whose worker never starts:
    exit 255 and a failure file, not a hang."""
    ports = [free_port(), free_port()] # a run each: nobody else ever listens or connects there
    bases = [sm_host(tmp_path, f'alone{i}', HOSTS, HOSTS[i], batch_size=8, max_epochs=1) for i in (0, 1)]
    t0 = time.time()
    procs = [start(b, tiny, MASTER_PORT=str(p), BSM_DIST_TIMEOUT='10') for b, p in zip(bases, ports)]
    results = [finish(p, b, 180) for p, b in zip(procs, bases)]
    took = time.time() - t0
    expected = [f'DistributedError: distributed: the master 127.0.0.1:{ports[0]} (rank 0 of 2) '
                'did not see every rank join within 10 s',
                f'DistributedError: distributed: rank 1 of 2 could not join the master 127.0.0.1:{ports[1]} '
                'within 10 s']
    for (rc, log), base, want in zip(results, bases, expected):
        assert rc == 255, log[-3000:]
        reason = (base/'output'/'failure').read_text().splitlines()[0]
        assert reason.startswith(want), reason
        assert list((base/'model').iterdir()) == []
        print(f'\n{base.name}: {reason}')
    print(f'both failed within {took:.0f} s')


@integrated
def test_unresolvable_master_fails_before_loading_data(tmp_path, tiny):
    base = sm_host(tmp_path, 'worker', ['algo-1.invalid', 'algo-2'], 'algo-2')
    rc, log = finish(start(base, tiny, BSM_RESOLVE_TIMEOUT='2'), base, 120)
    assert rc == 255, log[-3000:]
    reason = (base/'output'/'failure').read_text().splitlines()[0]
    assert reason.startswith("DistributedError: distributed: master host 'algo-1.invalid' "
                             "did not resolve within 2 s"), reason
    assert 'rows: ' not in log # it stopped before reading the channels


SHARDED_RANK = textwrap.dedent('''
    import json, sys, numpy as np, torch.distributed as dist
    from bsm_nb.data import LengthBucketSampler
    rank, port = int(sys.argv[1]), sys.argv[2]
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2)
    lengths = np.arange([104, 61][rank]) % 17 + 1 # the two hosts hold shards of different sizes
    s = LengthBucketSampler(lengths, 8, seed=3, data_shards=2)
    batches = list(s)
    print(json.dumps({'len': len(s), 'n': len(batches), 'rows': sorted(sum(batches, []))}), flush=True)
    # shut gloo down together: rank 0 hosts the store, and leaving first aborts the other
    dist.barrier(); dist.destroy_process_group()
''')


def test_sharded_train_ranks_agree_on_the_number_of_batches(tmp_path):
    "ShardedByS3Key: each host's rank reads only its own shard, and both stop after the smaller shard's batch count."
    script, port = tmp_path/'rank.py', free_port()
    script.write_text(SHARDED_RANK)
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    got = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    assert got[0]['len'] == got[1]['len'] == got[0]['n'] == got[1]['n'] == 8 # ceil(61 / 8): the smaller shard
    # the smaller shard is read whole, not split again
    assert len(got[1]['rows']) == 61 and set(got[1]['rows']) == set(range(61))
    assert len(got[0]['rows']) == 64 # the larger one is cut at 8 batches this epoch


# --- the socket interface NCCL and gloo are told to use ------------------------------------------------------------

IFNAMES = ('NCCL_SOCKET_IFNAME', 'GLOO_SOCKET_IFNAME')


@pytest.fixture
def dist_env(monkeypatch):
    """os.environ without the variables `setup_distributed` exports (all restored afterwards), and the warnings of the
    `bsm_nb` logger collected in a list."""
    for k in ('MASTER_ADDR', 'MASTER_PORT', 'NODE_RANK', 'LOCAL_RANK', *IFNAMES):
        monkeypatch.setenv(k, 'x'); monkeypatch.delenv(k) # recorded first, so that teardown removes what the test sets
    import logging
    from bsm_nb.distributed import log
    warnings = []
    class Keep(logging.Handler):
        def emit(self, r): warnings.append(r.getMessage())
    handler = Keep(level=logging.WARNING)
    log.addHandler(handler)
    yield warnings
    log.removeHandler(handler)


def cluster_tree(root:Path, hosts:list, current:str, ifname:str)->dict:
    conf = root/'input'/'config'
    conf.mkdir(parents=True)
    (conf/'resourceconfig.json').write_text(json.dumps({'current_host': current, 'hosts': hosts,
                                                        'network_interface_name': ifname}))
    return {'SAGEMAKER_BASE_DIR': str(root)}


def test_multi_node_run_uses_an_interface_this_machine_has(tmp_path, dist_env):
    import os
    from bsm_nb.distributed import setup_distributed
    c = setup_distributed(env=cluster_tree(tmp_path, HOSTS, HOSTS[1], 'lo'))
    assert c.num_nodes == 2
    assert [os.environ.get(k) for k in IFNAMES] == ['lo', 'lo']
    assert dist_env == []


def test_multi_node_run_leaves_a_missing_interface_unset(tmp_path, dist_env):
    "The SDK's local mode writes `ethwe`, which no local container has: a warning, and NCCL and gloo choose themselves."
    import os
    from bsm_nb.distributed import network_interfaces, setup_distributed
    assert 'ethwe' not in network_interfaces()
    setup_distributed(env=cluster_tree(tmp_path, HOSTS, HOSTS[0], 'ethwe'))
    assert os.environ['MASTER_ADDR'] == HOSTS[0] # the rest of the setup happened
    assert [k for k in IFNAMES if k in os.environ] == []
    assert len(dist_env) == 1 and "network interface 'ethwe'" in dist_env[0] and 'lo' in dist_env[0], dist_env


def test_a_value_in_the_environment_wins(tmp_path, dist_env, monkeypatch):
    import os
    from bsm_nb.distributed import setup_distributed
    monkeypatch.setenv('NCCL_SOCKET_IFNAME', 'eth7')
    setup_distributed(env=cluster_tree(tmp_path, HOSTS, HOSTS[1], 'lo'))
    assert (os.environ['NCCL_SOCKET_IFNAME'], os.environ['GLOO_SOCKET_IFNAME']) == ('eth7', 'lo')


@pytest.mark.parametrize('ifname', ['ethwe', 'lo'])
def test_single_host_multi_gpu_run_never_sets_the_interface(tmp_path, dist_env, monkeypatch, ifname):
    """One host with 4 GPUs (faked): DDP over 127.0.0.1, so neither variable is exported,
    whether the interface exists or not."""
    import os, torch
    from bsm_nb.distributed import setup_distributed
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 4)
    c = setup_distributed(env=cluster_tree(tmp_path, ['algo-1'], 'algo-1', ifname))
    assert (c.is_distributed, c.num_nodes, c.world_size, c.backend) == (True, 1, 4, 'nccl')
    assert os.environ['MASTER_ADDR'] == '127.0.0.1'
    assert [k for k in IFNAMES if k in os.environ] == []
    assert dist_env == []
