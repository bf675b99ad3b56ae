#!/usr/bin/env bash
# The demo's headline numbers over three seeds: each seed varies the world's sampling, the models' init
# and the data order (task.seed and every trainer's seed). The seeds run one after another at the same
# torch thread count (the figures depend on it: a stage redone at one thread instead of two gave other
# models), then scripts/seed_summary.py prints means and spreads and writes OUT/seeds.json.
#   scripts/demo_seeds.sh [OUT_PREFIX] [key=value ...]      (default OUT_PREFIX: out/seed)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-out/seed}; shift || true
run() {
  local s=$1; shift
  .venv/bin/chatglm-rlhf demo --profile default --out "${prefix}$s" progress=false \
    task.seed=$s rm.seed=$s ppo.seed=$s dpo.seed=$s pg.seed=$s "$@" > "${prefix}$s.log" 2>&1
}
for s in 0 1 2; do run $s "$@"; done
.venv/bin/python scripts/seed_summary.py "${prefix}0" "${prefix}1" "${prefix}2"
