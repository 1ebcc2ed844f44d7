#!/usr/bin/env bash
# The image's entrypoint: `train` (the default) runs bsm-train, `serve` runs bsm-serve.
# SageMaker runs `IMAGE train` for training and `IMAGE serve` for hosting and batch transform; its local
# mode passes no argument. Anything after the word goes to the program: `IMAGE train --max_epochs 1`.
set -euo pipefail

if [[ $# -eq 0 ]]; then set -- train; fi

case "$1" in
    train) shift; exec bsm-train "$@" ;;
    serve) shift; exec bsm-serve "$@" ;;
    # hyperparameter flags alone, as in `IMAGE --max_epochs 1`: training
    --*) exec bsm-train "$@" ;;
    *)
        # a program of the image, for debugging: `docker run -it IMAGE bash`
        if command -v "$1" > /dev/null 2>&1; then exec "$@"; fi
        echo "entrypoint: unknown command '$1'; expected 'train' or 'serve' (optionally followed by --key value flags), or a program in the image such as bash" >&2
        exit 64
        ;;
esac
