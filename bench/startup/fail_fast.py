"""Time to failure of `bsm-train`: wall time from process start until the failure file exists, for a bad
hyperparameter (caught before torch, Lightning and transformers are imported) and, for comparison, for a valid config
whose channels hold no data files (caught only when the train channel is read, after the heavy imports; a missing
channel *directory* is caught early, so the directories stay and only their files go).

    .venv/bin/python bench/startup/fail_fast.py [--runs 5]

Prints one Markdown table row per case: median and min/max of the runs, with the CPU model and its SIMD flags.
Goal (fail fast): under 2 s for the bad hyperparameter on a quiet 2-core machine."""
import argparse, os, platform, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent)) # bench/: make_table
from make_table import cpu_model # the CPU name as RESULTS.md gives it

BSM_TRAIN = Path(sys.executable).parent/'bsm-train'
SIMD = ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16', 'amx_tile')


def cpu_flags()->str:
    "The SIMD flags of this CPU that matter to torch (from /proc/cpuinfo)."
    try: flags = next(ln for ln in open('/proc/cpuinfo') if ln.startswith('flags')).split(':', 1)[1].split()
    except (OSError, StopIteration): return 'unknown'
    return ' '.join(f for f in SIMD if f in flags) or 'none of ' + '/'.join(SIMD)


def make_tree(root:Path, case:str)->Path:
    "A small SageMaker tree: `typo` has a misspelt hyperparameter; `no_data` a valid config and an empty train channel."
    from bsm_nb.synthetic import write_sagemaker_tree
    base = write_sagemaker_tree(root/case, n_train=40, n_val=10, n_test=10, seed=0,
                                hyperparameters={'max_epochs': '1', **({'batch_sise': '8'} if case == 'typo' else {})})
    if case == 'no_data':
        for ch in ('train', 'val', 'test'):
            shutil.rmtree(base/'input'/'data'/ch); (base/'input'/'data'/ch).mkdir()
    return base


def time_to_failure(base:Path)->float:
    "Seconds from starting `bsm-train` until output/failure exists (polled every 5 ms); the process must exit 255."
    failure = base/'output'/'failure'
    failure.unlink(missing_ok=True)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith('SM_')}, 'SAGEMAKER_BASE_DIR': str(base),
           'HF_HUB_OFFLINE': '1', 'TOKENIZERS_PARALLELISM': 'false'}
    t0 = time.perf_counter()
    p = subprocess.Popen([str(BSM_TRAIN)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not failure.exists():
        if p.poll() is not None and not failure.exists():
            raise RuntimeError(f'bsm-train exited {p.returncode} without a failure file')
        time.sleep(0.005)
    t = time.perf_counter() - t0
    assert p.wait(timeout=300) == 255, p.returncode
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--runs', type=int, default=5)
    a = ap.parse_args()
    load = ' '.join(f'{x:.2f}' for x in os.getloadavg())
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for case, what in (('typo', "bad hyperparameter (`batch_sise`)"),
                           ('no_data', 'valid config, train channel empty')):
            base = make_tree(Path(d), case)
            time_to_failure(base) # warm the page cache
            ts = [time_to_failure(base) for _ in range(a.runs)]
            rows.append(f'| {what} | {statistics.median(ts):.2f} | {min(ts):.2f}–{max(ts):.2f} | {a.runs} | '
                        f'{os.cpu_count()} cores, {cpu_model()} ({cpu_flags()}) | {load} |')
    print('| case | median s to failure file | min–max s | runs | CPU (flags) | load 1/5/15 min at start |')
    print('|---|---|---|---|---|---|')
    print('\n'.join(rows))
    print(f'\nPython {platform.python_version()}, {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}; load after: '
          + ' '.join(f'{x:.2f}' for x in os.getloadavg()))


if __name__ == '__main__':
    main()
