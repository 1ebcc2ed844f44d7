#!/usr/bin/env bash
# Serve the model that train_local.sh wrote, on http://localhost:$BSM_PORT (default 8080), until Ctrl-C.
#   docker/local_test/serve_local.sh [args for bsm-serve ...]
# With Docker: `docker run -p PORT:8080 -v COPY:/opt/ml IMAGE serve`; without: the same entrypoint on
# this host with SAGEMAKER_BASE_DIR=COPY. Then try docker/local_test/predict.sh. Settings: see _common.sh.
set -euo pipefail
# shellcheck source=docker/local_test/_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

[[ -d "$work_dir/model" && -n "$(ls -A "$work_dir/model")" ]] \
    || die "no model in $work_dir/model: run docker/local_test/train_local.sh first"

if use_docker; then
    echo "serving $work_dir/model from $image on port $port"
    exec docker run --rm ${docker_run_options[@]+"${docker_run_options[@]}"} -p "$port:8080" -v "$work_dir:/opt/ml" "$image" serve "$@"
else
    echo "serving $work_dir/model on this host (no Docker)"
    SAGEMAKER_BASE_DIR="$work_dir" SAGEMAKER_BIND_TO_PORT="$port" exec "$repo_root/docker/entrypoint.sh" serve "$@"
fi
