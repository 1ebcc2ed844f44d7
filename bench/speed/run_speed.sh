#!/usr/bin/env bash
# The side-by-side speed and memory runs (bsm_nb vs the peer), one after another on one quiet machine:
#   bash bench/speed/run_speed.sh   (about 30 min on 2 cores without AutoMM; each AutoMM run adds 15-40 min:
#   WITH_AUTOMM=0 leaves them out, keeping earlier AutoMM rows).
# Rows append to bench/results/accuracy/table/*.jsonl (each names its CPU); bench/make_table.py then rebuilds
# bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=bench/out
rows=bench/results/accuracy/table  # the rows bench/RESULTS.md is built from (committed); logs stay in bench/out
mkdir -p "$out" "$rows"
log() { echo "$(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) | $*" | tee -a "$rows/run_table.log"; }

bash bench/accuracy/setup_peer.sh
log "baselines"
.venv/bin/python bench/accuracy/baselines.py --out "$rows/baselines.jsonl"

# The peer's default precision (fp32) with its best-known method, the row every speed goal is measured against.
log "peer gating_on_cat_and_num_feats_then_sum --without-rating"
bench/.venv-peer/bin/python bench/accuracy/peer_run.py --seed 42 --out "$rows/peer.jsonl" \
    --combine-feat-method gating_on_cat_and_num_feats_then_sum --without-rating 2>>"$out/peer.log"

# bsm_nb: the defaults (precision auto), fp32 training (what a CPU without bf16 runs; int8 prediction by default),
# and fp32 without the speed and memory levers (word embeddings trained, fp32 prediction, glibc's own mmap threshold).
for args in "concat --without-rating" "concat --with-rating" "concat --without-rating --precision 32-true"; do
    log "ours $args"
    # shellcheck disable=SC2086  # $args is deliberately split into flags
    .venv/bin/python bench/accuracy/ours_run.py --seed 42 --out "$rows/ours.jsonl" --fusion $args 2>>"$out/ours.log"
done
log "ours concat --without-rating --precision 32-true, before the speed and memory levers"
BSM_MMAP_THRESHOLD=0 .venv/bin/python bench/accuracy/ours_run.py --seed 42 --out "$rows/ours.jsonl" \
    --fusion concat --without-rating \
    --precision 32-true --hp freeze_word_embeddings=false --hp predict_int8=false 2>>"$out/ours.log"

if [ "${WITH_AUTOMM:-1}" = 1 ]; then
    bash bench/accuracy/setup_automm.sh
    for rating in --without-rating --with-rating; do
        log "automm $rating"
        bench/.venv-automm/bin/python bench/accuracy/automm_run.py $rating --seed 42 --out "$rows/automm.jsonl" \
            >>"$out/automm.log" 2>&1
    done
fi

log "make_table"
.venv/bin/python bench/make_table.py --record-env  # this machine, Python and venvs into $rows/env.json, then RESULTS.md
