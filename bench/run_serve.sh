#!/usr/bin/env bash
# The serving figures of bench/RESULTS.md ("Serving"), about 15 minutes on 2 cores. Run it on a quiet machine:
# nothing else running, since the clients, nginx and the workers already share the cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p bench/out
rm -f bench/out/serve_load.jsonl
log() { echo "$(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) | $*" | tee -a bench/out/serve_runs.log; }
for p in auto 32-true; do
  log "serve_bench --precision $p"
  $PY bench/serve_bench.py --precision "$p" --seconds 20 | tee "bench/out/serve_bench_$p.md"
done
log "serve_load default workers, load and overload"
$PY bench/serve_load.py --phase load,overload | tee bench/out/serve_load_default.md
log "serve_load 2 workers x 1 torch thread"
$PY bench/serve_load.py --phase load --workers 2 --torch-threads 1 | tee bench/out/serve_load_2x1.md
log "serve_load 32-true"
$PY bench/serve_load.py --phase load --precision 32-true | tee bench/out/serve_load_fp32.md
log "done"
