"""Where a MiniLM training step's time goes, by kind of operator (torch.profiler), on the benchmark's shapes.

    .venv/bin/python bench/speed/op_profile.py [--width 96] [--steps 4]

One bsm_nb model (the packaged MiniLM, concat fusion, bsm_nb's defaults: frozen word embeddings, attention dropout 0),
batch 32 rows of `--width` tokens with realistic padding, AdamW; fp32 and bf16 autocast, each profiled over `--steps`
steps after two warm-ups, 2 threads. Self CPU time of every operator is summed into kinds (matrix products, attention,
element-wise, normalisation, optimizer, dtype casts and copies, the rest), so the share that faster matrix units could
shrink is visible next to the share they cannot touch. Prints one table per precision; writes bench/out/op_profile.json.
"""
import argparse, json, os, re, sys, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from dataclasses import asdict
from torch.profiler import profile, ProfilerActivity
from bsm_nb.config import BSMConfig
from bsm_nb.model import MultimodalBert, resolve_encoder
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # bench/: bench_metrics
from bench_metrics import cpu_label

KINDS = [("matrix products", r"addmm|^aten::mm$|bmm|matmul|linear|mkldnn|onednn"),
         ("attention", r"scaled_dot_product|flash_attention|_efficient_attention|softmax"),
         ("optimizer", r"_foreach|adamw|lerp|addcdiv|addcmul|sqrt"),
         ("normalisation", r"layer_norm|native_layer_norm"),
         ("dtype casts and copies", r"^aten::to$|_to_copy|copy_|clone|contiguous|empty_strided"),
         ("element-wise", r"gelu|add|mul|div|sub|dropout|bernoulli|tanh|where|masked|fill|zero_|sum|mean|neg|exp|pow|"
                          r"rsub|sigmoid"),
         ("embedding", r"embedding")]


def kind(name):
    return next((k for k, pat in KINDS if re.search(pat, name)), "the rest")


def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--steps", type=int, default=4)
    a = ap.parse_args()
    torch.set_num_threads(2); torch.manual_seed(0)
    n, L = 32, a.width
    am = torch.ones(n, L, dtype=torch.long)
    for i, l in enumerate(torch.randint(L // 2, L + 1, (n,))): am[i, l:] = 0
    b = {"input_ids": torch.randint(1000, 20000, (n, L)) * am, "attention_mask": am,
         "cat": torch.randint(0, 10, (n, 1)), "num": torch.randn(n, 2), "label": torch.randint(0, 2, (n,))}
    cfg = BSMConfig(cat_field_list=["c"], tab_field_list=["x"])
    res = {"cpu": cpu_label(), "width": L, "batch": n}
    for prec in ("fp32", "bf16"):
        m = MultimodalBert(asdict(cfg), [10], 2, ["0", "1"], encoder_path=resolve_encoder(cfg)).train()
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-5)
        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
                loss = m.loss(m(b), b["label"])
            loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        step(); step()
        t = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(a.steps): step()
        wall = (time.perf_counter() - t) / a.steps
        sums = {}
        for e in prof.key_averages():
            sums[kind(e.key)] = sums.get(kind(e.key), 0.0) + e.self_cpu_time_total / 1e6 / a.steps
        total = sum(sums.values())
        res[prec] = {"step_s": wall, "by_kind_s": sums}
        print(f"\n{prec}: {wall:.3f} s a step (profiled), batch {n} x {L} tokens, {res['cpu']}")
        for k, v in sorted(sums.items(), key=lambda kv: -kv[1]):
            print(f"  {k:24s} {v:6.3f} s  {100 * v / total:5.1f} %")
        top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:8]
        print("  top operators: " + ", ".join(f"{e.key} {e.self_cpu_time_total / 1e6 / a.steps:.3f}" for e in top))
    os.makedirs(os.path.join(os.path.dirname(__file__), "..", "out"), exist_ok=True)
    json.dump(res, open(os.path.join(os.path.dirname(__file__), "..", "out", "op_profile.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
