# The README's two commands: `make demo` (the whole pipeline on the embedded demo world) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out/demo
PROFILE ?= default

# make test starts the annotation tests' services that are installed (PostgreSQL, Chromium) and lists
# every skipped test with its reason; SERVICES_INSTALL=1 (or `make services` once) installs them with apt.
SERVICES_INSTALL ?= 0

# VLLM_TESTS=0 skips the vLLM tests (tests/vllm_engine), which run in their own .venv-vllm (vLLM's CPU build).
VLLM_TESTS ?= 1

.PHONY: env vllm-env demo smoke test test-vllm faults services lint format bench clean

env:
	./scripts/setup_env.sh

vllm-env:
	./scripts/setup_vllm_env.sh

demo: env
	$(VENV)/bin/chatglm-rlhf demo --out $(OUT) --profile $(PROFILE)

smoke: env
	$(VENV)/bin/chatglm-rlhf demo --out out/smoke --profile smoke

test: env
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	-SERVICES_INSTALL=$(SERVICES_INSTALL) ./scripts/ci_annotate_services.sh
	$(PY) -m pytest -q -m "not slow" -rs
	@if [ "$(VLLM_TESTS)" = "1" ]; then $(MAKE) --no-print-directory test-vllm; fi

test-vllm: vllm-env
	.venv-vllm/bin/python -m pytest -q -rs -p no:cacheprovider tests/vllm_engine

# The fault suite (docs/faults.md): kills inside trainers and the pipeline, corrupt files, a full disk,
# the annotation app killed under load on SQLite and PostgreSQL. `make test` runs its fast cases.
faults: env
	-SERVICES_INSTALL=$(SERVICES_INSTALL) ./scripts/ci_annotate_services.sh
	$(PY) -m pytest -q -m faults -rs tests

services:
	SERVICES_INSTALL=1 ./scripts/ci_annotate_services.sh

format: env
	$(VENV)/bin/ruff format src tests benchmarks scripts
	$(VENV)/bin/ruff check --fix src tests benchmarks scripts

clean:
	rm -rf out .pytest_cache .ruff_cache
