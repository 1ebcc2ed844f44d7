"""Metric figures shared by every benchmark run (peer, baselines, ours).

Only numpy + scikit-learn + stdlib, so it imports in the project venv and in bench/.venv-peer alike.
Every run writes one JSON line with exactly `FIELDS`.
"""
import json
import os
import resource
import sys

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve, roc_auc_score

FIELDS = ("run", "with_rating", "seed", "test_auroc", "test_ap", "f1_val_threshold", "f1_at_0_5",
          "train_samples_per_s", "infer_rows_per_s", "peak_rss_mb", "wall_s", "cpu")
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8")  # what decides which kernels and precisions run

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "womens_clothing")
TRAIN_ROWS = 4000  # protocol: first 4,000 rows of train.csv


def best_f1_threshold(y, p):
    "Threshold maximising F1 on (y, p); used on VAL only, then applied to test."
    prec, rec, thr = precision_recall_curve(y, p)
    f1 = 2 * prec * rec / np.clip(prec + rec, 1e-12, None)
    return float(thr[np.argmax(f1[:-1])])  # last PR point has no threshold


def figures(y_val, p_val, y_test, p_test):
    "Quality figures of one run from positive-class probabilities on val and test."
    y_val, p_val, y_test, p_test = map(np.asarray, (y_val, p_val, y_test, p_test))
    thr = best_f1_threshold(y_val, p_val)
    return dict(test_auroc=float(roc_auc_score(y_test, p_test)),
                test_ap=float(average_precision_score(y_test, p_test)),
                f1_val_threshold=float(f1_score(y_test, p_test >= thr)),
                f1_at_0_5=float(f1_score(y_test, p_test >= 0.5)))


def peak_rss_mb():
    "Peak resident set size of this process so far, in MB (ru_maxrss is KiB on Linux)."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_label():
    """This machine's CPU as rows name it: cores, model, and which of CPU_FLAGS it has
    (speeds of different CPUs never compare)."""
    model, flags = "unknown CPU", set()
    if os.path.exists("/proc/cpuinfo"):
        for ln in open("/proc/cpuinfo"):
            if ln.startswith("model name"):
                model = ln.split(":", 1)[1].strip()
            elif ln.startswith("flags"):
                flags = set(ln.split(":", 1)[1].split())
    have = [f for f in CPU_FLAGS if f in flags]
    return f"{os.cpu_count()} cores, {model} ({' '.join(have) or 'none of ' + ' '.join(CPU_FLAGS)})"


def write_result(path, **rec):
    "Append one JSON line with exactly FIELDS (fails loudly on a missing or extra field); `cpu` is this machine's."
    rec.setdefault("cpu", cpu_label())
    if set(rec) != set(FIELDS):
        raise ValueError(f"fields differ from schema: {sorted(set(rec) ^ set(FIELDS))}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    line = json.dumps({k: rec[k] for k in FIELDS})
    with open(path, "a") as f:
        f.write(line + "\n")
    print(line, file=sys.stderr)
