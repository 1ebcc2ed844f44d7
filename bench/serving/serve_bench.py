"""Serving throughput and latency: bsm-serve (nginx + gunicorn, loopback) against `predict_frame` in-process.

    .venv/bin/python bench/serving/serve_bench.py [--model-dir DIR] [--encoder packaged|tiny] [--seconds 20]
                                                  [--workers N] [--precision auto|32-true]

Without --model-dir it trains a model once into bench/out/serve_model (synthetic messaging data, 1 epoch, the packaged
all-MiniLM-L6-v2 encoder by default) and reuses it afterwards. For 1, 8 and 64 rows a request it measures rows/s and
p50/p99 latency of sequential requests (JSON records, one keep-alive connection, the client on the same machine) and of
the same row chunks through `ModelBundle.predict_frame` in this process (called from a thread of its own, like the
server's request threads, with torch using every core), in alternating rounds so that neither side competes with the
other and drifting machine load hits both alike.
Prints a markdown table for bench/RESULTS.md. Not a test: the numbers depend on the machine.
"""
import argparse, json, os, platform, shutil, signal, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
sys.path[:0] = [str(HERE), str(BENCH), str(BENCH/'startup')] # serve_*; make_table (bench/); fail_fast (bench/startup/)
BIN = Path(sys.executable).parent
SIZES = (1, 8, 64)


def ensure_model(out:Path, encoder:str)->Path:
    "A trained model dir under `out` (trained on first use); its SAGEMAKER_BASE_DIR."
    from bsm_nb.synthetic import write_sagemaker_tree
    base = out/f'serve_model_{encoder}'
    if (base/'model'/'bsm_model.json').exists(): return base
    write_sagemaker_tree(base, n_train=600, n_val=200, n_test=400, seed=0)
    args = ['--max_epochs', '1']
    if encoder == 'tiny':
        from bsm_nb.model import save_tiny_bert
        args += ['--pretrained_model', str(save_tiny_bert(out/'tiny_bert'))]
    print(f'training a {encoder} model into {base} ...', file=sys.stderr)
    r = subprocess.run([str(BIN/'bsm-train'), *args], env={**os.environ, 'SAGEMAKER_BASE_DIR': str(base)},
                       capture_output=True, text=True)
    if r.returncode: sys.exit(f'bsm-train failed:\n{r.stderr[-3000:]}')
    return base


def model_in_precision(model_dir:Path, precision:str, out:Path)->Path:
    """`model_dir` as is for `auto`;
    otherwise a copy under `out` (weights linked, not copied) whose config predicts in `precision`."""
    model_dir = Path(model_dir)
    if precision == 'auto': return model_dir
    out = Path(out)
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    for f in model_dir.iterdir():
        if f.name != 'bsm_model.json': (out/f.name).symlink_to(f.resolve())
    meta = json.loads((model_dir/'bsm_model.json').read_text())
    meta['config']['precision'] = precision
    (out/'bsm_model.json').write_text(json.dumps(meta))
    return out


def chunks(rows, size:int, n:int)->list:
    "`n` consecutive chunks of `size` rows, wrapping around the rows."
    idx = np.arange(n * size) % len(rows)
    return [rows.iloc[idx[i*size:(i+1)*size]].reset_index(drop=True) for i in range(n)]


def timed_calls(call, batches:list, seconds:float)->tuple:
    """Call `call(payload)` for each (payload, rows) in turn for about `seconds` (at least 5 calls):
    (latencies, rows, wall)."""
    lat, rows, t0 = [], 0, time.perf_counter()
    for i, (payload, n) in enumerate(batches):
        if i >= 5 and time.perf_counter() - t0 > seconds: break
        s = time.perf_counter(); call(payload); lat.append(time.perf_counter() - s); rows += n
    return lat, rows, time.perf_counter() - t0


def summary(runs:list)->dict:
    "Rows/s and latency percentiles over several `timed_calls` results."
    lat = [l for r in runs for l in r[0]]
    return {'requests': len(lat), 'rows_per_s': sum(r[1] for r in runs) / sum(r[2] for r in runs),
            'p50_ms': 1000 * float(np.percentile(lat, 50)), 'p99_ms': 1000 * float(np.percentile(lat, 99))}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model-dir', type=Path, help='a trained model dir (default: train one into bench/out)')
    p.add_argument('--encoder', choices=['packaged', 'tiny'], default='packaged',
                   help='encoder of the model trained here')
    p.add_argument('--seconds', type=float, default=20, help='seconds per side and size')
    p.add_argument('--workers', type=int, help='MODEL_SERVER_WORKERS (default: bsm-serve decides)')
    p.add_argument('--log', type=Path, default=BENCH/'out'/'serve_bench.log', help="the server's output")
    p.add_argument('--precision', default='auto',
                   help='serve and predict in this precision: auto (bf16 where the CPU has it) or 32-true')
    args = p.parse_args()

    import torch
    from bsm_nb.artifacts import load_bundle
    from bsm_nb.reading import read_data_file
    from bsm_nb.serve import ServeSettings
    from bsm_nb.server import free_port
    args.log.parent.mkdir(parents=True, exist_ok=True)
    if args.model_dir: model_dir, base = args.model_dir, None
    else: base = ensure_model(BENCH/'out', args.encoder); model_dir = base/'model'
    test = (base/'input'/'data'/'test'/'test.csv') if base else None
    model_dir = model_in_precision(model_dir, args.precision, BENCH/'out'/f'serve_model_{args.precision}')
    bundle = load_bundle(model_dir)
    rows = read_data_file(test) if test else None
    if rows is None:
        sys.exit('--model-dir needs test rows: pass a SAGEMAKER_BASE_DIR layout (model/ beside input/data/test/)')
    n_max = {1: 6000, 8: 1500, 64: 300}
    work = {n: chunks(rows, n, n_max[n]) for n in SIZES}
    frames = {n: [(b, len(b)) for b in work[n]] for n in SIZES}
    bodies = {n: [(json.dumps(b.astype(object).where(b.notna(), None).to_dict('records')).encode(), len(b))
                  for b in work[n]] for n in SIZES}
    in_threads, max_len = torch.get_num_threads(), bundle.config.max_seq_length

    port = free_port()
    env = {**os.environ, 'SAGEMAKER_BIND_TO_PORT': str(port), 'BSM_SERVE_HOST': '127.0.0.1',
           **({'MODEL_SERVER_WORKERS': str(args.workers)} if args.workers else {})}
    settings = ServeSettings.from_env(env)
    with open(args.log, 'wb') as log:
        server = subprocess.Popen([str(BIN/'bsm-serve'), '--model-dir', str(model_dir)], env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    url, session = f'http://127.0.0.1:{port}', requests.Session()
    load_before = open('/proc/loadavg').read().split()[:3]
    results = {}
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None: sys.exit(f'bsm-serve exited; see {args.log}')
            try:
                if session.get(f'{url}/ping', timeout=5).status_code == 200: break
            except requests.ConnectionError: pass
            if time.monotonic() > deadline: sys.exit(f'bsm-serve not ready in 300 s; see {args.log}')
            time.sleep(0.25)

        def post(body):
            r = session.post(f'{url}/invocations', data=body, headers={'Content-Type': 'application/json'},
                             timeout=120)
            assert r.status_code == 200, r.text
        # predict_frame runs in a thread of its own, as in a server worker's request thread, with every core
        inference = ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(in_threads,))
        local = lambda df: inference.submit(bundle.predict_frame, df).result()
        for n in SIZES:
            # rounds alternate the two sides on the same chunks, so drifting load on the machine hits both alike;
            # the idle server takes no CPU while the in-process side runs, and the other way round
            for b in frames[n][:3]: local(b[0])
            for b in bodies[n][:3]: post(b[0])
            rounds, runs = 4, {'in_process': [], 'served': []}
            for r in range(rounds):
                part = slice(r * n_max[n] // rounds, (r + 1) * n_max[n] // rounds)
                runs['in_process'].append(timed_calls(local, frames[n][part], args.seconds / rounds))
                runs['served'].append(timed_calls(post, bodies[n][part], args.seconds / rounds))
            results[n] = {k: summary(v) for k, v in runs.items()}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    load_after = open('/proc/loadavg').read().split()[:3]

    cores = len(os.sched_getaffinity(0))
    enc = ('tiny random BERT' if args.encoder == 'tiny' and not args.model_dir
           else ('all-MiniLM-L6-v2' if not args.model_dir else str(model_dir)))
    from fail_fast import cpu_flags
    from make_table import cpu_model
    print(f'\n### Through nginx vs in-process `predict_frame`, precision {args.precision}\n')
    print(f'Machine: {cores} cores, {cpu_model()} ({cpu_flags()}), Python {platform.python_version()}, '
          f'torch {torch.__version__}, '
          f'{"GPU" if torch.cuda.is_available() else "CPU"}. Model: {enc}, max length {max_len}, '
          'synthetic messaging rows (text + 3 categorical + 3 numeric).')
    print(f'Server: {settings.workers} worker(s) x {settings.torch_threads} torch thread(s), JSON requests, '
          'one client on the same machine, '
          'sequential requests on one keep-alive connection. '
          f'In-process: `predict_frame` from a thread, {in_threads} torch threads.\n')
    print('| rows/request | served rows/s | in-process rows/s | served / in-process | served p50 ms | served p99 ms '
          '| in-process p50 ms | in-process p99 ms | p99 overhead ms |')
    print('|---|---|---|---|---|---|---|---|---|')
    for n in SIZES:
        s, i = results[n]['served'], results[n]['in_process']
        print(f'| {n} | {s["rows_per_s"]:.0f} | {i["rows_per_s"]:.0f} | {s["rows_per_s"] / i["rows_per_s"]:.2f}x '
              f'| {s["p50_ms"]:.1f} | {s["p99_ms"]:.1f} | '
              f'{i["p50_ms"]:.1f} | {i["p99_ms"]:.1f} | {s["p99_ms"] - i["p99_ms"]:+.1f} |')
    r64, r1 = results[64], results[1]
    ok64 = r64['served']['rows_per_s'] >= 0.9 * r64['in_process']['rows_per_s']
    ok1 = r1['served']['p99_ms'] <= r1['in_process']['p99_ms'] + 15
    print(f'\nLoad average before / after: {" ".join(load_before)} / {" ".join(load_after)} '
          '(other work on the machine skews both sides alike).')
    print(f'\nGoals: 64 rows/request at >= 0.9x in-process rows/s: {"met" if ok64 else "NOT met"}; '
          f'single-row p99 <= in-process + 15 ms: {"met" if ok1 else "NOT met"}.')
    (BENCH/'out'/f'serve_bench_{args.precision}.json').write_text(json.dumps(
        {'precision': args.precision, 'sizes': {str(k): v for k, v in results.items()}, 'cores': cores,
         'workers': settings.workers, 'torch_threads': settings.torch_threads}, indent=1))


if __name__ == '__main__':
    main()
