"""bsm-serve under load and overload, through nginx + gunicorn on loopback: errors, shedding and latency.

    .venv/bin/python bench/serving/serve_load.py [--model-dir BASE] [--seconds 60] [--clients 16]
                                         [--workers N --torch-threads T] [--precision auto|32-true]
                                         [--phase load,overload] [--out bench/out/serve_load.jsonl]

load:     `--clients` clients, each in a bounded loop for `--seconds`: a request of 1-64 rows (random, JSON), wait for
          the answer, repeat. Counts requests and errors, p50/p99 latency, and the slowest `/ping`
          (pinged every 0.25 s).
overload: 4 x as many clients, same loop, plus one request of 10,000 rows sent 5 s in. Reports the answered requests'
          p50/p99, how fast the shed ones came back, what became of the 10,000 rows, and requests that hung (no answer
          within the timeout + 10 s).
A client that gets a 503 (load shed) waits as its Retry-After says (at most 5 s) before its next request, as a
well-behaved client does.

Without --model-dir it uses (and trains once) the MiniLM model of bench/serving/serve_bench.py. Each run appends one
JSON line per phase to --out and prints Markdown rows with the CPU model, its flags and the precision served. Not a
test: the numbers depend on the machine; run it on a quiet one.
"""
import argparse, json, os, subprocess, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
sys.path[:0] = [str(HERE), str(BENCH), str(BENCH/'startup')] # serve_*; make_table (bench/); fail_fast (bench/startup/)
from fail_fast import cpu_flags # noqa: E402
from make_table import cpu_model # noqa: E402
from serve_bench import ensure_model, model_in_precision # noqa: E402
from bsm_nb.server import free_port # noqa: E402

BIN = Path(sys.executable).parent


def start_server(model_dir:Path, log:Path, env:dict)->tuple:
    "bsm-serve on a free loopback port, waited for until /ping says ready: (process, url)."
    port = free_port()
    env = {**os.environ, 'SAGEMAKER_BIND_TO_PORT': str(port), 'BSM_SERVE_HOST': '127.0.0.1', **env}
    with open(log, 'wb') as out:
        proc = subprocess.Popen([str(BIN/'bsm-serve'), '--model-dir', str(model_dir)], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url, deadline = f'http://127.0.0.1:{port}', time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None: sys.exit(f'bsm-serve exited; see {log}')
        try:
            if requests.get(f'{url}/ping', timeout=5).status_code == 200: return proc, url
        except requests.ConnectionError: pass
        time.sleep(0.25)
    proc.kill(); sys.exit(f'bsm-serve not ready in 300 s; see {log}')


def bodies(rows, n:int, seed:int)->list:
    "`n` JSON bodies of 1-64 consecutive rows each: (body, rows)."
    rng, recs = np.random.default_rng(seed), rows.astype(object).where(rows.notna(), None).to_dict('records')
    out = []
    for size, start in zip(rng.integers(1, 65, n), rng.integers(0, len(recs), n)):
        chunk = [recs[(start + i) % len(recs)] for i in range(size)]
        out.append((json.dumps(chunk).encode(), int(size)))
    return out


def run_clients(url:str, n_clients:int, seconds:float, work:list, timeout:float, extra=None)->dict:
    """Clients in bounded loops for `seconds`, a pinger beside them; `extra()` runs in a thread of its own.
    Raw outcomes."""
    stop_at, results, pings, lock = time.monotonic() + seconds, [], [], threading.Lock()

    def client(k):
        s, i = requests.Session(), k
        while time.monotonic() < stop_at:
            body, n = work[i % len(work)]; i += n_clients
            t0 = time.perf_counter()
            try:
                r = s.post(f'{url}/invocations', data=body, headers={'Content-Type': 'application/json'},
                           timeout=timeout + 10)
                out = (r.status_code, time.perf_counter() - t0, n, r.headers.get('Retry-After'))
            except requests.RequestException as e: out = (type(e).__name__, time.perf_counter() - t0, n, None)
            with lock: results.append(out)
            # as a well-behaved client does: back off as Retry-After says
            if out[0] == 503: time.sleep(min(5, int(out[3] or 1)))

    def pinger():
        s = requests.Session()
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            try: status = s.get(f'{url}/ping', timeout=30).status_code
            except requests.RequestException as e: status = type(e).__name__
            pings.append((status, time.perf_counter() - t0))
            time.sleep(0.25)

    with ThreadPoolExecutor(n_clients + 2) as ex:
        futures = [ex.submit(client, k) for k in range(n_clients)] + [ex.submit(pinger)]
        big = ex.submit(extra) if extra else None
        for f in futures: f.result()
        big = big.result() if big else None
    return {'results': results, 'pings': pings, 'big': big}


def summarise(raw:dict, seconds:float, timeout:float)->dict:
    res = raw['results']
    ok = [r for r in res if r[0] == 200]
    shed = [r for r in res if r[0] == 503]
    other = [r for r in res if r[0] not in (200, 503)]
    pct = lambda xs, q: round(1000 * float(np.percentile(xs, q)), 1) if xs else None
    return {'requests': len(res), 'answered': len(ok), 'shed_503': len(shed), 'errors': len(other),
            'hung': sum(1 for r in res if r[0] == 'ReadTimeout' or r[1] > timeout),
            'error_kinds': sorted({str(r[0]) for r in other}), 'rows_per_s': round(sum(r[2] for r in ok) / seconds, 1),
            'p50_ms': pct([r[1] for r in ok], 50), 'p99_ms': pct([r[1] for r in ok], 99),
            'max_ms': pct([r[1] for r in ok], 100),
            'shed_p99_ms': pct([r[1] for r in shed], 99), 'shed_max_ms': pct([r[1] for r in shed], 100),
            'shed_with_retry_after': sum(1 for r in shed if r[3]),
            'slowest_ping_ms': pct([p[1] for p in raw['pings']], 100),
            'pings_not_200': sum(1 for p in raw['pings'] if p[0] != 200),
            'big': raw['big']}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model-dir', type=Path,
                   help='a SAGEMAKER_BASE_DIR with model/ and input/data/test/ '
                        '(default: bench/out/serve_model_packaged)')
    p.add_argument('--seconds', type=float, default=60)
    p.add_argument('--clients', type=int, default=16,
                   help='clients in the load phase; the overload phase has 4 x as many')
    p.add_argument('--workers', type=int, help='MODEL_SERVER_WORKERS (default: bsm-serve decides)')
    p.add_argument('--torch-threads', type=int, help='BSM_TORCH_THREADS (default: bsm-serve decides)')
    p.add_argument('--precision', default='auto',
                   help="serve in this precision: auto (bf16 where the CPU has it) or 32-true")
    p.add_argument('--phase', default='load,overload')
    p.add_argument('--out', type=Path, default=BENCH/'out'/'serve_load.jsonl')
    args = p.parse_args()

    from bsm_nb.reading import read_data_file
    from bsm_nb.serve import ServeSettings
    base = args.model_dir or ensure_model(BENCH/'out', 'packaged')
    model_dir = model_in_precision(base/'model', args.precision, BENCH/'out'/f'serve_model_{args.precision}')
    rows = read_data_file(base/'input'/'data'/'test'/'test.csv')
    env = {k: str(v) for k, v in (('MODEL_SERVER_WORKERS', args.workers), ('BSM_TORCH_THREADS', args.torch_threads))
           if v}
    settings = ServeSettings.from_env({**os.environ, **env})
    log = BENCH/'out'/'serve_load.log'
    proc, url = start_server(model_dir, log, env)
    limit = int(next(ln for ln in log.read_text().splitlines() if 'rows a request' in ln)
                .split('at most ')[1].split()[0])
    cpu = f'{os.cpu_count()} cores, {cpu_model()} ({cpu_flags()})'
    lines = []
    try:
        for phase in args.phase.split(','):
            load = open('/proc/loadavg').read().split()[:3]
            if phase == 'load':
                raw = run_clients(url, args.clients, args.seconds, bodies(rows, 4000, 0), settings.timeout)
            else:
                big_body = json.dumps([{'message': 'a short note about an order', 'marketplace': 'US'}]
                                      * 10_000).encode()
                def big():
                    time.sleep(5)
                    t0 = time.perf_counter()
                    try:
                        r = requests.post(f'{url}/invocations', data=big_body,
                                          headers={'Content-Type': 'application/json'}, timeout=settings.timeout + 10)
                        return {'status': r.status_code, 'ms': round(1000 * (time.perf_counter() - t0), 1),
                                'answer': r.text[:200]}
                    except requests.RequestException as e:
                        return {'status': type(e).__name__, 'ms': round(1000 * (time.perf_counter() - t0), 1)}
                raw = run_clients(url, 4 * args.clients, args.seconds, bodies(rows, 4000, 1), settings.timeout, big)
            row = {'phase': phase, 'clients': args.clients * (1 if phase == 'load' else 4), 'seconds': args.seconds,
                   'precision': args.precision,
                   'workers': settings.workers, 'torch_threads': settings.torch_threads, 'threads': settings.threads,
                   'max_queue': settings.max_queue,
                   'row_limit': limit, 'cpu': cpu, 'load_at_start': ' '.join(load),
                   'when': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
                   **summarise(raw, args.seconds, settings.timeout)}
            lines.append(row)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with open(args.out, 'a') as f: f.write(json.dumps(row) + '\n')
            print(json.dumps(row), flush=True)
    finally:
        proc.terminate(); proc.wait(60)
    print('\n| phase | clients | precision | workers x torch threads | requests | answered | shed 503 | errors | hung '
          '| answered rows/s | p50 ms | p99 ms | shed p99 ms | slowest /ping ms | 10,000 rows | CPU (flags) |')
    print('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|')
    for r in lines:
        big = f"{r['big']['status']} in {r['big']['ms']:.0f} ms" if r['big'] else '—'
        print(f"| {r['phase']} | {r['clients']} | {r['precision']} | {r['workers']} x {r['torch_threads']} "
              f"| {r['requests']} | {r['answered']} | {r['shed_503']} | "
              f"{r['errors']} | {r['hung']} | {r['rows_per_s']} | {r['p50_ms']} | {r['p99_ms']} "
              f"| {r['shed_p99_ms'] or '—'} | {r['slowest_ping_ms']} | {big} | {r['cpu']} |")


if __name__ == '__main__':
    main()
