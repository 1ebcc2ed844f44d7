"""Field and text baselines of the accuracy suite: test/val AUROC, log loss and ECE of four non-network models.

    .venv/bin/python bench/accuracy/suite/baselines.py [--data NAME ...] [--seed 42]
                                                       [--out bench/results/accuracy/suite.jsonl]
    .venv/bin/python bench/accuracy/suite/baselines.py --full-train --seed 0 # recipe check on full train (rows to /tmp)

Protocol (bench/accuracy/suite/datasets.py): train = the first 2,000 rows of train.csv, full val and test; --full-train
uses all of train.csv (its rows go to /tmp/suite_full_train.jsonl unless --out says otherwise) and, with --seed 0, is
the data READMEs' own setting. Runs, one JSON row each (figures by bench/accuracy/suite/scoring.py from predicted
probabilities):
- `LightGBM fields`: bsm_nb's own trees on the categorical + numeric fields alone: bsm_nb.reading.read_data_file (cells
  as text, as bsm-train reads them), FeatureProcessor.fit on train, ensemble.field_features, ensemble.fit_trees
  (tree_params, early stopping on val log loss, patience 50), i.e. bsm_nb's fields-only tree partner;
- `HGB fields`: the READMEs' recipe, HistGradientBoostingClassifier(random_state=seed, categorical_features=mask),
  defaults, categoricals ordinal-coded from train frequencies (top 253 levels, the rest one "other" code, missing NaN);
- `TF-IDF+LR text`: text fields joined by a space (missing = ""), TfidfVectorizer(ngram_range=(1, 2),
  max_features=50000, sublinear_tf=True) + LogisticRegression(C=1.0, max_iter=3000);
- `TF-IDF+LR text+fields`: the same TF-IDF block + OneHotEncoder(handle_unknown="infrequent_if_exist",
  min_frequency=2) on the categoricals (missing "__NA__") + median-imputed numerics with missing indicators, then
  standard-scaled; the same logistic regression.
Each run is timed from reading its data to its test probabilities (`wall_s`); `fit_s` is the fit alone. The printout
sets each test/val AUROC beside the data set's baselines.json figure (full train, random_state 0).
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the READMEs' baselines ran on one thread

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

SUITE = Path(__file__).resolve().parent
# bench/accuracy/suite/datasets.py must not shadow Hugging Face's `datasets`:
# import the suite as the package `suite` from bench/accuracy/
sys.path[:] = [str(SUITE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != SUITE]
from suite.datasets import DATA_ROOT, RESULTS, DataSet, append_row, datasets, get  # noqa: E402
from suite.scoring import split_scores  # noqa: E402

RUNS = ("LightGBM fields", "HGB fields", "TF-IDF+LR text", "TF-IDF+LR text+fields")
README_KEY = {"HGB fields": "hgb_cat_num", "TF-IDF+LR text": "tfidf_lr_text",
              "TF-IDF+LR text+fields": "tfidf_lr_text_cat_num"}


def align(p, model_classes, classes) -> np.ndarray:
    "(rows, len(classes)) probabilities in the suite's class order from a model's columns (a class it never saw: 0)."
    cols = [str(c) for c in model_classes]
    out = np.zeros((len(p), len(classes)))
    for j, c in enumerate(classes):
        if c in cols:
            out[:, j] = p[:, cols.index(c)]
    return out


def lightgbm_fields(ds: DataSet, classes: list, seed: int) -> tuple:
    "bsm_nb's trees on the fields alone: (p_val, p_test, fit_s)."
    from bsm_nb.config import BSMConfig
    from bsm_nb.data import FeatureProcessor, encode_labels
    from bsm_nb.reading import read_data_file
    from bsm_nb.ensemble import field_features, fit_trees, tree_proba
    cfg = BSMConfig(id_name=ds.id, text_name=list(ds.text), label_name=ds.label, cat_field_list=list(ds.cat),
                    tab_field_list=list(ds.num), seed=seed)
    split = {k: read_data_file(ds.path(k), ds.columns) for k in ("train", "val", "test")}
    if ds.cap:
        split["train"] = split["train"].iloc[:ds.cap].reset_index(drop=True)
    t = time.perf_counter()
    proc = FeatureProcessor.fit(split["train"], cfg)
    X = {k: field_features(proc, d)[0] for k, d in split.items()}
    y = {k: encode_labels(d[ds.label], proc.label_list, ds.label) for k, d in split.items() if k != "test"}
    cat = field_features(proc, split["train"].iloc[:1])[1]
    booster = fit_trees(X["train"], y["train"], X["val"], y["val"], len(proc.label_list), cat, seed=seed)
    fit_s = time.perf_counter() - t
    p = {k: align(tree_proba(booster, X[k]), proc.label_list, classes) for k in ("val", "test")}
    return p["val"], p["test"], fit_s


def _ordinal_codes(train: pd.Series, top: int = 253):
    "value -> code from train frequencies: the `top` most frequent levels 0..top-1, any other value `top`, NaN missing."
    levels = train.dropna().astype(str).value_counts().index[:top]
    index = {v: i for i, v in enumerate(levels)}
    return lambda s: s.map(lambda v: np.nan if pd.isna(v) else index.get(str(v), top)).astype(float)


def hgb_fields(ds: DataSet, data: dict, seed: int) -> tuple:
    "HistGradientBoosting on the categorical + numeric fields (the READMEs' hgb_cat_num)."
    from sklearn.ensemble import HistGradientBoostingClassifier
    coders = {c: _ordinal_codes(data["train"][c]) for c in ds.cat}

    def X(df):
        cols = {c: coders[c](df[c]) for c in ds.cat}
        cols.update({c: pd.to_numeric(df[c], errors="coerce").astype(float) for c in ds.num})
        return pd.DataFrame(cols)[ds.cat + ds.num]

    mask = [True] * len(ds.cat) + [False] * len(ds.num)
    clf = HistGradientBoostingClassifier(random_state=seed, categorical_features=mask)
    t = time.perf_counter()
    clf.fit(X(data["train"]), data["train"][ds.label].astype(str))
    return clf, X, time.perf_counter() - t


def _text(ds: DataSet, df: pd.DataFrame) -> pd.Series:
    "The text fields joined by a space, missing as ''."
    return df[ds.text].fillna("").astype(str).agg(" ".join, axis=1)


def tfidf_lr(ds: DataSet, data: dict, with_fields: bool) -> tuple:
    "TF-IDF (1-2 grams) + logistic regression on the text; `with_fields`: + one-hot categoricals, scaled numerics."
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    blocks = [("text", TfidfVectorizer(ngram_range=(1, 2), max_features=50000, sublinear_tf=True), "__text__")]
    if with_fields and ds.cat:
        blocks.append(("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=2), ds.cat))
    if with_fields and ds.num:
        blocks.append(("num", Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True)),
                                        ("scale", StandardScaler())]), ds.num))

    def X(df):
        out = pd.DataFrame({"__text__": _text(ds, df)})
        for c in ds.cat:
            out[c] = df[c].astype(object).where(df[c].notna(), "__NA__").astype(str)
        for c in ds.num:
            out[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
        return out

    clf = Pipeline([("features", ColumnTransformer(blocks)), ("lr", LogisticRegression(C=1.0, max_iter=3000))])
    t = time.perf_counter()
    clf.fit(X(data["train"]), data["train"][ds.label].astype(str))
    return clf, X, time.perf_counter() - t


def run_one(ds: DataSet, run: str, seed: int, classes: list) -> dict:
    "One baseline on `ds`: the row's figures and times."
    t0 = time.perf_counter()
    if run == "LightGBM fields":
        p_val, p_test, fit_s = lightgbm_fields(ds, classes, seed)
        y_val, y_test = (ds.y(pd.read_csv(ds.path(k))[ds.label], classes) for k in ("val", "test"))
    else:
        data = {k: ds.load(k) for k in ("train", "val", "test")}
        clf, X, fit_s = (hgb_fields(ds, data, seed) if run == "HGB fields"
                         else tfidf_lr(ds, data, with_fields=run.endswith("+fields")))
        p_val, p_test = (align(clf.predict_proba(X(data[k])), clf.classes_, classes) for k in ("val", "test"))
        y_val, y_test = (ds.y(data[k][ds.label], classes) for k in ("val", "test"))
    wall_s = time.perf_counter() - t0
    return dict(split_scores(p_val, y_val, p_test, y_test), fit_s=round(fit_s, 2), wall_s=round(wall_s, 2),
                _sk=_sklearn_auroc(p_test, y_test))


def _sklearn_auroc(p, y) -> float:
    "scikit-learn's AUROC of the same probabilities (printed beside torchmetrics' as a check of the definition)."
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(y, p[:, 1]) if p.shape[1] == 2 else roc_auc_score(y, p, multi_class="ovr"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", nargs="+", default=list(datasets()), help="data sets (default: all six)")
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--full-train", action="store_true", help="all of train.csv (a recipe check, not the protocol)")
    ap.add_argument("--out", default=None,
                    help="default: bench/results/accuracy/suite.jsonl; with --full-train /tmp/suite_full_train.jsonl")
    a = ap.parse_args()
    out = a.out or ("/tmp/suite_full_train.jsonl" if a.full_train else str(RESULTS))
    import json
    for name in a.data:
        ds = get(name)
        if a.full_train:
            ds.cap = None
        classes, n_train = ds.classes(), len(ds.load("train"))
        readme = DATA_ROOT / ds.folder / "baselines.json"
        ref = json.loads(readme.read_text()) if readme.is_file() else {}
        for run in a.runs:
            r = run_one(ds, run, a.seed, classes)
            sk = r.pop("_sk")
            key = README_KEY.get(run)
            ref_t, ref_v = ref.get("auroc_test", {}).get(key), ref.get("auroc_val", {}).get(key)
            print(f"{name:16s} {run:22s} test AUROC {r['test']['auroc']:.4f} (sklearn {sk:.4f}, README "
                  f"{ref_t if ref_t is None else round(ref_t, 4)}) val {r['val']['auroc']:.4f} (README "
                  f"{ref_v if ref_v is None else round(ref_v, 4)}) loss {r['test']['loss']:.4f} "
                  f"ECE {r['test']['ece']:.4f} {r['wall_s']:.1f}s", flush=True)
            append_row(dict(kind="baseline", data=name, run=run, seed=a.seed, hp={}, train_rows=n_train, **r), out)


if __name__ == "__main__":
    main()
