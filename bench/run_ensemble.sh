#!/usr/bin/env bash
# Issues 15 and 16: bsm_nb's default model (the network, LightGBM trees, their blend; calibrated) on Women's Clothing
# without and with Rating (seeds 42, 43, 44), the Rating 1-5 multiclass set and the synthetic set (seed 42), one run
# after another; bench/out/ensemble.jsonl gets a line per run (bench/ensemble_run.py).
#   bash bench/run_ensemble.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
run() { echo "$(date -u +%FT%TZ) ensemble_run $*" >&2; (cd bench && "../$PY" ensemble_run.py --out out/ensemble.jsonl "$@"); }
for seed in 42 43 44; do
  run --data womens --seed "$seed"
  run --data womens --with-rating --seed "$seed"
done
run --data womens-multiclass --seed 42
run --data synthetic --seed 42
