#!/usr/bin/env bash
# Every GPU figure of issue 7 and the GPU tests, on the lent GPU machine, in named steps:
#
#   bash benchmarks/gpu_all.sh OUTDIR [STEP ...]
#
# Steps (default: all, in this order): tests (pytest tests/kernels, the `gpu` marker),
# suite (gpu_suite, 1.1B; its transformers static-cache + compile peer runs first, within
# --peer-timeout), suite8b (gpu_suite --shape 8b), peer (hf_static_peer alone on the 1.1B
# shape: decode steps at batch 1 and 64 and generate tok/s at the suite's serving shape at
# static batches 32, 128, 256), spec (spec_oracle), serve
# (serve_overhead --device cuda through HAProxy + direct ingress, one and two replicas;
# needs .gpu_site.tar.xz, built here by benchmarks/gpu_site.sh: carry it, not .whl/),
# servemixed (serve, one replica, with EngineConfig.mixed_graphs on both sides), mixed
# (profile_step --mixed: a mixed prefill+decode step eager vs as a mixed CUDA graph),
# profile (profile_serve at c=256 under HAProxy; its stacks go to OUTDIR/profile),
# quant (gpu_quant; needs bitsandbytes in .whl-bnb/). Each step
# runs under its own time limit (STEP_LIMIT_<step> seconds overrides it) and logs to
# OUTDIR/<step>.log, whose tail is printed; the results JSON of the run are packed into
# OUTDIR/results.tar after each step. A step that fails or runs out of time does not stop
# the next.
set -uo pipefail
out=${1:?usage: gpu_all.sh OUTDIR [STEP ...]}
shift
steps=("$@")
[[ ${#steps[@]} -gt 0 ]] || steps=(tests suite suite8b peer spec serve profile quant)
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
declare -A limit=([tests]=240 [suite]=540 [suite8b]=480 [peer]=480 [spec]=200 [serve]=540
                  [servemixed]=420 [mixed]=240 [profile]=200 [quant]=120)
FAST=(--env RAY_SERVE_THROUGHPUT_OPTIMIZED=1 --env RAY_SERVE_ENABLE_HA_PROXY=1)

install_wheels() {  # $1: a folder of wheels; installed once into /tmp/site
  [[ -d $1 ]] || { echo "no $1/ here"; return 1; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$1"/*.whl && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
}

install_site() {  # .gpu_site.tar.xz (benchmarks/gpu_site.sh): Ray, HAProxy, py-spy
  [[ -f .gpu_site.tar.xz ]] || { echo "no .gpu_site.tar.xz here"; return 1; }
  mkdir -p /tmp/site && tar -xJf .gpu_site.tar.xz -C /tmp/site \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-} PATH=/tmp/site/bin:$PATH
}

run_step() {
  case $1 in
    tests) python3 -m pytest -q -p no:cacheprovider -m gpu tests/kernels ;;
    suite) python3 -m benchmarks.gpu_suite ;;
    suite8b) python3 -m benchmarks.gpu_suite --shape 8b ;;
    peer) python3 -m benchmarks.hf_static_peer --serving-batches 32,128,256 ;;
    spec) python3 -m benchmarks.spec_oracle ;;
    serve) install_site && python3 -m benchmarks.serve_overhead --device cuda \
      --concurrency 1,32,256 --routers 4 "${FAST[@]}" --llm-replicas 2 --stagger-ms 2 \
      --name serve_overhead_gpu_haproxy.json ;;
    servemixed) install_site && python3 -m benchmarks.serve_overhead --device cuda \
      --concurrency 1,32,256 --routers 4 "${FAST[@]}" --stagger-ms 2 \
      --engine-option mixed_graphs=true --name serve_overhead_gpu_haproxy_mixed.json ;;
    mixed) python3 -m benchmarks.profile_step --mixed ;;
    profile) install_site && python3 -m benchmarks.profile_serve --device cuda \
      --concurrency 256 --routers 4 "${FAST[@]}" --out "$out/profile" ;;
    quant) install_wheels .whl-bnb && python3 -m benchmarks.gpu_quant ;;
    *) echo "unknown step $1"; return 2 ;;
  esac
}

python3 -c 'import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())'
for step in "${steps[@]}"; do
  seconds=${limit[$step]:-300}
  var=STEP_LIMIT_$step
  seconds=${!var:-$seconds}
  start=$(date +%s)
  (run_step "$step") > "$out/$step.log" 2>&1 &
  pid=$!
  # Kill the whole step (Serve and Ray start processes of their own) when its time is up.
  ( sleep "$seconds"; pkill -TERM -P "$pid"; kill -TERM "$pid" ) 2>/dev/null &
  watchdog=$!
  wait "$pid"
  rc=$?
  kill "$watchdog" 2>/dev/null
  echo "== $step: exit $rc after $(( $(date +%s) - start )) s (limit $seconds s)"
  tail -n "${TAIL_LINES:-25}" "$out/$step.log"
  tar -cf "$out/results.tar" benchmarks/results/*.json  # after each step: a cut-off run keeps it
done
