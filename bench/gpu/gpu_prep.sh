#!/usr/bin/env bash
# Prepare, here, what bench/gpu/gpu_check.sh needs on the GPU machine, which reaches no package index and no model hub:
#   .gpu_inputs/minilm-fp16/  the packaged all-MiniLM-L6-v2 as fp16 safetensors + tokenizer + config (dtype float32),
#                             checked to load as fp32 and to match the original (bench/gpu/gpu_inputs.py)
#   .whl/                     wheels of the Python packages bsm_nb imports that the machine's image lacks
# Both are ignored by git (.gitignore) and travel with the device call's `carry`; with the working tree they must stay
# under the call's 64 MiB, which this script checks.
#   bash bench/gpu/gpu_prep.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# Not in the image's package list (/work/.library/device/KINDS.md): fastcore (bsm_nb.serve), flask and two of its needs
# (itsdangerous, blinker). werkzeug is there, in a version nobody has read: carried so that Flask gets the one tested
# here.
# gunicorn is left out: the check serves through Flask's test client. Versions: this venv's, the ones the tests run.
WHEELS=(flask fastcore itsdangerous blinker werkzeug)

"$PY" bench/gpu/gpu_inputs.py --out .gpu_inputs/minilm-fp16

rm -rf .whl
mkdir -p .whl
pins=()
for name in "${WHEELS[@]}"; do
  version=$("$PY" -c 'import sys; from importlib.metadata import version; print(version(sys.argv[1]))' "$name")
  pins+=("$name==$version")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${pins[@]}"
echo "wheels: ${pins[*]}"

# what the device call sends: tracked and untracked-not-ignored files, plus the carried folders
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s -- 2>/dev/null |
  awk '{s += $1} END {print s + 0}')
whl=$(du -sb .whl | cut -f1)
enc=$(du -sb .gpu_inputs | cut -f1)
total=$((tree + whl + enc))
limit=$((64 * 1024 * 1024))
printf 'sizes (bytes): working tree %d, .whl %d, .gpu_inputs %d, total %d = %.1f MiB of 64 MiB\n' \
  "$tree" "$whl" "$enc" "$total" "$(echo "$total" | awk '{print $1 / 1048576}')"
if ((total > limit)); then
  echo "gpu_prep: $total bytes is over the device call's 64 MiB" >&2
  exit 1
fi
