#!/usr/bin/env bash
# After bench/accuracy/run_table.sh, appended to its rows: seeds 43 and 44 of the headline's AUROC comparison
# (without Rating: bsm_nb concat and the peer's best method there), which make_table pools over seeds (AUROC as
# mean ± std), and the defaults with BERT's attention dropout, to show what attention dropout 0 gives under bf16.
#   bash bench/accuracy/run_extra.sh   (about 30 min on 2 cores)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=bench/out
rows=bench/results/accuracy/table  # the rows bench/RESULTS.md is built from (committed); logs stay in bench/out
log() { echo "$(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) | $*" | tee -a "$rows/run_table.log"; }
test -s "$rows/ours.jsonl" -a -s "$rows/peer.jsonl" ||
    { echo "no rows in $rows: run bash bench/accuracy/run_table.sh first"; exit 1; }

for seed in 43 44; do
    log "ours concat --without-rating --seed $seed"
    .venv/bin/python bench/accuracy/ours_run.py --seed "$seed" --out "$rows/ours.jsonl" \
        --fusion concat --without-rating 2>>"$out/ours.log"
    log "peer individual_mlps_on_cat_and_numerical_feats_then_concat --without-rating --seed $seed"
    bench/.venv-peer/bin/python bench/accuracy/peer_run.py --seed "$seed" --out "$rows/peer.jsonl" \
        --combine-feat-method individual_mlps_on_cat_and_numerical_feats_then_concat --without-rating 2>>"$out/peer.log"
done

log "ours concat --without-rating --hp attention_dropout=0.1"
.venv/bin/python bench/accuracy/ours_run.py --seed 42 --out "$rows/ours.jsonl" --fusion concat --without-rating \
    --hp attention_dropout=0.1 2>>"$out/ours.log"

log "make_table"
.venv/bin/python bench/make_table.py --record-env  # this machine, Python and venvs into $rows/env.json, then RESULTS.md
