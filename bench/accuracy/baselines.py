"""Tabular baselines for the benchmark table (project venv: needs only pandas + scikit-learn).

    .venv/bin/python bench/accuracy/baselines.py [--out bench/out/baselines.jsonl] [--seed 42]

Runs, each in its own child process so peak RSS and wall time are per run:
- HistGradientBoosting on cat + num columns, with / without Rating, on the first 4,000 train rows and on full train;
- Rating alone as the score ((Rating - 1) / 4, so "at 0.5" means Rating >= 3).
"""
import time

T0 = time.perf_counter()

import argparse
import json
import os
import subprocess
import sys

import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # bench/: bench_metrics
from bench_metrics import DATA_DIR, TRAIN_ROWS, figures, peak_rss_mb, write_result

RUNS = [("hgb", True, TRAIN_ROWS), ("hgb", False, TRAIN_ROWS), ("hgb", True, None), ("hgb", False, None),
        ("rating", True, None)]


def load(split, nrows=None):
    return pd.read_csv(os.path.join(DATA_DIR, f"{split}.csv"), index_col=0, nrows=nrows)


def run_one(kind, with_rating, train_rows, seed, out):
    from sklearn.ensemble import HistGradientBoostingClassifier

    info = json.load(open(os.path.join(DATA_DIR, "column_info.json")))
    y_col = info["label_col"]
    train, val, test = load("train", train_rows), load("val"), load("test")
    if kind == "rating":  # no training: the star rating itself is the score
        score = lambda df: (df["Rating"].to_numpy() - 1) / 4
        write_result(out, run="Rating alone", with_rating=True, seed=None,
                     **figures(val[y_col], score(val), test[y_col], score(test)),
                     train_samples_per_s=None, infer_rows_per_s=None, peak_rss_mb=peak_rss_mb(),
                     wall_s=time.perf_counter() - T0)
        return

    cols = info["cat_cols"] + [c for c in info["num_cols"] if with_rating or c != "Rating"]
    # Categories are taken from train only (pandas category dtype); unseen / missing ones go to HGB's NaN bin.
    cats = {c: pd.CategoricalDtype(train[c].dropna().unique()) for c in info["cat_cols"]}
    X = lambda df: df[cols].astype(cats)
    clf = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
    t = time.perf_counter()
    clf.fit(X(train), train[y_col])
    fit_s = time.perf_counter() - t
    p_val = clf.predict_proba(X(val))[:, 1]
    t = time.perf_counter()
    p_test = clf.predict_proba(X(test))[:, 1]
    pred_s = time.perf_counter() - t
    rows = "first 4,000 train rows" if train_rows else f"full train, {len(train):,} rows"
    write_result(out, run=f"HistGradientBoosting, cat + num ({rows})", with_rating=with_rating, seed=seed,
                 **figures(val[y_col], p_val, test[y_col], p_test),
                 train_samples_per_s=len(train) / fit_s, infer_rows_per_s=len(test) / pred_s,
                 peak_rss_mb=peak_rss_mb(), wall_s=time.perf_counter() - T0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "out", "baselines.jsonl"))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--one", nargs=3, metavar=("KIND", "WITH_RATING", "TRAIN_ROWS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:  # child: one run
        kind, wr, rows = a.one
        run_one(kind, wr == "True", int(rows) or None, a.seed, a.out)
        return
    for kind, wr, rows in RUNS:  # parent: one child per run
        subprocess.run([sys.executable, __file__, "--out", a.out, "--seed", str(a.seed),
                        "--one", kind, str(wr), str(rows or 0)], check=True)


if __name__ == "__main__":
    main()
