"""One bsm_nb run of the accuracy suite: test/val AUROC, log loss and ECE of its answers and each part; its times.

    .venv/bin/python bench/accuracy/suite/run_bsm.py --data NAME --seed S [--hp KEY=VALUE ...]
                                                     [--out bench/results/accuracy/suite.jsonl]

Protocol (bench/accuracy/suite/datasets.py): the first 2,000 rows of train.csv, full val and test; bsm_nb's defaults
except max_epochs 2, num_threads 2, checkpoint_every_n_steps 0 and the seed (--hp overrides any of them and names the
run); encoder the packaged all-MiniLM-L6-v2 (`pretrained_model` left at its default). The run is the real `bsm-train`
program (a subprocess) on a SageMaker tree in a temp dir. From its model dir:
- the answers' figures from predictions_val.csv / predictions.csv (the probabilities the model answers with) through
  bench/accuracy/suite/scoring.py, as every other row; metrics.json's top-level val/test when a file lacks
  probabilities;
- every part metrics.json's `parts` holds (network, trees, answers, ...: whatever is there), its val/test auroc, loss
  and ece (None where metrics.json has none); the whole `ensemble` dict; `fit_s` (the network's fit);
- extra_s = ensemble['fit_s'] (the trees, temperature and blend), extra_share = extra_s / fit_s;
- wall_s = the bsm-train process's wall time, start to exit.
"""
import time

T0 = time.perf_counter()

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

SUITE = Path(__file__).resolve().parent
# bench/accuracy/suite/datasets.py must not shadow Hugging Face's `datasets`:
# import the suite as the package `suite` from bench/accuracy/
sys.path[:] = [str(SUITE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != SUITE]
from suite.datasets import RESULTS, append_row, datasets, get, write_tree  # noqa: E402
from suite.scoring import scores  # noqa: E402
from ours_run import key_value  # noqa: E402  (--hp KEY=VALUE, as the other bench scripts read it)

BIN = Path(sys.executable).parent
FIGURES = ("auroc", "loss", "ece")


def _label_index(labels: pd.Series, label_list: list) -> np.ndarray:
    "Class indices of predictions' true_label column (a spreadsheet guard's leading quote undone)."
    index = {str(n): i for i, n in enumerate(label_list)}
    out = [index.get(v, index.get(v[1:] if v.startswith("'") else v)) for v in labels.astype(str)]
    if any(i is None for i in out):
        raise ValueError(f"true labels {sorted({v for v, i in zip(labels, out) if i is None})[:5]} not in {label_list}")
    return np.array(out, dtype=np.int64)


def file_probabilities(path: Path, label_list: list) -> tuple | None:
    "((rows, classes) probabilities, class indices) from a predictions file; None when it holds no probabilities."
    df = pd.read_csv(path, dtype={"true_label": str, "label": str})
    if "true_label" not in df:
        return None
    if len(label_list) == 2 and "probability" in df:
        p1 = df["probability"].to_numpy(dtype=np.float64)
        p = np.column_stack([1 - p1, p1])
    elif all(f"prob_{n}" in df for n in label_list):
        p = df[[f"prob_{n}" for n in label_list]].to_numpy(dtype=np.float64)
    else:
        return None
    return p, _label_index(df["true_label"], label_list)


def part_figures(split: dict) -> dict:
    "{auroc, loss, ece} of one part's split in metrics.json (None where absent)."
    return {k: split.get(k) for k in FIGURES}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, choices=list(datasets()))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--hp", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                    help="another bsm_nb hyperparameter (repeatable; named in the row)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--keep", default=None, help="copy the model dir here (default: removed with the temp dir)")
    a = ap.parse_args()
    ds, hp = get(a.data), dict(a.hp)
    with tempfile.TemporaryDirectory(prefix="bsm_suite_") as d:
        base = write_tree(ds, Path(d), a.seed, hp)
        env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        t = time.perf_counter()
        res = subprocess.run([str(BIN / "bsm-train")], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if res.returncode != 0:
            sys.exit(f"bsm-train failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        model = base / "model"
        m = json.loads((model / "metrics.json").read_text())
        label_list = json.loads((model / "bsm_model.json").read_text())["label_list"]
        answers, source = {}, "predictions files"
        for split, fname in (("val", "predictions_val.csv"), ("test", "predictions.csv")):
            got = file_probabilities(model / fname, label_list) if (model / fname).is_file() else None
            if got is None:
                answers[split], source = part_figures(m.get(split, {})), "metrics.json"
            else:
                answers[split] = scores(*got)
        if a.keep:
            import shutil
            shutil.copytree(model, a.keep, dirs_exist_ok=True)
    for split in ("val", "test"):  # the files and metrics.json score the same probabilities: say so when not
        ref = m.get(split, {}).get("auroc", np.nan)
        if source == "predictions files" and abs(answers[split]["auroc"] - ref) > 1e-4:
            print(f"warning: {split} AUROC from the predictions file {answers[split]['auroc']:.5f} differs from "
                  f"metrics.json's {m[split]['auroc']:.5f}", file=sys.stderr)
    parts = {name: {k: part_figures(s.get(k, {})) for k in ("val", "test") if k in s}
             for name, s in m.get("parts", {}).items()}
    ens = m.get("ensemble", {})
    fit_s, extra_s = m.get("fit_s"), ens.get("fit_s")
    run = "bsm_nb default" + "".join(f", {k}={v}" for k, v in hp.items())
    append_row(dict(kind="bsm", data=a.data, run=run, seed=a.seed, hp=hp, train_rows=m.get("train_rows"),
                    val=answers["val"], test=answers["test"], answers_source=source, parts=parts, ensemble=ens,
                    fit_s=fit_s, extra_s=extra_s,
                    extra_share=(extra_s / fit_s) if fit_s and extra_s is not None else None,
                    wall_s=round(wall, 1), epochs=m.get("epochs"), steps=m.get("steps"),
                    precision=m.get("precision"), predict_mode=m.get("predict_mode")), a.out)


if __name__ == "__main__":
    main()
