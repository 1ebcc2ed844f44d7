"""The encoder that bench/gpu/gpu_check.sh carries to the GPU machine: the packaged all-MiniLM-L6-v2 as an fp16
safetensors copy (about 45 MB instead of 91), with its tokenizer and a config.json whose `dtype` is float32, so that
`from_pretrained` (transformers 5 loads a checkpoint in its own dtype by default) casts the weights back to fp32 on
load.

    .venv/bin/python bench/gpu/gpu_inputs.py [--out .gpu_inputs/minilm-fp16]

It then checks the copy the way bsm_nb loads it (`bsm_nb.model.load_encoder_weights`): every parameter fp32, and the
mean-pooled embeddings of some synthetic messages within `--tolerance` of the original's (||copy - original|| /
||original||, all messages together; fp16 rounding of the weights gives about 1e-3); the figures go to `fp16_check.json`
beside it.
"""
import argparse, json, os, shutil, sys, time
from pathlib import Path

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
ROOT = Path(__file__).resolve().parents[2]
TOKENIZER_FILES = ('tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.txt')


def write_fp16_copy(src:Path, dst:Path)->Path:
    "Write `dst`: fp16 weights (integer buffers as they are), config.json with dtype float32, the tokenizer files."
    import torch
    from safetensors.torch import load_file, save_file
    state = load_file(str(src/'model.safetensors'))
    half = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    tmp = dst.with_name(dst.name + '.tmp')
    shutil.rmtree(tmp, ignore_errors=True); tmp.mkdir(parents=True)
    save_file(half, str(tmp/'model.safetensors'), metadata={'format': 'pt'})
    config = json.loads((src/'config.json').read_text())
    # transformers 5 loads in the dtype the config names (else in the checkpoint's):
    # float32 makes it upcast the fp16 weights
    config.update(dtype='float32', torch_dtype='float32')
    (tmp/'config.json').write_text(json.dumps(config, indent=1) + '\n')
    for name in TOKENIZER_FILES:
        if (src/name).exists(): shutil.copy2(src/name, tmp/name)
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
    return dst


def embeddings(path:str, texts:list):
    "Mean-pooled last hidden states (and the hidden states) of `texts`, fp32 on CPU, through bsm_nb's own loader."
    import torch
    from bsm_nb.model import load_encoder_weights, load_tokenizer
    enc, tok = load_encoder_weights(path, 0.0).eval(), load_tokenizer(path)
    batch = tok(texts, padding=True, truncation=True, max_length=128, return_tensors='pt')
    with torch.inference_mode():
        h = enc(input_ids=batch['input_ids'], attention_mask=batch['attention_mask']).last_hidden_state
    m = batch['attention_mask'].unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1), h, m, {str(p.dtype) for p in enc.parameters()}, enc.config


def check_copy(src:Path, dst:Path, tolerance:float=2e-3, n:int=64)->dict:
    "Compare the copy with the original on `n` synthetic messages; the figures, with `ok`."
    import torch
    from bsm_nb.synthetic import make_messaging_cases
    texts = [t if isinstance(t, str) and t else 'hello' for t in make_messaging_cases(n, seed=123)['message']]
    ref, ref_h, mask, ref_dtypes, _ = embeddings(str(src), texts)
    out, out_h, _, dtypes, cfg = embeddings(str(dst), texts)
    valid = mask.bool().squeeze(-1)
    pooled_diff = (out - ref).abs().max().item()
    hidden_diff = (out_h - ref_h)[valid].abs().max().item()
    rel = ((out - ref).norm() / ref.norm()).item()
    cos = torch.nn.functional.cosine_similarity(out, ref, dim=-1).min().item()
    sizes = {p.name: p.stat().st_size for p in sorted(dst.iterdir())}
    return {'source': str(src), 'copy': str(dst), 'texts': n, 'param_dtypes': sorted(dtypes),
            'source_param_dtypes': sorted(ref_dtypes),
            'config_dtype': str(cfg.dtype), 'pooled_rel_diff': rel, 'pooled_max_abs_diff': pooled_diff,
            'pooled_max_abs': ref.abs().max().item(),
            'hidden_max_abs_diff': hidden_diff, 'min_cosine': cos, 'tolerance': tolerance, 'bytes': sizes,
            'total_bytes': sum(sizes.values()),
            'ok': dtypes == {'torch.float32'} and rel <= tolerance and cos > 0.9999}


def main(argv=None)->int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', type=Path, default=ROOT/'.gpu_inputs'/'minilm-fp16', help='folder to write (replaced)')
    p.add_argument('--source', type=Path, default=None,
                   help='encoder folder to copy (default: the packaged all-MiniLM-L6-v2)')
    p.add_argument('--tolerance', type=float, default=2e-3,
                   help='largest relative difference of the mean-pooled embeddings')
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from bsm_nb.model import packaged_encoder_path
    src = args.source or packaged_encoder_path()
    t0 = time.time()
    dst = write_fp16_copy(src, args.out.resolve())
    report = check_copy(src, dst, args.tolerance)
    report['seconds'] = round(time.time() - t0, 1)
    (dst/'fp16_check.json').write_text(json.dumps(report, indent=1) + '\n')
    print(json.dumps({k: v for k, v in report.items() if k != 'bytes'}, indent=1))
    if not report['ok']:
        print(f'gpu_inputs: the fp16 copy in {dst} does not load as fp32 or differs by more than {args.tolerance} '
              '(relative)', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__': sys.exit(main())
