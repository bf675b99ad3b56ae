#!/usr/bin/env bash
# The demo's headline numbers over three seeds: each seed varies the world's sampling, the models' init
# and the data order (world.seed and every trainer's seed). Two seeds run at a time (one torch thread
# each), then scripts/seed_summary.py prints means and spreads and writes OUT/seeds.json.
#   scripts/demo_seeds.sh [OUT_PREFIX] [key=value ...]      (default OUT_PREFIX: out/seed)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-out/seed}; shift || true
run() {
  local s=$1; shift
  OMP_NUM_THREADS=1 .venv/bin/chatglm-rlhf demo --profile default --out "${prefix}$s" progress=false \
    world.seed=$s rm.seed=$s ppo.seed=$s dpo.seed=$s pg.seed=$s "$@" > "${prefix}$s.log" 2>&1
}
run 0 "$@" & run 1 "$@" & wait
run 2 "$@"
.venv/bin/python scripts/seed_summary.py "${prefix}0" "${prefix}1" "${prefix}2"
