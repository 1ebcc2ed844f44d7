#!/usr/bin/env bash
# Train as SageMaker would, on a fresh copy of test_dir/ (the committed files are never written).
#   docker/local_test/train_local.sh [--key value ...]     e.g. --max_epochs 1 --pretrained_model /path
# With Docker: `docker run -v COPY:/opt/ml IMAGE train ...`; without: the same entrypoint on this host,
# with SAGEMAKER_BASE_DIR=COPY. The model lands in COPY/model, where serve_local.sh finds it.
# Settings: see _common.sh.
set -euo pipefail
# shellcheck source=docker/local_test/_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

if [[ -e "$work_dir" ]]; then
    # only ever delete a folder this script made
    [[ -f "$work_dir/$marker" ]] || die "refusing to clear $work_dir: it was not made by train_local.sh (set BSM_LOCAL_WORK_DIR to a new folder)"
    rm -rf "$work_dir" || die "could not clear $work_dir (files written by a container running as root?): remove it, or set BSM_LOCAL_WORK_DIR"
fi
mkdir -p "$work_dir"
touch "$work_dir/$marker"
cp -R "$here/test_dir/." "$work_dir/"
mkdir -p "$work_dir/model" "$work_dir/output"

if use_docker; then
    echo "training in $image, /opt/ml = $work_dir"
    docker run --rm ${docker_run_options[@]+"${docker_run_options[@]}"} -v "$work_dir:/opt/ml" "$image" train "$@"
else
    echo "training on this host (no Docker), SAGEMAKER_BASE_DIR=$work_dir"
    SAGEMAKER_BASE_DIR="$work_dir" "$repo_root/docker/entrypoint.sh" train "$@"
fi
echo "model in $work_dir/model"
