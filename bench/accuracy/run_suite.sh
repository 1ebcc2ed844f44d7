#!/usr/bin/env bash
# The accuracy suite (bench/accuracy/suite/): baselines, bsm_nb default per data set x seed, AutoMM, then the tables in
# bench/RESULTS.md; every run appends a row to bench/results/accuracy/suite.jsonl
# (protocol: bench/accuracy/suite/datasets.py).
#   bash bench/accuracy/run_suite.sh
#   DATA="wine_reviews_5k liar" SEEDS="42" ALT_HP="" WITH_AUTOMM=0 WITH_EARLIER=0 bash bench/accuracy/run_suite.sh
# AutoMM runs on disaster_tweets and wine_reviews_5k (those of DATA), seed 42, in bench/.venv-automm
# (bash bench/accuracy/setup_automm.sh); skipped with a message when that venv is missing or WITH_AUTOMM=0.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
AUTOMM_PY=bench/.venv-automm/bin/python
DATA=${DATA:-"airline_tweets disaster_tweets wine_reviews_5k liar womens womens-rating"}
SEEDS=${SEEDS:-"42 43 44"}
AUTOMM_DATA=${AUTOMM_DATA:-"disaster_tweets wine_reviews_5k"}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
say() { echo "$(date -u +%FT%TZ) $*" >&2; }

say "baselines: $DATA"
# shellcheck disable=SC2086
nice -n 10 "$PY" bench/accuracy/suite/baselines.py --data $DATA

for data in $DATA; do
  for seed in $SEEDS; do
    say "bsm_nb default: $data seed $seed"
    nice -n 10 "$PY" bench/accuracy/suite/run_bsm.py --data "$data" --seed "$seed"
  done
done

# small-data defaults of the network, each judged on val against the default of the same seed (table.py)
ALT_HP=${ALT_HP:-"head_lr=0.003"}
for hp in $ALT_HP; do
  for data in $DATA; do
    say "bsm_nb $hp: $data seed 42"
    nice -n 10 "$PY" bench/accuracy/suite/run_bsm.py --data "$data" --seed 42 --hp "$hp"
  done
done

# Women's Clothing on the protocol its goals were set on (first 4,000 train rows, 1 epoch):
# bench/accuracy/ensemble_run.py
if [ "${WITH_EARLIER:-1}" = 1 ]; then
  for seed in $SEEDS; do
    for wr in "" --with-rating; do
      say "Women's Clothing, earlier protocol $wr seed $seed"
      # shellcheck disable=SC2086
      nice -n 10 "$PY" bench/accuracy/ensemble_run.py --data womens $wr --seed "$seed" \
        --out bench/results/accuracy/suite_womens_earlier_protocol.jsonl
    done
  done
fi

if [ "${WITH_AUTOMM:-1}" = 0 ]; then
  say "AutoMM skipped (WITH_AUTOMM=0)"
elif [ ! -x "$AUTOMM_PY" ]; then
  say "AutoMM skipped: $AUTOMM_PY is missing (make it with: bash bench/accuracy/setup_automm.sh)"
else
  for data in $AUTOMM_DATA; do
    case " $DATA " in *" $data "*) ;; *) continue ;; esac
    say "AutoMM: $data seed 42"
    nice -n 10 "$AUTOMM_PY" bench/accuracy/suite/automm.py --data "$data" --seed 42
  done
fi

"$PY" bench/accuracy/suite/table.py
