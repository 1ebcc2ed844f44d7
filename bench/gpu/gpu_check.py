"""The GPU check (training speed, serving, MFU against a 40 % goal), three parts whose figures all go to one JSON file
(written again after each part, so that a run stopped half-way still leaves what it measured):

1. train: the exported train program (`bsm_nb.entrypoint:main`, the `bsm-train` console script) on a synthetic SageMaker
   tree (`python -m bsm_nb.synthetic`), with `pretrained_model` pointing at the encoder carried as an fp16 copy
   (bench/gpu/gpu_inputs.py); figures from the model dir's metrics.json, peak memory and the GPU from the process
   itself.
2. serve: the trained model dir loaded the way the server loads it (`bsm_nb.serve.create_app`, settings from the
   environment as `bsm-serve` reads them), asked through Flask's test client in this process (no nginx, no gunicorn):
   /ping, a CSV and a JSON request to /invocations, rows/s of one large request, latency of one-row requests.
3. mfu: a BERT-base-sized encoder (random weights) trained on random tokens: fp32 weights, bf16 autocast (as Lightning's
   bf16-mixed), SDPA attention, optionally torch.compile and fused AdamW; MFU = 6 x non-embedding params x tokens / step
   time / peak. A sweep of cheaper variants (eager, other batch, foreach AdamW) runs first, then the default
   configuration.

    bash bench/gpu/gpu_check.sh [--smoke]                                  # the usual way: see the comment at its top
    python bench/gpu/gpu_check.py --profile gpu|smoke [--device cpu] [--out FILE] [--n-train N] [--mfu-layers N] ...

`--profile gpu` is the real check (H200/H100, about 4-5 minutes); `--profile smoke` runs the same code on CPU in well
under a minute with a tiny random BERT (CI runs it through tests/test_gpu_check.py). Every option overrides the
profile's value, so `--profile gpu --device cpu` with small sizes runs the GPU profile's code paths (fp16 encoder,
bf16-mixed, compile, fused AdamW) on a CPU.
"""
from __future__ import annotations
import argparse, gc, json, math, os, platform, resource, shutil, statistics, subprocess, sys, tempfile, time, traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC_PEAK_TFLOPS = 790 # dense bf16 matrix rate measured on this workplace's H200s (KINDS.md), the MFU goal's reference

PROFILES = {
    'gpu': dict(device='cuda', encoder=str(ROOT/'.gpu_inputs'/'minilm-fp16'), precision='bf16-mixed',
                n_train=40000, n_val=4000, n_test=4000, epochs=2, batch_size=128, train_timeout=240,
                serve_large_rows=20000, serve_small=200, serve_repeats=2, serve_batch_size=0,
                mfu_hidden=768, mfu_layers=12, mfu_heads=12, mfu_intermediate=3072, mfu_seq=512, mfu_batch=128,
                mfu_compile=True, mfu_fused=True, mfu_bf16=True,
                mfu_sweep='eager:128:foreach,eager:128:fused,eager:64:fused,eager:256:fused',
                mfu_warmup=3, mfu_steps=20, mfu_budget=180, matmul_size=8192, peak_tflops=SPEC_PEAK_TFLOPS,
                mfu_goal=0.40, deadline=450, threads=0),
    'smoke': dict(device='cpu', encoder='tiny', precision='32-true',
                  n_train=240, n_val=60, n_test=60, epochs=1, batch_size=32, train_timeout=150,
                  serve_large_rows=300, serve_small=10, serve_repeats=1, serve_batch_size=0,
                  mfu_hidden=64, mfu_layers=2, mfu_heads=2, mfu_intermediate=256, mfu_seq=64, mfu_batch=4,
                  mfu_compile=False, mfu_fused=False, mfu_bf16=False, mfu_sweep='',
                  mfu_warmup=2, mfu_steps=5, mfu_budget=60, matmul_size=256, peak_tflops=SPEC_PEAK_TFLOPS,
                  mfu_goal=None, deadline=150,
                  # one thread: CI machines and this one share their few cores, and oversubscribed torch threads crawl
                  threads=1),
}

# figures that must be finite and positive for the check to pass (the test asserts the same)
REQUIRED = {'train': ['samples_per_s', 'predict_rows_per_s', 'test_auroc', 'peak_mem_gib', 'wall_s', 'process_wall_s'],
            'serve': ['large_rows_per_s', 'small_p50_ms', 'small_p90_ms', 'load_s'],
            'mfu': ['mfu', 'tflops', 'step_ms', 'tokens_per_s', 'non_embedding_params', 'peak_mem_gib',
                    'matmul_tflops']}


def log(msg:str): print(f'[gpu_check {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def sig(x:float, n:int=4)->float:
    "`x` to `n` significant figures: small figures (a CPU's MFU) stay positive."
    return float(f'{x:.{n}g}')


def positive(v)->bool: return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


# ---------------------------------------------------------------------------------------------------------- options
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--profile', choices=sorted(PROFILES), default='gpu', help='defaults for everything below')
    p.add_argument('--out', type=Path,
                   help='the JSON file (default $OUT/gpu_check.json, else bench/out/gpu_check_<profile>.json)')
    p.add_argument('--workdir', type=Path,
                   help='synthetic tree, model dir, logs (default a fresh temporary folder, removed at the end)')
    p.add_argument('--keep', action='store_true', help='keep the temporary workdir')
    p.add_argument('--parts', default='train,serve,mfu', help='which parts to run (serve needs train)')
    p.add_argument('--device', choices=['cuda', 'cpu'])
    p.add_argument('--deadline', type=float, help='seconds for everything; parts are cut short to end within it')
    g = p.add_argument_group('train')
    g.add_argument('--encoder',
                   help="encoder folder for pretrained_model, or 'tiny' for a tiny random BERT written here")
    g.add_argument('--precision', help='hyperparameter precision of the train program')
    g.add_argument('--n-train', type=int); g.add_argument('--n-val', type=int); g.add_argument('--n-test', type=int)
    g.add_argument('--epochs', type=int); g.add_argument('--batch-size', type=int)
    g.add_argument('--train-timeout', type=float, help='seconds before the train program is stopped')
    g.add_argument('--threads', type=int,
                   help="torch CPU threads of every part (the train program's num_threads); 0 = all cores")
    g = p.add_argument_group('serve')
    g.add_argument('--serve-large-rows', type=int, help='rows of the large request')
    g.add_argument('--serve-small', type=int, help='one-row requests timed for the latency')
    g.add_argument('--serve-repeats', type=int, help='times the large request is sent; the fastest counts')
    g.add_argument('--serve-batch-size', type=int, help="BSM_SERVE_BATCH_SIZE; 0 = the server's default")
    g = p.add_argument_group('mfu')
    for k in ('hidden', 'layers', 'heads', 'intermediate', 'seq', 'batch'): g.add_argument(f'--mfu-{k}', type=int)
    g.add_argument('--mfu-compile', action=argparse.BooleanOptionalAction,
                   help='torch.compile the default configuration')
    g.add_argument('--mfu-fused', action=argparse.BooleanOptionalAction,
                   help='fused AdamW (else foreach) in the default configuration')
    g.add_argument('--mfu-bf16', action=argparse.BooleanOptionalAction, help='bf16 autocast (else fp32)')
    g.add_argument('--mfu-sweep',
                   help="variants timed before the default one: 'eager|compile:BATCH:fused|foreach,...'; '' for none")
    g.add_argument('--mfu-warmup', type=int); g.add_argument('--mfu-steps', type=int)
    g.add_argument('--mfu-budget', type=float, help='seconds for the MFU part; variants that would not fit are skipped')
    g.add_argument('--matmul-size', type=int,
                   help='n of the n x n x n bf16 (fp32 on CPU) matrix product timed as the measured peak')
    g.add_argument('--peak-tflops', type=float, help='the peak MFU is measured against')
    g.add_argument('--mfu-goal', type=float, help='the MFU goal (reported, never fails the check)')
    args = p.parse_args(argv)
    for k, v in PROFILES[args.profile].items():
        if getattr(args, k, None) is None: setattr(args, k, v)
    if args.out is None:
        args.out = (Path(os.environ['OUT'])/'gpu_check.json' if os.environ.get('OUT')
                    else ROOT/'bench'/'out'/f'gpu_check_{args.profile}.json')
    return args


# ---------------------------------------------------------------------------------------------------------- results
class Results:
    "The JSON document, written atomically after every change of a part."
    def __init__(self, path:Path, **head):
        self.path, self.doc = Path(path), {**head, 'parts': {}, 'errors': {}}
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def save(self):
        tmp = self.path.with_name(f'.{self.path.name}.tmp')
        tmp.write_text(json.dumps(self.doc, indent=1, default=str) + '\n')
        os.replace(tmp, self.path)

    def part(self, name:str)->dict: return self.doc.setdefault(name, {})


def run_part(res:Results, name:str, fn, *a):
    "Run one part; its exception is recorded, not raised, so the other parts still run."
    t0 = time.time()
    log(f'--- {name}')
    try: fn(res.part(name), *a); status = 'ok'
    except Exception as e:
        status = 'failed'
        res.doc['errors'][name] = f'{type(e).__name__}: {e}'
        traceback.print_exc()
        log(f'{name} failed: {type(e).__name__}: {e}')
    res.doc['parts'][name] = {'status': status, 'seconds': round(time.time() - t0, 1)}
    res.save()
    return status == 'ok'


def device_info(device:str)->dict:
    import torch, transformers, lightning
    info = {'device': device, 'torch': torch.__version__, 'transformers': transformers.__version__,
            'lightning': lightning.__version__, 'python': platform.python_version(), 'cpus': os.cpu_count()}
    if device == 'cuda':
        props = torch.cuda.get_device_properties(0)
        info.update(gpu_name=torch.cuda.get_device_name(0), capability='%d.%d' % torch.cuda.get_device_capability(0),
                    gpu_mem_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                    cuda=torch.version.cuda, bf16_supported=torch.cuda.is_bf16_supported())
        if shutil.which('nvidia-smi'): # read-only query: the card as we find it
            q = ('name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw,power.limit,'
                 'utilization.gpu')
            r = subprocess.run(['nvidia-smi', f'--query-gpu={q}', '--format=csv,noheader'], capture_output=True,
                               text=True, timeout=20)
            info['nvidia_smi'] = (dict(zip(q.split(','), (s.strip() for s in r.stdout.strip().split(','))))
                                  if r.returncode == 0 else r.stderr.strip())
    else: info['gpu_name'] = 'cpu: ' + (platform.processor() or platform.machine())
    return info


# ---------------------------------------------------------------------------------------------------------- 1. train
def train_child(argv:list)->int:
    """In the training process: the train program's `main` (after writing the tiny BERT, if asked),
    then its peak memory and GPU into the stats file."""
    stats_file, argv, st = Path(argv[0]), argv[1:], {}
    # written here, while the parent imports torch: the two imports overlap
    if tiny := os.environ.get('GPU_CHECK_TINY_BERT'):
        t = time.time()
        from bsm_nb.model import save_tiny_bert
        save_tiny_bert(tiny)
        st['tiny_bert_s'] = round(time.time() - t, 2)
    from bsm_nb.entrypoint import main
    t0, rc = time.time(), None
    try: rc = main(argv)
    finally:
        import torch
        st.update(main_s=round(time.time() - t0, 2), exit_code=rc,
                  max_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        if torch.cuda.is_available():
            st.update(gpu_name=torch.cuda.get_device_name(0), peak_allocated_bytes=torch.cuda.max_memory_allocated(),
                      peak_reserved_bytes=torch.cuda.max_memory_reserved())
        stats_file.write_text(json.dumps(st))
    return rc


def safetensors_dtypes(path:Path)->list:
    from safetensors import safe_open
    with safe_open(str(path), 'pt') as f: return sorted({f.get_slice(k).get_dtype() for k in f.keys()})


def part_train(out:dict, args, work:Path, env:dict, deadline:float, meanwhile=None):
    """`meanwhile()` runs in this process while the train program starts (imports, device checks);
    if it raises, the program is stopped."""
    base, py = work/'ml', sys.executable
    t0 = time.time()
    subprocess.run([py, '-m', 'bsm_nb.synthetic', str(base), '--n-train', str(args.n_train), '--n-val', str(args.n_val),
                    '--n-test', str(args.n_test), '--max-epochs', str(args.epochs)], check=True, cwd=ROOT, env=env,
                   timeout=300, stdout=subprocess.DEVNULL)
    out['synthetic_s'] = round(time.time() - t0, 1)
    tiny = args.encoder == 'tiny'
    encoder = work/'tiny_bert' if tiny else Path(args.encoder).resolve()
    if not tiny and not (encoder/'config.json').is_file():
        raise FileNotFoundError(f'encoder {encoder}: no config.json (run bash bench/gpu/gpu_prep.sh here first)')
    hps = ['--pretrained_model', str(encoder), '--precision', args.precision, '--batch_size', str(args.batch_size)]
    if args.threads: hps += ['--num_threads', str(args.threads)]
    out.update(encoder=str(encoder), precision_asked=args.precision, batch_size=args.batch_size,
               epochs_asked=args.epochs, hyperparameters=hps,
               rows={'train': args.n_train, 'val': args.n_val, 'test': args.n_test})
    stats = work/'train_stats.json'
    timeout = max(10.0, min(args.train_timeout, deadline - time.time() - 20))
    log(f'bsm-train ({" ".join(hps)}), {args.n_train} train rows, timeout {timeout:.0f} s')
    t0 = time.time()
    child_env = {**env, 'SAGEMAKER_BASE_DIR': str(base), **({'GPU_CHECK_TINY_BERT': str(encoder)} if tiny else {})}
    proc = subprocess.Popen([py, __file__, 'train-child', str(stats), *hps], cwd=ROOT, env=child_env)
    try:
        if meanwhile: meanwhile()
        rc = proc.wait(timeout=max(1.0, t0 + timeout - time.time()))
    except BaseException as e:
        proc.kill(); proc.wait()
        if isinstance(e, subprocess.TimeoutExpired):
            raise TimeoutError(f'the train program ran past {timeout:.0f} s') from None
        raise
    out['process_wall_s'] = round(time.time() - t0, 1)
    st = json.loads(stats.read_text()) if stats.exists() else {}
    out.update(exit_code=rc, main_s=st.get('main_s'), tiny_bert_s=st.get('tiny_bert_s'))
    if rc != 0:
        failure = base/'output'/'failure'
        raise RuntimeError(f'bsm-train exited {rc}: '
                           + (failure.read_text().splitlines()[0] if failure.exists() else 'no failure file'))
    # how the model loads the encoder: it must come out fp32, for AdamW's sake
    from bsm_nb.model import load_encoder_weights
    out['encoder_loaded_dtypes'] = sorted({str(p.dtype) for p in load_encoder_weights(str(encoder)).parameters()})
    out['encoder_file_dtypes'] = safetensors_dtypes(encoder/'model.safetensors')
    model_dir = base/'model'
    m = json.loads((model_dir/'metrics.json').read_text())
    cuda = 'peak_allocated_bytes' in st
    out.update(samples_per_s=m['train_samples_per_s'], predict_rows_per_s=m['predict_rows_per_s'],
               test_auroc=m['test']['auroc'], val_auroc=m['val']['auroc'],
               test_average_precision=m['test'].get('average_precision'), wall_s=m['wall_s'], fit_s=m['fit_s'],
               precision=m['precision'], epochs=m['epochs'], steps=m['steps'],
               gpu_name=st.get('gpu_name', 'cpu (no CUDA)'),
               peak_mem_gib=sig((st['peak_allocated_bytes'] if cuda else st['max_rss_bytes']) / 2**30),
               peak_mem_kind='torch.cuda.max_memory_allocated' if cuda else 'max RSS of the process (no CUDA)',
               peak_reserved_gib=sig(st['peak_reserved_bytes'] / 2**30) if cuda else None,
               model_dtypes=safetensors_dtypes(model_dir/'model.safetensors'), model_dir=str(model_dir), metrics=m)
    if out['encoder_loaded_dtypes'] != ['torch.float32'] or out['model_dtypes'] != ['F32']:
        raise RuntimeError(f"the encoder did not train in fp32 weights: loaded {out['encoder_loaded_dtypes']}, "
                           f"saved {out['model_dtypes']}")
    log(f"train: {out['samples_per_s']} samples/s, predict {out['predict_rows_per_s']} rows/s, "
        f"test AUROC {out['test_auroc']:.4f}, "
        f"{out['precision']}, peak {out['peak_mem_gib']} GiB, program wall {out['wall_s']} s")


# ---------------------------------------------------------------------------------------------------------- 2. serve
def probabilities(pred:list)->list:
    "P(positive) of a binary model, every class's probability otherwise, from the JSON answer's records."
    return [p for r in pred for p in ([r['probability']] if 'probability' in r else r['probabilities'].values())]


def part_serve(out:dict, args, model_dir:Path):
    import pandas as pd, torch
    from bsm_nb.serve import ServeSettings, create_app
    from bsm_nb.synthetic import make_messaging_cases
    env = {**os.environ, 'SM_MODEL_DIR': str(model_dir), 'MODEL_SERVER_TIMEOUT': '600',
           'MAX_ROWS_PER_REQUEST': str(max(args.serve_large_rows, 1000)), 'SAGEMAKER_MAX_PAYLOAD_IN_MB': '0'}
    if args.serve_batch_size: env['BSM_SERVE_BATCH_SIZE'] = str(args.serve_batch_size)
    settings = ServeSettings.from_env(env)
    if torch.cuda.is_available(): torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    app = create_app(settings)
    state = app.extensions['bsm_model']
    if state.wait(600) != 'ready': raise RuntimeError(f'the model did not load: {state.status} {state.reason}')
    out.update(load_s=round(time.time() - t0, 2), server_load_seconds=round(state.load_seconds, 2),
               measured_ms_per_row=round(1000 * state.pace, 4),
               batch_size=settings.batch_size, torch_threads=settings.torch_threads, n_gpus=settings.n_gpus,
               model_device=str(next(state.bundle.model.parameters()).device),
               client='flask test client, in process (no nginx, no gunicorn)')
    client = app.test_client()
    out['ping_status'] = client.get('/ping').status_code
    cases = make_messaging_cases(max(args.serve_large_rows, 8) + args.serve_small + 10, seed=11).drop(columns=['label'])
    few = cases.iloc[:5]
    # CSV in, CSV out (with a header); JSON in, JSON out
    r = client.post('/invocations', data=few.to_csv(index=False),
                    headers={'Content-Type': 'text/csv', 'Accept': 'text/csv; header=present'})
    out['csv_status'] = r.status_code
    import io
    if r.status_code == 200:
        got = pd.read_csv(io.StringIO(r.get_data(as_text=True)))
        cols = [c for c in got.columns if c == 'probability' or c.startswith('prob_')]
        out['csv_rows'], out['csv_probabilities'] = len(got), got[cols].to_numpy(float).ravel().tolist()
    else: out['csv_error'] = r.get_data(as_text=True)[:500]
    records = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
               for row in few.to_dict('records')]
    r = client.post('/invocations', json={'instances': records}, headers={'Accept': 'application/json'})
    out['json_status'] = r.status_code
    if r.status_code == 200:
        pred = r.get_json()['predictions']
        out['json_rows'], out['json_probabilities'] = len(pred), probabilities(pred)
    else: out['json_error'] = r.get_data(as_text=True)[:500]
    probs = out.get('csv_probabilities', []) + out.get('json_probabilities', [])
    out['probabilities_ok'] = (out.get('csv_rows') == len(few) and out.get('json_rows') == len(few) and bool(probs)
                               and all(0.0 <= p <= 1.0 for p in probs))
    if not (out['ping_status'] == out['csv_status'] == out['json_status'] == 200 and out['probabilities_ok']):
        raise RuntimeError(f"serving answers: ping {out['ping_status']}, csv {out['csv_status']}, "
                           f"json {out['json_status']}, probabilities_ok {out['probabilities_ok']}")
    # one large request: rows/s through parsing, tokenizing, the model and the answer
    large = cases.iloc[:args.serve_large_rows].to_csv(index=False).encode()
    warm = cases.iloc[:min(512, args.serve_large_rows)].to_csv(index=False)
    client.post('/invocations', data=warm, headers={'Content-Type': 'text/csv'})
    times = []
    for _ in range(max(1, args.serve_repeats)):
        t = time.perf_counter()
        r = client.post('/invocations', data=large, headers={'Content-Type': 'text/csv', 'Accept': 'application/json'})
        times.append(time.perf_counter() - t)
        if r.status_code != 200: raise RuntimeError(f'large request: {r.status_code} {r.get_data(as_text=True)[:300]}')
        if len(r.get_json()['predictions']) != args.serve_large_rows:
            raise RuntimeError('large request: wrong number of predictions')
    out.update(large_rows=args.serve_large_rows, large_body_bytes=len(large),
               large_seconds=[round(t, 3) for t in times],
               large_rows_per_s=round(args.serve_large_rows / min(times), 1))
    # one-row JSON requests, one at a time: latency
    small = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
             for row in cases.iloc[args.serve_large_rows:args.serve_large_rows + args.serve_small + 5]
             .to_dict('records')]
    lat = []
    for i, rec in enumerate(small):
        t = time.perf_counter()
        r = client.post('/invocations', json=[rec])
        dt = time.perf_counter() - t
        if r.status_code != 200:
            raise RuntimeError(f'small request {i}: {r.status_code} {r.get_data(as_text=True)[:300]}')
        if i >= 5: lat.append(1000 * dt) # the first 5 warm up
    q = statistics.quantiles(lat, n=10) if len(lat) >= 2 else lat * 9
    out.update(small_requests=len(lat), small_p50_ms=round(statistics.median(lat), 3), small_p90_ms=round(q[8], 3),
               small_mean_ms=round(statistics.fmean(lat), 3), small_max_ms=round(max(lat), 3))
    if torch.cuda.is_available(): out['peak_mem_gib'] = sig(torch.cuda.max_memory_allocated() / 2**30)
    log(f"serve: {out['large_rows_per_s']} rows/s in one request of {args.serve_large_rows} rows, "
        f"one-row p50 {out['small_p50_ms']} ms, "
        f"p90 {out['small_p90_ms']} ms, on {out['model_device']}")


# ---------------------------------------------------------------------------------------------------------- 3. mfu
def sync(device:str):
    import torch
    if device == 'cuda': torch.cuda.synchronize()


def matmul_tflops(device:str, n:int, reps:int=10)->float:
    "TFLOP/s of an n x n x n matrix product on random data (bf16 on a GPU, fp32 on a CPU): the measured ceiling."
    import torch
    dt = torch.bfloat16 if device == 'cuda' else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dt), torch.randn(n, n, device=device, dtype=dt)
    for _ in range(3): a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps): a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


def parse_sweep(spec:str)->list:
    out = []
    for item in filter(None, (s.strip() for s in spec.split(','))):
        mode, batch, opt = (item.split(':') + ['fused'])[:3]
        if mode not in ('eager', 'compile') or opt not in ('fused', 'foreach'):
            raise ValueError(f'--mfu-sweep: bad variant {item!r}')
        out.append({'compile': mode == 'compile', 'batch': int(batch), 'fused': opt == 'fused'})
    return out


def time_variant(args, device:str, compile:bool, batch:int, fused:bool)->dict:
    "Build a fresh random encoder, warm up, time `mfu_steps` training steps; the figures of this variant."
    import torch, torch.nn as nn, torch.nn.functional as F
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=args.mfu_hidden, num_hidden_layers=args.mfu_layers,
                     num_attention_heads=args.mfu_heads,
                     intermediate_size=args.mfu_intermediate, max_position_embeddings=max(512, args.mfu_seq),
                     hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.0, attn_implementation='sdpa')

    class Net(nn.Module):
        "The encoder and a token-level two-class head: every token gets a gradient (no rows of zeros in the backward)."
        def __init__(self):
            super().__init__()
            self.bert, self.head = BertModel(cfg, add_pooling_layer=False), nn.Linear(cfg.hidden_size, 2)
        def forward(self, ids, labels):
            h = self.bert(input_ids=ids).last_hidden_state # no attention mask: full rows, no padding
            return F.cross_entropy(self.head(h).float().flatten(0, 1), labels.flatten())

    net = Net().to(device).train()
    n_params = sum(p.numel() for p in net.parameters())
    non_emb = sum(p.numel() for n, p in net.named_parameters() if not n.startswith('bert.embeddings.'))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.01,
                            **({'fused': True} if fused else {'foreach': True}))
    step_fn = torch.compile(net) if compile else net
    g = torch.Generator(device='cpu').manual_seed(1)
    data = [(torch.randint(1000, 30000, (batch, args.mfu_seq), generator=g).to(device),
             torch.randint(0, 2, (batch, args.mfu_seq), generator=g).to(device))
            for _ in range(4)] # rotate among a few random batches
    bf16 = args.mfu_bf16

    def step(i, data=data, step_fn=step_fn, opt=opt): # bound here, so that the del below frees them
        ids, labels = data[i % len(data)]
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = step_fn(ids, labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    if device == 'cuda': torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    for i in range(args.mfu_warmup): loss = step(i)
    sync(device)
    warm_s = time.time() - t0
    first_loss = float(loss.detach())
    runs, wall = [], 0.0 # the timed steps twice over: the spread of the two medians is the noise
    for _ in range(2):
        if device == 'cuda':
            ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(args.mfu_steps)]
            t0 = time.perf_counter()
            for i, (s, e) in enumerate(ev): s.record(); loss = step(i); e.record()
            torch.cuda.synchronize()
            wall += time.perf_counter() - t0
            runs.append([s.elapsed_time(e) / 1000 for s, e in ev])
        else:
            t0, times = time.perf_counter(), []
            for i in range(args.mfu_steps):
                t = time.perf_counter(); loss = step(i); times.append(time.perf_counter() - t)
            wall += time.perf_counter() - t0
            runs.append(times)
    times = runs[0] + runs[1]
    last_loss = float(loss.detach())
    if not (math.isfinite(first_loss) and math.isfinite(last_loss)):
        raise FloatingPointError(f'loss {first_loss} -> {last_loss}')
    step_s = statistics.median(times)
    tokens = batch * args.mfu_seq
    flops = 6 * non_emb * tokens
    # QK^T and PV, forward and backward, not in the 6N count
    attn = 12 * args.mfu_layers * args.mfu_seq * args.mfu_hidden * tokens
    out = {'compile': compile, 'batch': batch, 'fused_adamw': fused, 'step_ms': round(1000 * step_s, 3),
           'step_ms_mean': round(1000 * statistics.fmean(times), 3),
           'step_ms_min': round(1000 * min(times), 3),
           'step_ms_runs': [round(1000 * statistics.median(r), 3) for r in runs],
           'loop_wall_ms_per_step': round(1000 * wall / len(times), 3),
           'tokens_per_s': sig(tokens / step_s), 'tflops': sig(flops / step_s / 1e12),
           'mfu': sig(flops / step_s / 1e12 / args.peak_tflops),
           'mfu_with_attention': sig((flops + attn) / step_s / 1e12 / args.peak_tflops), 'warmup_s': round(warm_s, 1),
           'loss_first_last': [round(first_loss, 4), round(last_loss, 4)], 'params': n_params,
           'non_embedding_params': non_emb,
           'attn_implementation': net.bert.config._attn_implementation}
    if device == 'cuda': out['peak_mem_gib'] = sig(torch.cuda.max_memory_allocated() / 2**30)
    else: # max RSS of the process, KiB
        out['peak_mem_gib'] = sig(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    del step, step_fn, net, opt, data
    gc.collect()
    if compile: torch._dynamo.reset()
    if device == 'cuda': torch.cuda.empty_cache()
    return out


def part_mfu(out:dict, args, device:str, deadline:float, res:Results):
    import torch
    t_part = time.time()
    budget_end = min(t_part + args.mfu_budget, deadline - 5)
    out.update(model=dict(hidden=args.mfu_hidden, layers=args.mfu_layers, heads=args.mfu_heads,
                          intermediate=args.mfu_intermediate,
                          seq_len=args.mfu_seq, vocab=30522, hidden_dropout=0.1, attention_dropout=0.0),
               precision=('bf16 autocast over fp32 weights (as Lightning bf16-mixed), fp32 AdamW' if args.mfu_bf16
                          else 'fp32'),
               attention='SDPA (transformers attn_implementation=sdpa), no mask', peak_tflops=args.peak_tflops,
               formula='MFU = 6 x non-embedding params x tokens / step time / peak; '
                       'step = forward, backward, AdamW step, zero_grad; median of timed steps',
               warmup_steps=args.mfu_warmup, timed_steps=f'2 x {args.mfu_steps}', goal=args.mfu_goal)
    out['matmul_tflops'] = sig(matmul_tflops(device, args.matmul_size))
    out['matmul'] = (f'{args.matmul_size}^3 {"bf16" if device == "cuda" else "fp32"} product, random data, '
                     'mean of 10 after 3 warm-ups')
    default = {'compile': bool(args.mfu_compile), 'batch': args.mfu_batch, 'fused': bool(args.mfu_fused)}
    variants = [v for v in parse_sweep(args.mfu_sweep) if v != default] + [default]
    out['variants'] = []
    for v in variants:
        left = budget_end - time.time()
        need = 60 if v['compile'] and device == 'cuda' else 5 # a compile of BERT-base takes about a minute
        name = f"{'compile' if v['compile'] else 'eager'}:{v['batch']}:{'fused' if v['fused'] else 'foreach'}"
        if left < need:
            out['variants'].append({'variant': name, 'skipped': f'{left:.0f} s left of the budget'}); continue
        log(f'mfu variant {name}')
        try: r = {'variant': name, **time_variant(args, device, v['compile'], v['batch'], v['fused'])}
        except Exception as e: # out of memory, a compile that fails: recorded, the next variant runs
            r = {'variant': name, 'error': f'{type(e).__name__}: {str(e)[:500]}'}
            gc.collect()
            if device == 'cuda': torch.cuda.empty_cache()
        out['variants'].append(r)
        log(f"  {name}: " + (f"{r['step_ms']} ms/step, {r['tflops']} TFLOP/s, MFU {100 * r['mfu']:.3g}%" if 'mfu' in r
                             else r['error']))
        res.save()
    ok = [r for r in out['variants'] if 'mfu' in r]
    if not ok:
        raise RuntimeError('no MFU variant ran: '
                           + '; '.join(r.get('error', r.get('skipped', '')) for r in out['variants']))
    best = max(ok, key=lambda r: r['mfu'])
    chosen = out['variants'][-1] if 'mfu' in out['variants'][-1] else best # the default configuration, when it ran
    out.update({k: chosen[k] for k in ('mfu', 'mfu_with_attention', 'tflops', 'step_ms', 'tokens_per_s',
                                       'non_embedding_params', 'params',
                                       'peak_mem_gib', 'batch', 'compile', 'fused_adamw', 'attn_implementation')})
    out.update(variant=chosen['variant'], default_variant_ran=chosen is out['variants'][-1],
               best_variant=best['variant'], best_mfu=best['mfu'],
               mfu_of_measured_peak=sig(chosen['tflops'] / out['matmul_tflops']))
    out['goal_met'] = None if args.mfu_goal is None else bool(out['mfu'] >= args.mfu_goal)
    log(f"mfu: {100 * out['mfu']:.3g}% of {args.peak_tflops} TFLOP/s "
        f"({out['variant']}; best {best['variant']} {100 * best['mfu']:.3g}%); "
        f"measured matmul peak {out['matmul_tflops']} TFLOP/s"
        + ('' if args.mfu_goal is None else f"; goal {args.mfu_goal:.0%} met: {out['goal_met']}"))


# ---------------------------------------------------------------------------------------------------------- main
def check_figures(doc:dict)->list:
    "What is missing or wrong among the required figures and answers."
    bad = [f'{part}.{k} = {doc.get(part, {}).get(k)!r}' for part, keys in REQUIRED.items() if part in doc
           for k in keys if not positive(doc[part].get(k))]
    s = doc.get('serve')
    if s is not None and not (s.get('csv_status') == s.get('json_status') == 200 and s.get('probabilities_ok')):
        bad.append('serve answers')
    return bad


def main(argv=None)->int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['train-child']: return train_child(argv[1:])
    args = parse_args(argv)
    t_start = time.time()
    deadline = t_start + args.deadline
    # before torch is imported, here and in the training process
    if args.device == 'cpu': os.environ['CUDA_VISIBLE_DEVICES'] = ''
    os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
    sys.path.insert(0, str(ROOT))
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')]))}
    parts = [p.strip() for p in args.parts.split(',') if p.strip()]
    res = Results(args.out, profile=args.profile, started=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                  options={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()})
    res.save()

    def setup(): # torch here: while the train program starts, when there is one
        import torch
        if args.threads: torch.set_num_threads(args.threads)
        if args.device == 'cuda' and not torch.cuda.is_available():
            raise RuntimeError('no CUDA device: use --smoke, or --device cpu, on a machine without a GPU')
        res.doc['device'] = device_info(args.device)
        res.save()
        log(f"profile {args.profile} on {res.doc['device']['gpu_name']}, torch {torch.__version__}; "
            f"results in {args.out}")

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix='gpu_check-'))
    work.mkdir(parents=True, exist_ok=True)
    try:
        trained = False
        if 'train' in parts: trained = run_part(res, 'train', part_train, args, work, env, deadline, setup)
        else:
            try: setup()
            except RuntimeError as e: res.doc['errors']['setup'] = str(e)
        if 'device' not in res.doc:
            res.doc['errors'].setdefault('device', res.doc['errors'].get('train') or res.doc['errors'].get('setup'))
            res.doc.update(total_s=round(time.time() - t_start, 1), ok=False); res.save()
            log(f"stopped: {res.doc['errors']['device']}")
            return 2
        if 'serve' in parts:
            if trained: run_part(res, 'serve', part_serve, args, Path(res.doc['train']['model_dir']))
            else: res.doc['errors']['serve'] = 'not run: it serves the model the train part writes'
        if 'mfu' in parts: run_part(res, 'mfu', part_mfu, args, args.device, deadline, res)
    finally:
        if not args.workdir and not args.keep: shutil.rmtree(work, ignore_errors=True)
    bad = check_figures(res.doc)
    res.doc.update(total_s=round(time.time() - t_start, 1), ok=not res.doc['errors'] and not bad, problems=bad)
    res.save()
    log(f"{'OK' if res.doc['ok'] else 'FAILED'} in {res.doc['total_s']} s: {args.out}"
        + (f"; errors {res.doc['errors']}" if res.doc['errors'] else '')
        + (f'; problems {bad}' if bad else ''))
    summary = {p: {k: res.doc.get(p, {}).get(k) for k in keys} for p, keys in REQUIRED.items()}
    print(json.dumps(summary, indent=1))
    return 0 if res.doc['ok'] else 1


if __name__ == '__main__': sys.exit(main())
