"""The suite's figures from predicted probabilities through bsm_nb's own metric functions: one definition, all rows.

    .venv/bin/python bench/accuracy/suite/scoring.py --probs RUN.npz --row RUN.json
                                                     [--out bench/results/accuracy/suite.jsonl]

Per split: `auroc` = bsm_nb.evaluate.compute_metrics (torchmetrics; binary: P(positive class), multiclass: macro
one-vs-rest), `loss` = bsm_nb.evaluate.log_loss (mean -log p(true class), p clipped at 1e-15: metrics.json's
`loss`), `ece` = bsm_nb.evaluate.expected_calibration_error (15 equal-width bins, l1; binary: P(positive) against
the positive rate, multiclass: the top probability against accuracy).
The command line scores a run made elsewhere (bench/.venv-automm has no bsm_nb): RUN.npz holds p_val, y_val,
p_test, y_test ((rows, classes) probabilities and class indices); RUN.json is the row without figures; the row, with
`val` and `test` figures added, is appended to --out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

_SUITE = Path(__file__).resolve().parent  # run as a script, its datasets.py must not shadow Hugging Face's `datasets`
sys.path[:] = [str(_SUITE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _SUITE]

from bsm_nb.evaluate import log_loss
from bsm_nb.evaluate import compute_metrics, expected_calibration_error


def scores(probs, y) -> dict:
    "{'auroc', 'loss', 'ece'} of (rows, classes) probabilities `probs` against class indices `y`."
    p, y = np.asarray(probs, dtype=np.float64), np.asarray(y, dtype=np.int64)
    if p.ndim != 2 or p.shape[1] < 2 or p.shape[0] != len(y):
        raise ValueError(f"probabilities of shape {p.shape} for {len(y)} labels; expected (rows, classes >= 2)")
    k = p.shape[1]
    auroc = compute_metrics(p, y, ["auroc"], "binary" if k == 2 else "multiclass", k)["auroc"]
    return {"auroc": auroc, "loss": log_loss(p, y), "ece": expected_calibration_error(p, y)}


def split_scores(p_val, y_val, p_test, y_test) -> dict:
    "{'val': scores, 'test': scores}."
    return {"val": scores(p_val, y_val), "test": scores(p_test, y_test)}


def main():
    from suite.datasets import RESULTS, append_row

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--probs", required=True)
    ap.add_argument("--row", required=True)
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args()
    z = np.load(a.probs)
    row = json.loads(Path(a.row).read_text())
    append_row({**row, **split_scores(z["p_val"], z["y_val"], z["p_test"], z["y_test"])}, a.out)


if __name__ == "__main__":
    main()
