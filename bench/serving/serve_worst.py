"""The worst requests one bsm-serve worker can be sent: its peak memory (RSS) and the time to the answer.

    .venv/bin/python bench/serving/serve_worst.py [--encoder packaged|tiny] [--model-dir BASE] [--max-delta-mb 64]

One worker behind nginx on loopback, SageMaker's 6 MB payload limit. Each request is sent alone; before it the worker's
peak RSS is reset (`echo 5 > /proc/PID/clear_refs`, so this needs to own the worker: run as the user that starts
bsm-serve) and after it VmHWM is read: the most the worker held while answering. The requests:

- 6 MB of tiny records as CSV, JSON, `{"instances": ...}` and JSON Lines: far over the row limit, refused with 413 from
  the count on the text, before parsing. The benchmark fails (exit 1) if one of them is not a 413 or raises the
  worker's peak RSS by more than --max-delta-mb;
- a single 6 MB text field (one row);
- the max-rows request: as many of the slowest rows (every text filling max_seq_length) as the limit allows and 6 MB
  hold;
- one ordinary row, for scale.

Without --model-dir it uses (and trains once) the model of bench/serving/serve_bench.py. Prints a Markdown table naming
the CPU and its flags. Not a test: the numbers depend on the machine.
"""
import argparse, json, os, re, signal, sys, time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
sys.path[:0] = [str(HERE), str(BENCH), str(BENCH/'startup')] # serve_*; make_table (bench/); fail_fast (bench/startup/)
from fail_fast import cpu_flags # noqa: E402
from make_table import cpu_model # noqa: E402
from serve_bench import ensure_model # noqa: E402
from serve_load import start_server # noqa: E402

BIN = Path(sys.executable).parent
MB = 2**20
BODY_MAX = 6 * MB - 64 # under nginx's client_max_body_size 6m


def children(pid:int)->list:
    "Direct children of `pid`, from /proc."
    out = []
    for d in Path('/proc').iterdir():
        if d.name.isdigit():
            try:
                if int((d/'stat').read_text().rsplit(')', 1)[1].split()[1]) == pid: out.append(int(d.name))
            except (OSError, IndexError, ValueError): pass
    return out


def gunicorn_worker(launcher:int)->int:
    "The pid of the one gunicorn worker under the bsm-serve launcher."
    for p in children(launcher):
        if b'run_app_server' in Path(f'/proc/{p}/cmdline').read_bytes():
            kids = children(p)
            if kids: return kids[0]
    raise RuntimeError('no gunicorn worker found')


def status_kb(pid:int, key:str)->int:
    line = next(l for l in Path(f'/proc/{pid}/status').read_text().splitlines() if l.startswith(key + ':'))
    return int(line.split()[1])


def fill(unit:bytes, head:bytes=b'', tail:bytes=b'')->bytes:
    "`head`, then `unit` as many times as fit in BODY_MAX, then `tail`."
    return head + unit * ((BODY_MAX - len(head) - len(tail)) // len(unit)) + tail


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model-dir', type=Path,
                   help='a SAGEMAKER_BASE_DIR with model/ (default: bench/out/serve_model_<encoder>)')
    p.add_argument('--encoder', choices=['packaged', 'tiny'], default='packaged')
    p.add_argument('--max-delta-mb', type=float, default=64,
                   help='the most a refused (413) request may raise the peak RSS')
    args = p.parse_args()

    from bsm_nb.artifacts import load_bundle
    from bsm_nb.protocol import longest_rows
    base = args.model_dir or ensure_model(BENCH/'out', args.encoder)
    config = load_bundle(base/'model', device='cpu').config
    log = BENCH/'out'/'serve_worst.log'
    log.parent.mkdir(parents=True, exist_ok=True)
    server, url = start_server(base/'model', log, {'MODEL_SERVER_WORKERS': '1'})
    rows = []
    try:
        limit = int(re.search(r'at most (\d+) rows a request', log.read_text())[1])
        worker = gunicorn_worker(server.pid)
        slow = longest_rows(config, 1).to_csv(index=False, header=False).encode()
        n_max = min(limit, (BODY_MAX - 200) // len(slow))
        cases = [ # (name, body, content type, refused before parsing)
            ('6 MB of tiny CSV rows', fill(b'a\n', b'message\n'), 'text/csv', True),
            ('6 MB of tiny JSON records', fill(b'{"message":"a"},', b'[', b'{}]'), 'application/json', True),
            ('6 MB of tiny records in {"instances": [...]}', fill(b'{"message":"a"},', b'{"instances":[', b'{}]}'),
             'application/json', True),
            ('6 MB of tiny JSON Lines', fill(b'{"message":"a"}\n'), 'application/jsonlines', True),
            ('one 6 MB text field', fill(b'word ', b'message\n"', b'"\n'), 'text/csv', False),
            (f'max-rows request: {n_max} slowest rows', longest_rows(config, n_max).to_csv(index=False).encode(),
             'text/csv', False),
            ('one ordinary row', b'message\nwhere is my order?\n', 'text/csv', False)]
        session, failed = requests.Session(), []
        for name, body, ctype, refused in cases:
            Path(f'/proc/{worker}/clear_refs').write_text('5') # peak RSS := current RSS
            before = status_kb(worker, 'VmRSS')
            t0 = time.perf_counter()
            r = session.post(f'{url}/invocations', data=body, headers={'Content-Type': ctype}, timeout=120)
            ms = 1000 * (time.perf_counter() - t0)
            peak = status_kb(worker, 'VmHWM')
            delta = (peak - before) / 1024
            answer = (r.json().get('error', '')[:90] if r.status_code != 200
                      else f'{len(r.json()["predictions"])} predictions')
            rows.append((name, len(body) / MB, r.status_code, ms, before / 1024, peak / 1024, delta, answer))
            if refused and (r.status_code != 413 or delta > args.max_delta_mb): failed.append(name)
            assert worker == gunicorn_worker(server.pid), 'the worker was replaced mid-benchmark'
    finally:
        server.send_signal(signal.SIGTERM); server.wait(60)
    print(f'\n### The worst requests for one worker (`bench/serving/serve_worst.py`, {args.encoder} encoder, '
          f'max length {config.max_seq_length})\n')
    print(f'Machine: {len(os.sched_getaffinity(0))} cores, {cpu_model()} ({cpu_flags()}). '
          f'One worker, {limit} rows a request '
          f'(measured at load), 6 MB payload limit; peak RSS reset before each request.\n')
    print('| request | body MB | status | time ms | worker RSS before MB | peak RSS MB | peak - before MB | answer |')
    print('|---|---|---|---|---|---|---|---|')
    for name, mb, status, ms, before, peak, delta, answer in rows:
        print(f'| {name} | {mb:.1f} | {status} | {ms:.0f} | {before:.0f} | {peak:.0f} | {delta:+.1f} | {answer} |')
    print(f'\nRefused requests within +{args.max_delta_mb:g} MB of peak RSS and answered 413: '
          f'{"yes" if not failed else "NO: " + ", ".join(failed)}.')
    (BENCH/'out'/'serve_worst.json').write_text(json.dumps(rows, indent=1))
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
