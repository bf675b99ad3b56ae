#!/usr/bin/env bash
# The real profile over three seeds. A seed varies the proxy RM's init and data order and every policy's
# (rm_train.seed, ppo.seed, pg.seed, dpo.seed); the split (task.seed) and the judge RMs stay fixed, so the
# three runs are judged by the same judges on the same prompts and the spread is the policies'. Then
# scripts/real_seed_summary.py prints means and spreads of every judge's win rates, KL, answer length,
# unfinished and refusal / hedge rates and the probe, and writes OUT_PREFIX0/seeds.json.
#   scripts/real_seeds.sh [OUT_PREFIX] [key=value ...]     (default OUT_PREFIX: out/real_seed)
#   PY=/path/to/python (default: .venv-vllm/bin/python when it exists, for vLLM rollouts; else .venv)
#   JOBS=1 (default): one seed at a time on every core (the profile's threads=0: torch's default)
#   JOBS=2: two seeds at once, each pinned to its own core with one torch thread (threads=1) and its own
#   vLLM engine (on a busy machine two threads that spin-wait are slower than one)
#   SEEDS="0 1 2" (default)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-out/real_seed}; shift || true
if [ -z "${PY:-}" ]; then
  if [ -x .venv-vllm/bin/python ]; then py=.venv-vllm/bin/python; else py=.venv/bin/python; fi
else py=$PY; fi
jobs=${JOBS:-1}
seeds=${SEEDS:-0 1 2}
ncores=$(nproc)

run_seed() {  # seed, core (or empty)
  local s=$1 core=$2 pin=()
  shift 2
  local threads=()
  if [ -n "$core" ]; then
    pin=(taskset -c "$core" env OMP_NUM_THREADS=1); threads=(threads=1)
    export VLLM_CPU_OMP_THREADS_BIND=$core
  fi
  echo "seed $s -> ${prefix}$s (log ${prefix}$s.log${core:+, core $core})"
  PYTHONPATH=src "${pin[@]}" "$py" -m chatglm_rlhf.cli.main demo --profile real --out "${prefix}$s" \
    progress=false "${threads[@]}" rm_train.seed=$s ppo.seed=$s pg.seed=$s dpo.seed=$s "$@" \
    > "${prefix}$s.log" 2>&1
}

i=0
pids=()
for s in $seeds; do
  if [ -f "${prefix}$s/metrics.json" ] && grep -q '"probe"' "${prefix}$s/metrics.json" && [ -z "${FORCE:-}" ]; then
    echo "seed $s: ${prefix}$s is done (FORCE=1 reruns; the pipeline resumes unfinished stages)"; continue
  fi
  if [ "$jobs" -gt 1 ]; then
    run_seed "$s" "$((i % ncores))" "$@" & pids+=($!)
    i=$((i + 1))
    if [ "${#pids[@]}" -ge "$jobs" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
  else
    run_seed "$s" "" "$@"
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
dirs=()
for s in $seeds; do dirs+=("${prefix}$s"); done
PYTHONPATH=src "$py" scripts/real_seed_summary.py "${dirs[@]}"
