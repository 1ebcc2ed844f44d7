"""Data preparation at scale: seconds and peak RSS per row, 10k to 1M synthetic rows.

    .venv/bin/python bench/speed/data_scale.py [--sizes 10000,30000,100000,300000,1000000] [--label NAME]

Preparation is what `train` runs before the model is built, through the library's own functions: `read_splits`
(read the train channel, check every file's rows, check the used fields are filled, hold out 10 % as val),
`fit_processor` (vocabularies, numeric statistics, label list), `encode_split` for train and val (`BSMDataset`:
text cleaned and tokenised with the packaged MiniLM tokenizer at the default max_seq_length, categories, numbers,
labels) and `make_dataloader` for both (the length-bucketing sampler's first epoch included).

Rows come from `bsm_nb.synthetic.make_messaging_cases`, written once as CSV under bench/out/data_scale_cache/
(gitignored; generation is not measured): the largest size is generated in chunks of 100k rows (seeds 0, 1, ...)
and every smaller size is a prefix of it. Each size is prepared in a fresh process (`--child`), so its peak RSS is
its own: the child reports `ru_maxrss` after the imports and the tokenizer (the baseline), after each stage and at
the end, the parent takes the child's `ru_maxrss` from `os.wait4` as well. Stage seconds come from timers wrapped
around the library's functions (nothing of the library is reimplemented here).

Results: one JSON line per run appended to bench/out/data_scale.jsonl; bench/out/data_scale.md holds a table per
label (the newest run of each size), the growth exponents (log-log slope of seconds and of RSS increase against
rows) and the machine. `--report` rewrites the markdown from the JSON lines alone.
"""
from __future__ import annotations
import argparse, functools, json, os, platform, resource, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT/'bench'/'out'
CACHE = OUT/'data_scale_cache'
SIZES = [10_000, 30_000, 100_000, 300_000, 1_000_000]
CHUNK = 100_000
FIELDS = dict(id_name='case_id', text_name=['message'], label_name='label',
              cat_field_list=['marketplace', 'order_status', 'item_category'],
              tab_field_list=['order_amount', 'days_since_order', 'messages_so_far'])
GOAL_S, GOAL_MB = 300, 4096

# ---------------------------------------------------------------- data (not measured)

def channel_base(rows:int)->Path: return CACHE/f'rows_{rows}'

def ensure_data(sizes:list):
    "Write the synthetic CSV of each size once: the largest in chunks, the others as its prefixes."
    from bsm_nb.synthetic import make_messaging_cases
    top = max(sizes)
    full = channel_base(top)/'input'/'data'/'train'/'train.csv'
    if not full.exists():
        full.parent.mkdir(parents=True, exist_ok=True)
        tmp, t = full.with_suffix('.tmp'), time.perf_counter()
        for k, start in enumerate(range(0, top, CHUNK)):
            df = make_messaging_cases(min(CHUNK, top - start), seed=k)
            df.to_csv(tmp, index=False, header=k == 0, mode='w' if k == 0 else 'a')
            print(f'  generated {start + len(df):,} / {top:,} rows ({time.perf_counter() - t:.0f} s)', file=sys.stderr,
                  flush=True)
        tmp.rename(full)
    for n in sizes:
        f = channel_base(n)/'input'/'data'/'train'/'train.csv'
        if f.exists(): continue
        f.parent.mkdir(parents=True, exist_ok=True)
        with open(full, encoding='utf-8', newline='') as src, \
             open(f.with_suffix('.tmp'), 'w', encoding='utf-8', newline='') as dst:
            # a message may hold no newline (the generator writes none), so a row is a line
            for i, line in enumerate(src):
                if i > n: break
                dst.write(line)
        f.with_suffix('.tmp').rename(f)

# ---------------------------------------------------------------- the measured child

def _rss_mb()->float:
    "This process's resident set now, MB."
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'): return int(line.split()[1]) / 1024
    return float('nan')

def _peak_mb()->float: return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 # KB on Linux

def _timed(owner, name:str, key:str, acc:dict):
    "Wrap `owner.name` so that its seconds add up in `acc[key]`; no-op when `owner` has no such attribute."
    fn = getattr(owner, name, None)
    if fn is None: return
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        t = time.perf_counter()
        try: return fn(*a, **kw)
        finally: acc[key] = acc.get(key, 0.0) + time.perf_counter() - t
    setattr(owner, name, wrapper)

class _TimedTokenizer:
    "The tokenizer, its calls timed; everything else passed through."
    def __init__(self, tok, acc:dict): self.__dict__.update(_tok=tok, _acc=acc)
    def __getattr__(self, k): return getattr(self._tok, k)
    def __call__(self, *a, **kw):
        t = time.perf_counter()
        try: return self._tok(*a, **kw)
        finally: self._acc['tokenise'] = self._acc.get('tokenise', 0.0) + time.perf_counter() - t

def child(rows:int)->dict:
    "Prepare `rows` rows as `train` does; the figures as a dict."
    t0 = time.perf_counter()
    import gc, torch
    from bsm_nb import data as D, job as J, reading as R
    from bsm_nb.config import BSMConfig, SageMakerPaths
    from bsm_nb.job import read_splits, encode_split
    from bsm_nb.distributed import fit_processor
    from bsm_nb.model import resolve_encoder, load_tokenizer
    cfg = BSMConfig(**FIELDS)
    paths = SageMakerPaths.from_env({'SAGEMAKER_BASE_DIR': str(channel_base(rows))})
    torch.set_num_threads(cfg.num_threads or os.cpu_count() or 1) # as run_training does
    acc = {}
    tokenizer = _TimedTokenizer(load_tokenizer(resolve_encoder(cfg, paths.channel('pretrained'))), acc)
    for name, key in [('read_data_file', 'read_files'), ('check_rows', 'check_rows'), ('check_filled', 'check_filled'),
                      ('split_train_val', 'split')]:
        # read_channel calls these in bsm_nb.reading and bsm_nb.data, read_splits through bsm_nb.job's imports
        for owner in (D, R, J): _timed(owner, name, key, acc)
    for name, key in [('texts', 'clean'), ('encode', 'encode')]: _timed(D.FeatureProcessor, name, key, acc)
    gc.collect()
    setup_s, base_peak, base_rss, cpu0 = time.perf_counter() - t0, _peak_mb(), _rss_mb(), time.process_time()
    stages, peaks = {}, {}
    def stage(name, fn):
        t = time.perf_counter(); out = fn()
        stages[name], peaks[name] = time.perf_counter() - t, _peak_mb()
        return out
    splits = stage('read', lambda: read_splits(cfg, paths))
    processor = stage('fit', lambda: fit_processor(splits['train'], cfg, tokenizer, None))
    data = stage('dataset', lambda: {k: encode_split(k, v, cfg, processor) for k, v in splits.items()})
    pad_id = getattr(tokenizer, 'pad_token_id', 0) or 0
    def loaders():
        out = {k: D.make_dataloader(ds, cfg, train=k == 'train', pad_id=pad_id) for k, ds in data.items()}
        return {k: len(dl) for k, dl in out.items()} # the sampler's batches of the first epoch
    batches = stage('loaders', loaders)
    total, cpu_s = sum(stages.values()), time.process_time() - cpu0
    gc.collect()
    tok_s, clean_s, enc_s = acc.get('tokenise', 0.0), acc.get('clean', 0.0), acc.get('encode', 0.0)
    sub = {'read_files': acc.get('read_files', 0.0), 'check_rows': acc.get('check_rows', 0.0),
           'check_filled': acc.get('check_filled', 0.0),
           'split': acc.get('split', 0.0), 'clean': clean_s, 'tokenise': tok_s, 'encode_tab': enc_s - clean_s - tok_s,
           'dataset_rest': stages['dataset'] - enc_s}
    first = data['train'][0]
    return dict(rows=rows, split_rows={k: len(v) for k, v in data.items()}, batches=batches, total_s=total, cpu_s=cpu_s,
                setup_s=setup_s, library=str(Path(D.__file__).parent),
                TOKENIZERS_PARALLELISM=os.environ.get('TOKENIZERS_PARALLELISM', '(unset)'),
                stages=stages, sub=sub, baseline_peak_mb=base_peak, baseline_rss_mb=base_rss, peak_mb=_peak_mb(),
                peak_after=peaks,
                kept_rss_mb=_rss_mb(), ids_type=type(first.get('input_ids')).__name__,
                ids_dtype=str(getattr(first.get('input_ids'), 'dtype', type(first.get('input_ids', [0])[0]).__name__)))

# ---------------------------------------------------------------- the parent

def machine()->dict:
    "CPU model, the flags that matter for speed, cores, library versions."
    info = {}
    try:
        text = open('/proc/cpuinfo').read()
        for line in text.splitlines():
            k, _, v = line.partition(':')
            if k.strip() == 'model name' and 'cpu' not in info: info['cpu'] = v.strip()
            if k.strip() == 'flags' and 'flags' not in info:
                have = set(v.split())
                info['flags'] = [f for f in ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16', 'amx_tile', 'amx_int8')
                                 if f in have]
    except OSError: pass
    info['cores'] = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    info['python'] = platform.python_version()
    import importlib.metadata as md
    info['versions'] = {p: md.version(p) for p in ('pandas', 'numpy', 'pyarrow', 'tokenizers', 'transformers', 'torch')}
    return info

def child_env(library:Path, parallelism:str)->dict:
    """The child's environment: the library to measure first on the path;
    the tokenizer's threads as asked (`container`: unset, as in the image)."""
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'PYTHONPATH': os.pathsep.join([str(library), str(ROOT)])}
    env.pop('TOKENIZERS_PARALLELISM', None)
    if parallelism != 'container': env['TOKENIZERS_PARALLELISM'] = parallelism
    return env

def run_child(rows:int, timeout:int, env:dict)->dict:
    "One fresh process for `rows`; its own figures and the peak RSS the kernel reports for it." 
    res = OUT/f'.data_scale_child_{os.getpid()}.json'
    res.unlink(missing_ok=True)
    p = subprocess.Popen([sys.executable, __file__, '--child', str(rows), '--child-out', str(res)], env=env, cwd=ROOT)
    t, load = time.perf_counter(), os.getloadavg()[0]
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid: break
        if time.perf_counter() - t > timeout: p.kill()
        time.sleep(0.2)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode: raise SystemExit(f'child for {rows:,} rows failed with exit code {p.returncode}')
    r = json.loads(res.read_text()); res.unlink()
    r.update(wait4_peak_mb=usage.ru_maxrss / 1024, wait4_cpu_s=usage.ru_utime + usage.ru_stime, load_before=load,
             load_after=os.getloadavg()[0])
    return r

def slope(xs:list, ys:list)->float|None:
    "Least-squares slope of log y against log x."
    import numpy as np
    pts = [(x, y) for x, y in zip(xs, ys) if x > 0 and y and y > 0]
    if len(pts) < 2: return None
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])

def verdict(s:float|None)->str:
    "The slope and what it says: below 0.9 a fixed cost still shows, 0.9 to 1.1 linear, above 1.1 faster than linear."
    if s is None: return 'n/a'
    return (f'{s:.2f} '
            f'({"sublinear: a fixed cost still shows" if s < 0.9 else "linear" if s <= 1.1 else "faster than linear"})')

def line_fit(xs:list, ys:list)->tuple|None:
    "(fixed, per row) of the least-squares line y = fixed + per_row * x."
    import numpy as np
    if len(xs) < 2: return None
    b, a = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(a), float(b)

def table(runs:list)->list:
    "Markdown lines: one row per size, then the growth exponents."
    cols = ['rows', 'total s', 's / 1k rows', 'CPU s', 'read', 'fit', 'clean', 'tokenise', 'encode tab', 'dataset rest',
            'loaders',
            'peak RSS MB', 'baseline MB', 'Δ peak MB', 'Δ peak B/row', 'kept MB', 'load', 'goal']
    lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    for r in runs:
        st, sub, d = r['stages'], r['sub'], r['wait4_peak_mb'] - r['baseline_peak_mb']
        goal = (('met' if r['total_s'] <= GOAL_S and r['wait4_peak_mb'] <= GOAL_MB else 'missed')
                if r['rows'] >= 1_000_000 else '')
        lines.append('| ' + ' | '.join([
            f"{r['rows']:,}", f"{r['total_s']:.1f}", f"{1000 * r['total_s'] / r['rows']:.3f}", f"{r['cpu_s']:.1f}",
            f"{st['read']:.1f}", f"{st['fit']:.1f}", f"{sub['clean']:.1f}", f"{sub['tokenise']:.1f}",
            f"{sub['encode_tab']:.1f}", f"{sub['dataset_rest']:.1f}", f"{st['loaders']:.1f}",
            f"{r['wait4_peak_mb']:,.0f}", f"{r['baseline_peak_mb']:,.0f}",
            f"{d:,.0f}", f"{d * 2**20 / r['rows']:,.0f}", f"{r['kept_rss_mb']:,.0f}", f"{r['load_before']:.1f}", goal])
            + ' |')
    rows = [r['rows'] for r in runs]
    lines.append('')
    lines.append(f"Growth (log-log slope against rows, all sizes): "
                 f"time {verdict(slope(rows, [r['total_s'] for r in runs]))}; "
                 f"Δ peak RSS {verdict(slope(rows, [r['wait4_peak_mb'] - r['baseline_peak_mb'] for r in runs]))}.")
    big = [r for r in runs if r['rows'] >= 100_000]
    if len(big) >= 2:
        b = [r['rows'] for r in big]
        lines.append(f"From 100k rows on: time {verdict(slope(b, [r['total_s'] for r in big]))}; "
                     f"Δ peak RSS {verdict(slope(b, [r['wait4_peak_mb'] - r['baseline_peak_mb'] for r in big]))}.")
        per = {k: slope(b, [r['stages'].get(k) or r['sub'].get(k) for r in big])
               for k in ('read', 'fit', 'clean', 'tokenise', 'encode_tab', 'dataset_rest', 'loaders')}
        lines.append('Per stage, from 100k rows on: '
                     + ', '.join(f'{k} {v:.2f}' for k, v in per.items() if v is not None) + '.')
    t, m = (line_fit(rows, [r['total_s'] for r in runs]),
            line_fit(rows, [r['wait4_peak_mb'] - r['baseline_peak_mb'] for r in runs]))
    if t and m:
        lines.append(f"Straight line through all sizes: {t[0]:.1f} s + {1000 * t[1]:.3f} s per 1k rows, "
                     f"Δ peak {m[0]:,.0f} MB + {m[1] * 2**20:,.0f} B per row; "
                     f"at 1M rows {t[0] + t[1] * 1e6:,.0f} s and "
                     f"{runs[0]['baseline_peak_mb'] + m[0] + m[1] * 1e6:,.0f} MB peak "
                     f"(goal {GOAL_S} s, {GOAL_MB:,} MB).")
    sub = runs[-1]['sub']
    lines.append(f"Largest run's parts of read: files {sub['read_files']:.1f} s, row checks {sub['check_rows']:.1f} s, "
                 f"filled check {sub['check_filled']:.1f} s, val split {sub['split']:.1f} s; "
                 f"token ids held as {runs[-1]['ids_type']} of {runs[-1]['ids_dtype']}; "
                 f"TOKENIZERS_PARALLELISM={runs[-1]['TOKENIZERS_PARALLELISM']}; library {runs[-1]['library']}.")
    return lines

def report(path:Path=OUT/'data_scale.jsonl')->str:
    "The markdown of every label in the JSON lines (the newest run of each size)."
    recs = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    labels = list(dict.fromkeys(r['label'] for r in recs))
    m = recs[-1]['machine']
    out = ['# Data preparation at scale', '',
           f"Machine: {m.get('cpu', '?')}; "
           f"flags {', '.join(m.get('flags', [])) or 'none of avx2/avx512f/avx512_bf16/amx'}; "
           f"{m['cores']} cores; Python {m['python']}; "
           + ', '.join(f'{k} {v}' for k, v in m['versions'].items()) + '.', '',
           'Preparation = `read_splits` (read the train channel, check rows, check filled fields, '
           'hold out 10 % as val) + `fit_processor` + '
           '`encode_split` of train and val (`BSMDataset`: clean, tokenise with the packaged MiniLM tokenizer at '
           'max_seq_length 128, '
           'categories, numbers, labels) + `make_dataloader` of both. Each size in a fresh process; '
           'peak RSS from `wait4`, '
           'baseline = peak after the imports and the tokenizer; Δ = peak − baseline; kept = RSS at the end, '
           'with every split still held; '
           'CPU s = the process\'s CPU seconds over the stages (all threads); '
           'load = the 1-minute load average when the run started (other work on the machine). '
           f'Goal: 1M rows in ≤ {GOAL_S} s with ≤ {GOAL_MB:,} MB peak RSS (the goal column); '
           'a straight line through all sizes says where the smaller ones point.',
           '', 'Rerun: `.venv/bin/python bench/speed/data_scale.py --label NAME` '
           '(`--report` rebuilds this file from bench/out/data_scale.jsonl).']
    for lab in labels:
        runs = {}
        for r in recs:
            if r['label'] == lab: runs[r['rows']] = r
        out += ['', f'## {lab}', ''] + table([runs[k] for k in sorted(runs)])
    return '\n'.join(out) + '\n'

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--sizes', default=','.join(map(str, SIZES)), help='comma-separated row counts')
    ap.add_argument('--label', default='current', help='name of this series in the outputs (e.g. before, after)')
    ap.add_argument('--timeout', type=int, default=3600, help='seconds one size may take')
    ap.add_argument('--library', type=Path, default=ROOT,
                    help='a directory holding the bsm_nb package to measure (e.g. a git worktree of another commit)')
    ap.add_argument('--tokenizers-parallelism', choices=['container', 'true', 'false'], default='container',
                    help="TOKENIZERS_PARALLELISM for the child; container: unset, as `train` runs in the image "
                         "(the tokenizer uses every core)")
    ap.add_argument('--child', type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument('--child-out', default=None, help=argparse.SUPPRESS)
    ap.add_argument('--report', action='store_true', help='only rebuild the markdown from the JSON lines')
    a = ap.parse_args(argv)
    if a.child is not None:
        Path(a.child_out).write_text(json.dumps(child(a.child)))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    if not a.report:
        sizes = sorted(int(s.replace('_', '')) for s in a.sizes.split(','))
        ensure_data(sizes)
        info = machine()
        for n in sizes:
            r = run_child(n, a.timeout, child_env(a.library.resolve(), a.tokenizers_parallelism))
            r.update(label=a.label, machine=info, when=time.strftime('%Y-%m-%d %H:%M:%S'))
            with open(OUT/'data_scale.jsonl', 'a') as f: f.write(json.dumps(r) + '\n')
            print(f"{a.label}: {n:>9,} rows  {r['total_s']:7.1f} s  peak {r['wait4_peak_mb']:7,.0f} MB  "
                  f"(Δ {r['wait4_peak_mb'] - r['baseline_peak_mb']:,.0f} MB)  "
                  + ' '.join(f'{k} {v:.1f}' for k, v in {**r['stages'], **r['sub']}.items()),
                  file=sys.stderr, flush=True)
    md = report()
    (OUT/'data_scale.md').write_text(md)
    print(md)

if __name__ == '__main__': main()
