#!/usr/bin/env bash
# The real profile over three seeds, one run at a time (2 CPU cores: ~2 h each, see docs/results.md).
# A seed varies the proxy RM's init and data order and PPO's and DPO's (rm_train.seed, ppo.seed, dpo.seed);
# the split (data.seed) and the judge RMs stay fixed, so the three runs are judged by the same judges on
# the same prompts and the spread is the policies'. Then scripts/real_seed_summary.py prints means and
# spreads of every judge's PPO and DPO win rates and the proxy's, and writes OUT_PREFIX0/seeds.json.
#   scripts/real_seeds.sh [OUT_PREFIX] [key=value ...]     (default OUT_PREFIX: out/real_seed)
#   PY=/path/to/python (default .venv/bin/python; a vLLM venv for generation_backend=vllm)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-out/real_seed}; shift || true
py=${PY:-.venv/bin/python}
for s in 0 1 2; do
  if [ -f "${prefix}$s/metrics.json" ] && [ -z "${FORCE:-}" ]; then
    echo "seed $s: ${prefix}$s is done (FORCE=1 reruns; the pipeline resumes unfinished stages)"; continue
  fi
  echo "seed $s -> ${prefix}$s (log ${prefix}$s.log)"
  PYTHONPATH=src OMP_NUM_THREADS=1 "$py" -m chatglm_rlhf.cli.main demo --profile real --out "${prefix}$s" \
    progress=false rm_train.seed=$s ppo.seed=$s dpo.seed=$s "$@" > "${prefix}$s.log" 2>&1
done
PYTHONPATH=src "$py" scripts/real_seed_summary.py "${prefix}0" "${prefix}1" "${prefix}2"
