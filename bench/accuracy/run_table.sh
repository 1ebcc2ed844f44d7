#!/usr/bin/env bash
# Rerun the whole benchmark table: bash bench/accuracy/run_table.sh   (about 85 min on 2 cores)
# Peer runs go one at a time: the machine has 2 cores and each run uses both.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=bench/out
rows=bench/results/accuracy/table  # the rows bench/RESULTS.md is built from (committed); logs stay in bench/out
mkdir -p "$out" "$rows"
rm -f "$rows"/{peer,baselines,automm}.jsonl "$rows/run_table.log" "$out"/{peer,ours,automm}.log  # fresh rows
log() { echo "$(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) | $*" | tee -a "$rows/run_table.log"; }

bash bench/accuracy/setup_peer.sh

log "baselines"
.venv/bin/python bench/accuracy/baselines.py --out "$rows/baselines.jsonl"

peer=bench/.venv-peer/bin/python
# gating (its best-known method), its two defaults (TabularConfig's text_only, which never sees the tabular columns,
# so Rating is moot; its command line's individual_mlps_..._then_concat), then gating with bf16 autocast like ours.
for args in "gating_on_cat_and_num_feats_then_sum --with-rating" \
            "gating_on_cat_and_num_feats_then_sum --without-rating" \
            "text_only --without-rating" \
            "individual_mlps_on_cat_and_numerical_feats_then_concat --with-rating" \
            "individual_mlps_on_cat_and_numerical_feats_then_concat --without-rating" \
            "gating_on_cat_and_num_feats_then_sum --without-rating --bf16"; do
    log "peer $args"
    # shellcheck disable=SC2086  # $args is deliberately split into flags
    "$peer" bench/accuracy/peer_run.py --seed 42 --out "$rows/peer.jsonl" --combine-feat-method $args 2>>"$out/peer.log"
    log "done (5- and 15-min load ~ load during the run)"
done

# the second peer, AutoGluon's AutoMM, with its defaults but the protocol's (bench/accuracy/automm_run.py says which)
bash bench/accuracy/setup_automm.sh
for args in "--without-rating" "--with-rating"; do
    log "automm $args"
    # shellcheck disable=SC2086  # $args is a flag
    bench/.venv-automm/bin/python bench/accuracy/automm_run.py --seed 42 --out "$rows/automm.jsonl" $args \
        >>"$out/automm.log" 2>&1
    log "done"
done

# bsm_nb ("ours"): the exported train program, same protocol, defaults (precision auto: bf16-mixed where the CPU has
# bf16 in hardware), each fusion and the ablations; then 32-true, and the earlier defaults (fp32, BERT's attention
# dropout, no width rounding), to show what each change gave.
rm -f "$rows/ours.jsonl" "$rows/step_profile.txt"
for args in "concat --without-rating" "gated --without-rating" "text_only --without-rating" \
            "tab_only --without-rating" \
            "concat --with-rating" "gated --with-rating" "tab_only --with-rating" \
            "concat --without-rating --precision 32-true" \
            "concat --without-rating --precision 32-true --hp attention_dropout=0.1 --hp pad_multiple=1"; do
    log "ours $args"
    # shellcheck disable=SC2086  # $args is deliberately split into flags
    .venv/bin/python bench/accuracy/ours_run.py --seed 42 --out "$rows/ours.jsonl" --fusion $args 2>>"$out/ours.log"
done

log "step profile"
.venv/bin/python bench/speed/step_profile.py 80 > "$rows/step_profile.txt" 2>>"$out/ours.log"

log "make_table"
.venv/bin/python bench/make_table.py --record-env  # this machine, Python and venvs into $rows/env.json, then RESULTS.md
