"""The accuracy suite's six data sets, its protocol, and the SageMaker tree of one bsm_nb run (no bsm_nb import).

    .venv/bin/python bench/accuracy/suite/datasets.py            # prints each data set's spec, rows and classes

Protocol (every row of bench/results/accuracy/suite.jsonl): train = the first TRAIN_CAP (2,000) rows of train.csv, the
cap that keeps one bsm_nb network run (2 epochs) at about 3 minutes on 2 cores; full val.csv and test.csv. Data sets:
airline_tweets (3 classes), disaster_tweets (2), wine_reviews_5k (24), liar (6), from their baselines.json `spec`;
Women's Clothing twice: `womens` (label Recommended IND, WITHOUT Rating) and `womens-rating` (Rating a numeric field).
Data are read from <repo>/../shared/data/<folder>/ (read-only; nothing is copied into the repo).
Imports only the standard library, pandas and bench/bench_metrics.py, so bench/.venv-automm can use it too.
"""
from __future__ import annotations

import datetime
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

SUITE_DIR = Path(__file__).resolve().parent
REPO = SUITE_DIR.parents[2]
DATA_ROOT = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results" / "accuracy" / "suite.jsonl"  # committed: RESULTS.md is rebuilt from it
TRAIN_CAP = 2000  # first rows of train.csv; a network run (2 epochs) then takes ~3 minutes on 2 cores
SEEDS = (42, 43, 44)
NAMES = ("airline_tweets", "disaster_tweets", "wine_reviews_5k", "liar", "womens", "womens-rating")  # the suite's order
# bsm_nb's defaults but for these (hyperparameters.json values are strings, lists JSON-encoded)
NETWORK_HP = {"max_epochs": "2", "num_threads": "2", "checkpoint_every_n_steps": "0"}
PROTOCOL = (f"train = first {TRAIN_CAP:,} rows of train.csv (cap: one bsm_nb network run ~3 min on 2 cores), "
            "full val.csv and test.csv; bsm_nb at its defaults but max_epochs 2, num_threads 2, "
            "checkpoint_every_n_steps 0, seeds 42/43/44, encoder the packaged all-MiniLM-L6-v2")

sys.path.insert(0, str(SUITE_DIR.parents[1]))  # bench/: bench_metrics
from bench_metrics import cpu_label  # noqa: E402


@dataclass
class DataSet:
    "One suite data set: where its files are and which columns play which role."
    name: str
    folder: str  # under DATA_ROOT
    id: str
    text: list
    label: str
    n_classes: int
    cat: list = field(default_factory=list)
    num: list = field(default_factory=list)
    cap: int = TRAIN_CAP

    def path(self, split: str) -> Path:
        "The csv of `split` (train, val or test)."
        return DATA_ROOT / self.folder / f"{split}.csv"

    @property
    def columns(self) -> list:
        "Every column a run reads: id, text, categorical, numeric, label."
        return [self.id, *self.text, *self.cat, *self.num, self.label]

    def load(self, split: str, dtype=None, keep_default_na: bool = True) -> pd.DataFrame:
        "The protocol's rows of `split` (train capped at `cap`), restricted to `columns`."
        nrows = self.cap if split == "train" else None
        df = pd.read_csv(self.path(split), nrows=nrows, dtype=dtype, keep_default_na=keep_default_na)
        return df[self.columns]

    def classes(self) -> list:
        "Class names (str) in the suite's order: sorted, numbers numerically, so a binary 0/1 has the positive last."
        names = {str(v) for split in ("train", "val", "test") for v in self.load(split)[self.label].dropna()}
        return sorted(names, key=lambda s: (not s.lstrip("-").isdigit(), int(s) if s.lstrip("-").isdigit() else 0, s))

    def y(self, labels: pd.Series, classes: list | None = None):
        "Class indices of `labels` into `classes` (default `self.classes()`)."
        import numpy as np
        index = {c: i for i, c in enumerate(classes or self.classes())}
        return np.array([index[str(v)] for v in labels], dtype=np.int64)


def _from_baselines(name: str, n_classes: int) -> DataSet:
    spec = json.loads((DATA_ROOT / name / "baselines.json").read_text())["spec"]
    return DataSet(name, name, spec["id"], list(spec["text"]), spec["label"], n_classes, list(spec["cat"]),
                   list(spec["num"]))


def _womens(with_rating: bool) -> DataSet:
    info = json.loads((DATA_ROOT / "womens_clothing" / "column_info.json").read_text())
    nums = [c for c in info["num_cols"] if with_rating or c != "Rating"]
    return DataSet("womens-rating" if with_rating else "womens", "womens_clothing", "Unnamed: 0",
                   list(info["text_cols"]), info["label_col"], 2, list(info["cat_cols"]), nums)


def datasets() -> dict:
    "name -> DataSet, in the suite's order."
    out = [_from_baselines("airline_tweets", 3), _from_baselines("disaster_tweets", 2),
           _from_baselines("wine_reviews_5k", 24), _from_baselines("liar", 6), _womens(False), _womens(True)]
    assert tuple(d.name for d in out) == NAMES
    return {d.name: d for d in out}


def get(name: str) -> DataSet:
    "The data set called `name`; a `SystemExit` naming the known ones otherwise."
    all_ = datasets()
    if name not in all_:
        raise SystemExit(f"unknown data set {name!r}; expected one of {', '.join(all_)}")
    return all_[name]


def hyperparameters(ds: DataSet, seed: int, extra: dict | None = None) -> dict:
    "hyperparameters.json of a bsm_nb run on `ds`: its fields, the protocol's settings, then `extra` (all strings)."
    hp = {"id_name": _tree_id(ds), "text_name": json.dumps(ds.text), "label_name": ds.label,
          "cat_field_list": json.dumps(ds.cat), "tab_field_list": json.dumps(ds.num), **NETWORK_HP,
          "seed": str(seed)}
    return {**hp, **{k: str(v) for k, v in (extra or {}).items()}}


def _tree_id(ds: DataSet) -> str:
    "The id column's name in a written tree: Women's Clothing's unnamed index ('Unnamed: 0') becomes row_id."
    return ds.id if re.fullmatch(r"\w+", ds.id) else "row_id"


def write_tree(ds: DataSet, base: Path, seed: int, extra: dict | None = None) -> Path:
    """SageMaker layout under `base`: input/data/{train,val,test}/<split>.csv (the protocol's rows, only the spec's
    columns, cells as in the source files) and input/config/hyperparameters.json; returns `base`."""
    base = Path(base)
    for split in ("train", "val", "test"):
        df = ds.load(split, dtype=str, keep_default_na=False).rename(columns={ds.id: _tree_id(ds)})
        (base / "input/data" / split).mkdir(parents=True, exist_ok=True)
        df.to_csv(base / "input/data" / split / f"{split}.csv", index=False)
    (base / "input/config").mkdir(parents=True, exist_ok=True)
    (base / "input/config/hyperparameters.json").write_text(json.dumps(hyperparameters(ds, seed, extra), indent=1))
    return base


def today() -> str:
    "The date rows carry (UTC, ISO)."
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def append_row(row: dict, out: Path | str = RESULTS) -> dict:
    "Add `cpu` and `date` when absent and append `row` as one JSON line to `out`; prints it; returns it."
    row = {**row}
    row.setdefault("cpu", cpu_label())
    row.setdefault("date", today())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def main():
    for ds in datasets().values():
        tr, va, te = (ds.load(s) for s in ("train", "val", "test"))
        cl = ds.classes()
        assert len(cl) == ds.n_classes, (ds.name, cl)
        missing = sorted(set(cl) - {str(v) for v in tr[ds.label]})
        print(f"{ds.name}: rows {len(tr)}/{len(va)}/{len(te)}, {len(cl)} classes"
              f"{', absent from capped train: ' + str(missing) if missing else ''}; id {ds.id!r}, text {ds.text}, "
              f"cat {ds.cat}, num {ds.num}, label {ds.label!r}")


if __name__ == "__main__":
    main()
