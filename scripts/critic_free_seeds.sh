#!/usr/bin/env bash
# The critic-free comparison of issue 18 over three seeds on the demo world's default profile: PPO (with
# its critic) and the critic-free trainer with every estimator (the `critic_free` ablation: pg_grpo,
# pg_dr_grpo, pg_rloo, pg_reinforce_pp, pg_ref_baseline), each at PPO's 32 responses per iteration.
# Each seed varies the world, the models' init and the data order; two seeds run at a time (one torch
# thread each), then scripts/seed_summary.py prints every policy's gold win rate (mean +- sd), its time
# per iteration against PPO's, and writes OUT/seeds.json.
#   scripts/critic_free_seeds.sh [OUT_PREFIX] [key=value ...]     (default OUT_PREFIX: out/cf_seed)
# Choose the estimator on the dev split first (never on the evaluation prompts):
#   scripts/critic_free_seeds.sh out/cf_dev eval_prompts=dev_prompts
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-out/cf_seed}; shift || true
run() {
  local s=$1; shift
  OMP_NUM_THREADS=1 .venv/bin/chatglm-rlhf pipeline --config recipes/demo_critic_free.yaml --out "${prefix}$s" \
    progress=false task.seed=$s rm.seed=$s ppo.seed=$s dpo.seed=$s pg.seed=$s "$@" > "${prefix}$s.log" 2>&1
}
run 0 "$@" & run 1 "$@" & wait
run 2 "$@"
.venv/bin/python scripts/seed_summary.py "${prefix}0" "${prefix}1" "${prefix}2"
