#!/usr/bin/env bash
# Create .venv (once) and install chatglm-rlhf with everything the demo and the tests need.
# torch goes in first: a bare "torch" requirement would pull a multi-GB CUDA build on a CPU machine.
# GPU users: TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" make demo
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EXTRAS=${EXTRAS:-dev,annotate,real,tensorboard}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
stamp="$VENV/.installed-$(cat pyproject.toml scripts/setup_env.sh | sha1sum | cut -c1-12)-$EXTRAS"
if [ -f "$stamp" ]; then
  exit 0  # nothing changed since the last install
fi
"$PY" -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
if ! "$PY" -c "import torch" 2>/dev/null; then
  # shellcheck disable=SC2086
  "$PY" -m pip install -q $TORCH_SPEC 2>&1 | grep -v '^WARNING: Location' || true
fi
"$PY" -m pip install -q -e ".[$EXTRAS]" 2>&1 | grep -v '^WARNING: Location' || true
"$PY" -c "import torch, transformers, chatglm_rlhf; print('environment ready: torch', torch.__version__, '| transformers', transformers.__version__)"
rm -f "$VENV"/.installed-*
touch "$stamp"
