# The README's two commands: `make demo` (the whole pipeline on the embedded demo world) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out/demo
PROFILE ?= default

.PHONY: env demo smoke test lint format bench clean

env:
	./scripts/setup_env.sh

demo: env
	$(VENV)/bin/chatglm-rlhf demo --out $(OUT) --profile $(PROFILE)

smoke: env
	$(VENV)/bin/chatglm-rlhf demo --out out/smoke --profile smoke

test: env
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(PY) -m pytest -q -m "not slow"

format: env
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

clean:
	rm -rf out .pytest_cache .ruff_cache
