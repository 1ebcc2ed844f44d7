"""What int8 prediction (`predict_int8`) costs in AUROC and gives in speed, on one trained model dir.

    .venv/bin/python bench/speed/int8_check.py MODEL_DIR TEST_CSV [--out bench/out/int8_check.jsonl]

The same weights predict the test rows twice, interleaved by half: fp32 and int8 (the encoder's linear layers
quantised dynamically). Prints and appends one JSON line: AUROC of each, their difference, rows/s of each,
the largest probability change, and the CPU it ran on.
"""
import argparse, dataclasses, json, os, sys, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np, pandas as pd, torch
from sklearn.metrics import roc_auc_score
from bsm_nb.artifacts import load_bundle
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # bench/: bench_metrics
from bench_metrics import cpu_label


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir"); ap.add_argument("test_csv")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "out", "int8_check.jsonl"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    b = load_bundle(a.model_dir)
    df = pd.read_csv(a.test_csv).rename(columns={"Unnamed: 0": "row_id"})
    y = (df[b.config.label_name].astype(str) == "1").astype(int).to_numpy()
    res, probs = {}, {}
    for mode in ("fp32", "int8", "fp32", "int8"):  # interleaved: load drifts hit both alike
        b.config = dataclasses.replace(b.config, precision="32-true", predict_int8=mode == "int8")
        b.predict_frame(df.head(64))  # warm-up (and, for int8, the one-off quantisation)
        t = time.perf_counter(); p = b.predict_frame(df)["probability"].to_numpy(); dt = time.perf_counter() - t
        res.setdefault(mode, []).append(len(df) / dt); probs[mode] = p
    rec = dict(model_dir=a.model_dir, rows=len(df), cpu=cpu_label(), threads=a.threads,
               auroc_fp32=roc_auc_score(y, probs["fp32"]), auroc_int8=roc_auc_score(y, probs["int8"]),
               rows_per_s_fp32=float(np.mean(res["fp32"])), rows_per_s_int8=float(np.mean(res["int8"])),
               max_abs_prob_change=float(np.abs(probs["fp32"] - probs["int8"]).max()))
    rec["auroc_change"] = rec["auroc_int8"] - rec["auroc_fp32"]
    rec["speedup"] = rec["rows_per_s_int8"] / rec["rows_per_s_fp32"]
    print(json.dumps(rec, indent=1))
    with open(a.out, "a") as f: f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
