#!/usr/bin/env bash
# The serving figures of bench/RESULTS.md ("Serving"), about 17 minutes on 2 cores. Run it on a quiet machine:
# nothing else running, since the clients, nginx and the workers already share the cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p bench/out
rm -f bench/out/serve_load.jsonl
log() { echo "$(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) | $*" | tee -a bench/out/serve_runs.log; }
# the server's own cost: one worker with every core, against predict_frame with as many threads, one client
for p in auto 32-true; do
  log "serve_bench --precision $p"
  $PY bench/serving/serve_bench.py --precision "$p" --seconds 20 --workers 1 | tee "bench/out/serve_bench_$p.md"
done
# the default worker layout (one worker per core) under load and overload, then the layout it replaced
log "serve_load default workers, load and overload"
$PY bench/serving/serve_load.py --phase load,overload | tee bench/out/serve_load_default.md
log "serve_load 1 worker x 2 torch threads"
$PY bench/serving/serve_load.py --phase load --workers 1 --torch-threads 2 | tee bench/out/serve_load_1x2.md
log "serve_load 32-true"
$PY bench/serving/serve_load.py --phase load,overload --precision 32-true | tee bench/out/serve_load_fp32.md
log "serve_worst: the worst requests for one worker (peak RSS, time)"
$PY bench/serving/serve_worst.py | tee bench/out/serve_worst.md
log "done"
