# Settings shared by train_local.sh, serve_local.sh and predict.sh (sourced, not run).
#   BSM_IMAGE           image to run (default bsm-nb:latest)
#   BSM_LOCAL_MODE      auto (docker when `docker info` works, else this host), docker or host
#   BSM_LOCAL_WORK_DIR  the copy of test_dir that plays /opt/ml (default $TMPDIR/bsm_local_test)
#   BSM_PORT            host port of the server (default 8080)
# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this file

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
image="${BSM_IMAGE:-bsm-nb:latest}"
work_dir="${BSM_LOCAL_WORK_DIR:-${TMPDIR:-/tmp}/bsm_local_test}"
port="${BSM_PORT:-8080}"
marker=".bsm_local_test"

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

use_docker() {
    case "${BSM_LOCAL_MODE:-auto}" in
        host) return 1 ;;
        docker)
            docker info > /dev/null 2>&1 || die "BSM_LOCAL_MODE=docker but 'docker info' fails: is the Docker daemon running?"
            return 0 ;;
        auto) command -v docker > /dev/null 2>&1 && docker info > /dev/null 2>&1 ;;
        *) die "BSM_LOCAL_MODE='${BSM_LOCAL_MODE}': expected auto, docker or host" ;;
    esac
}

# `docker run` options: the GPUs when there are some, and Studio's only allowed network.
# (Used as ${docker_run_options[@]+...}: bash 3.2, macOS's, calls an empty array unbound under set -u.)
docker_run_options=()
if command -v nvidia-smi > /dev/null 2>&1; then docker_run_options+=(--gpus all); fi
if [[ -f /opt/ml/metadata/resource-metadata.json ]]; then docker_run_options+=(--network sagemaker); fi

# On the host, the console scripts come from the active environment, or the repository's .venv
if ! command -v bsm-train > /dev/null 2>&1 && [[ -x "$repo_root/.venv/bin/bsm-train" ]]; then
    PATH="$repo_root/.venv/bin:$PATH"
fi
