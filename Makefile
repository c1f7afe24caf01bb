# Every target makes or refreshes .venv by itself, so a fresh clone needs nothing but CPython 3.11.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-slow lint edgetpu bench demo mission soak

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info[:2] == (3, 11), "CPython 3.11 is required, found " + sys.version' 
	$(BIN)/pip install --disable-pip-version-check -q -c constraints.txt -e '.[dev]'
	@touch $@

install: $(STAMP)  ## the development venv (workstation + tests)

test: $(STAMP)  ## the default test suite (fast: small inputs, shared builds)
	$(BIN)/python -m pytest

test-slow: $(STAMP)  ## heavy cases: 224 px builds, long soaks
	$(BIN)/python -m pytest -m slow

lint: $(STAMP)  ## ruff on everything, mypy on payload/ (settings in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/mypy

edgetpu: $(STAMP)  ## build the model bundle (default profile, ImageNet weights: needs the internet once) into build/bundle/
	$(BIN)/python -m compile build --config configs/build.yaml --profile default --out build/bundle

bench: $(STAMP)  ## payload overhead vs the bare interpreter, RSS, startup -> build/bench.json (builds build/quick_bundle if missing)
	@test -f build/quick_bundle/model_card.json || $(BIN)/python -m compile build --profile quick --weights none --cpu-only --out build/quick_bundle
	$(BIN)/python -m tools.bench --bundle build/quick_bundle --out build/bench.json

soak: $(STAMP)  ## 2 h accelerated flight through the real pipeline: RSS, threads, fds, stats (tools/soak.py)
	$(BIN)/python -m tools.soak --hours 2 --json build/soak.json

SCENARIO ?= configs/scenarios/default.yaml
OUT ?= build/mission
TLOG ?=

demo: $(STAMP)  ## fly the default scenario with the real payload, map and score it -> build/demo/
	$(BIN)/python -m tools.mission --scenario configs/scenarios/default.yaml --out build/demo

mission: $(STAMP)  ## the same for any scenario: make mission SCENARIO=FILE OUT=DIR [TLOG=FILE]
	$(BIN)/python -m tools.mission --scenario $(SCENARIO) --out $(OUT) $(if $(TLOG),--tlog $(TLOG))
