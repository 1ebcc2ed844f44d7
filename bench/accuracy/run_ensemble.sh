#!/usr/bin/env bash
# The parts of bsm_nb's default model (the network, LightGBM trees, their blend; calibrated) on Women's Clothing
# without and with Rating (seeds 42, 43, 44), the Rating 1-5 multiclass set and the synthetic set (seed 42), one run
# after another; bench/results/accuracy/ensemble.jsonl (committed) is replaced by a line per run
# (bench/accuracy/ensemble_run.py); then bench/make_table.py rebuilds the tables in bench/RESULTS.md.
#   bash bench/accuracy/run_ensemble.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
rows=bench/results/accuracy/ensemble.jsonl
rm -f "$rows"  # fresh rows
run() { echo "$(date -u +%FT%TZ) ensemble_run $*" >&2; "$PY" bench/accuracy/ensemble_run.py --out "$rows" "$@"; }
for seed in 42 43 44; do
  run --data womens --seed "$seed"
  run --data womens --with-rating --seed "$seed"
done
run --data womens-multiclass --seed 42
run --data synthetic --seed 42
"$PY" bench/make_table.py
