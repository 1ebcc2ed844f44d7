#!/usr/bin/env bash
# GPU check (training speed, serving and MFU on a lent GPU): the train program in bf16-mixed with the real MiniLM
# (carried as an fp16 copy), a serving smoke on the trained model, and the MFU of a BERT-base-sized training step;
# every figure goes to ONE JSON file.
# bench/gpu/gpu_check.py does the work and its docstring says what each figure is.
#
# On a lent GPU machine (H200/H100; torch, transformers, lightning there; no network; about 5 minutes, at most 8):
#   1. here, once:   bash bench/gpu/gpu_prep.sh
#                    (writes .gpu_inputs/minilm-fp16/ and .whl/, both ignored by git, and checks that they and the
#                    working tree stay under the call's 64 MiB)
#   2. the device call:
#        run(command="bash bench/gpu/gpu_check.sh", carry=[".whl", ".gpu_inputs"], timeout_s=540)
#      $OUT/gpu_check.json (the figures) and $OUT/gpu_check.log (all output) come back. The script installs .whl/*.whl
#      into /tmp/site (pip --no-index --no-deps --target), puts the repository and /tmp/site on PYTHONPATH, and stops
#      itself after 500 s (GPU_CHECK_TIMEOUT); the parts are sized to end in about 300.
#      One part again, if time is left:
#        run(command="bash bench/gpu/gpu_check.sh -- --parts mfu", carry=[".whl", ".gpu_inputs"], timeout_s=300)
#
# Here or in CI, on CPU, with the project's venv and no wheels (a tiny random BERT, a few hundred rows, 32-true, a tiny
# MFU model whose MFU is computed but not held to the goal; well under a minute; tests/test_gpu_check.py runs it):
#   bash bench/gpu/gpu_check.sh --smoke [--out FILE]          (or GPU_CHECK_SMOKE=1 bash bench/gpu/gpu_check.sh)
#
# Options: --smoke; --out FILE (default $OUT/gpu_check.json when $OUT is set, else bench/out/gpu_check_<profile>.json);
# --python PY (default python3 for the GPU, .venv/bin/python for --smoke); everything after -- goes to
# bench/gpu/gpu_check.py (e.g. -- --device cpu --n-train 400 to run the GPU profile's code paths on a CPU).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

case ${GPU_CHECK_SMOKE:-0} in 1 | true | yes) smoke=1 ;; *) smoke=0 ;; esac
out=''
py=''
extra=()
while (($#)); do
  case $1 in
    --smoke) smoke=1 ;;
    --out) out=${2:?--out needs a file}; shift ;;
    --out=*) out=${1#--out=} ;;
    --python) py=${2:?--python needs an interpreter}; shift ;;
    --python=*) py=${1#--python=} ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "gpu_check.sh: unknown option $1 (options of bench/gpu/gpu_check.py go after --)" >&2; exit 2 ;;
  esac
  shift
done

if ((smoke)); then
  profile=smoke
  limit=${GPU_CHECK_TIMEOUT:-170}
  if [[ -z $py ]]; then if [[ -x .venv/bin/python ]]; then py=.venv/bin/python; else py=python3; fi; fi
else
  profile=gpu
  limit=${GPU_CHECK_TIMEOUT:-500}
  py=${py:-python3}
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

pypath=$repo
if [[ $profile == gpu ]]; then
  if [[ ! -f .gpu_inputs/minilm-fp16/config.json && " ${extra[*]-} " != *" --encoder "* ]]; then
    echo "gpu_check.sh: .gpu_inputs/minilm-fp16 is missing:" \
      "run bash bench/gpu/gpu_prep.sh here and carry .gpu_inputs" >&2
    exit 2
  fi
  if compgen -G '.whl/*.whl' >/dev/null; then
    site=${GPU_CHECK_SITE:-/tmp/site}
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
    pypath=$repo:$site
  fi
fi
export PYTHONPATH=$pypath${PYTHONPATH:+:$PYTHONPATH}

if [[ -z $out ]]; then
  if [[ -n ${OUT:-} ]]; then out=$OUT/gpu_check.json; else out=bench/out/gpu_check_$profile.json; fi
fi
mkdir -p "$(dirname "$out")"
cmd=(timeout -k 15 "$limit" "$py" bench/gpu/gpu_check.py --profile "$profile" --out "$out" ${extra[@]+"${extra[@]}"})
echo "gpu_check.sh: $profile profile, $("$py" -c 'import sys; print(sys.version.split()[0])') at $py; ${cmd[*]}"
t0=$SECONDS
if [[ -n ${OUT:-} && -d ${OUT:-} ]]; then
  set +e
  "${cmd[@]}" 2>&1 | tee "$OUT/gpu_check.log"
  rc=${PIPESTATUS[0]}
  set -e
  if [[ -f $out && $(realpath "$out") != $(realpath "$OUT")/gpu_check.json ]]; then cp "$out" "$OUT/gpu_check.json"; fi
else
  set +e
  "${cmd[@]}"
  rc=$?
  set -e
fi
((rc != 124)) || echo "gpu_check.sh: stopped after $limit s (GPU_CHECK_TIMEOUT); $out holds the parts that finished" >&2
echo "gpu_check.sh: exit $rc after $((SECONDS - t0)) s; figures in $out"
exit "$rc"
