# Every target makes or refreshes .venv by itself, so a fresh clone needs nothing but CPython 3.11
# (and 3.13 for `make test`'s drone-only step).
# An interpreter of version $(1) that runs: on PATH, or pyenv's (whose shim fails for a version not selected).
find_python = $(shell for c in python$(1) $(wildcard $(HOME)/.pyenv/versions/$(1).*/bin/python$(1)) \
  /usr/local/bin/python$(1) /usr/bin/python$(1); do $$c -c 'import sys; assert sys.version_info[:2] == \
  tuple(map(int, "$(1)".split("."))); print(sys.executable)' 2>/dev/null && break; done)
PY ?= $(or $(call find_python,3.11),$(shell command -v python3))
PY313 ?= $(call find_python,3.13)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-py313 test-slow lint edgetpu bench bench-build bench-render demo mission missions missions-recorded soak ci-tools detectability review-shot

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info[:2] == (3, 11), "CPython 3.11 is required, found " + sys.version' 
	$(BIN)/pip install --disable-pip-version-check -q -c constraints.txt -e '.[dev]'
	@touch $@

install: $(STAMP)  ## the development venv (workstation + tests)

test: $(STAMP) test-py313  ## the default test suite on 3.11 after the drone-only 3.13 step; CI runs `make ci-tools test`
	$(BIN)/python -m pytest

# The drone install on Python 3.13 (Debian 13): '.[drone]' and pytest only, no TensorFlow; the tiny TFLite
# model its backend tests run is built once by the 3.11 venv. Tests that need TensorFlow are left out.
VENV313 := .venv313
STAMP313 := $(VENV313)/.installed
TINY_TFLITE := build/py313/tiny.tflite
PY313_TESTS := tests/test_no_tensorflow.py tests/payload/test_backends.py tests/payload/test_map.py \
  tests/payload/test_compare.py tests/payload/test_tiling.py tests/payload/test_decoders.py \
  tests/payload/test_poseinterp.py tests/payload/test_bundle.py
PY313_SKIP := not float_input

$(STAMP313): pyproject.toml constraints.txt
	@test -n "$(PY313)" || { echo "make test-py313: no CPython 3.13 found (python3.13 on PATH or under pyenv); set PY313=..." >&2; exit 1; }
	@test -x $(VENV313)/bin/python || $(PY313) -m venv $(VENV313)
	$(VENV313)/bin/pip install --disable-pip-version-check -q -c constraints.txt -e '.[drone]' pytest pytest-timeout hypothesis
	@touch $@

$(TINY_TFLITE): tests/payload/tinymodel.py $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m tests.payload.tinymodel --tflite $@

test-py313: $(STAMP313) $(TINY_TFLITE)  ## the drone install on CPython 3.13 and the payload tests that need no TensorFlow
	CROPSCOUT_TINY_TFLITE=$(abspath $(TINY_TFLITE)) $(VENV313)/bin/python -m pytest -q $(PY313_TESTS) -k "$(PY313_SKIP)"

test-slow: $(STAMP)  ## the `slow` cases: 2 h soaks, the 60 s radio gap, full-speed replays
	$(BIN)/python -m pytest -m slow

lint: $(STAMP)  ## ruff on everything, mypy on payload/ (settings in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/mypy

edgetpu: $(STAMP)  ## build the model bundle (default profile, ImageNet weights: needs the internet once) into build/bundle/
	$(BIN)/python -m compile build --config configs/build.yaml --profile default --out build/bundle

# the bundle bench and missions run with (a prebuilt one: make bench BUNDLE=DIR); built when missing
BUNDLE ?= build/quick_bundle
# extra options, e.g. a stricter target: make missions ARGS='--max-false-zones 0 --max-error-median-m 1'
ARGS ?=

$(BUNDLE)/model_card.json:
	$(BIN)/python -m compile build --profile quick --weights none --cpu-only --out $(BUNDLE)

bench: $(STAMP) $(BUNDLE)/model_card.json  ## payload overhead vs the bare interpreter, RSS, startup -> build/bench.json; exit 1 on a missed target
	$(BIN)/python -m tools.bench --bundle $(BUNDLE) --out build/bench.json $(ARGS)

bench-render: $(STAMP)  ## the simulated camera on one core: ratio to real time and peak RSS for a 10 ha field; exit 1 below 1.0
	$(BIN)/python -m tools.bench_render --json build/bench_render.json $(ARGS)

bench-build: $(STAMP)  ## the activation cache's speed-up: the same 224 px build (300 images/class) with the cache on and off; exit 1 below 2x
	$(BIN)/python -m tools.bench_build --out build/bench_build $(ARGS)

soak: $(STAMP)  ## 2 h accelerated flights, healthy + 2 % + 10 % of tiles flagged: RSS, threads, fds (tools/soak.py); exit 1 on a leak
	$(BIN)/python -m tools.soak --hours 2 --scouting-rate 0.02 0.10 --json build/soak.json $(ARGS)

# the bundle's field trial: tools.detectability on the physical world (a seed drawn and printed), recorded on its
# card (field_detectability): the diseases and stages random missions are drawn from, and the altitude they fly at
# (beside the bundle, not in it: a bundle's folder holds only the files its card lists)
FIELD_TRIAL := $(BUNDLE).field_trial/detectability.json
$(FIELD_TRIAL): $(BUNDLE)/model_card.json
	$(BIN)/python -m tools.detectability --bundle $(BUNDLE) --out $(BUNDLE).field_trial --record

missions: $(STAMP) $(FIELD_TRIAL)  ## default + random seeds 11, 23 + 2 seeds drawn at run time (printed), drawn for what the bundle's field trial sees -> build/missions/summary.md|json; exit 1 on a missed target
	$(BIN)/python -m tools.missions --bundle $(BUNDLE) --out build/missions $(ARGS)

missions-recorded: $(STAMP) $(BUNDLE)/model_card.json  ## every recorded flight of the suite (tools/missions.py RECORDED_SCENARIOS: a scenario laid under each tlog in tests/data/flights/), replayed, with BUNDLE -> build/missions_recorded/summary.md|json; exit 1 on a missed target
	$(BIN)/python -m tools.missions --bundle $(BUNDLE) --out build/missions_recorded --scenarios --recorded --drawn 0 $(ARGS)

# what `make ci-tools` makes sure of, as command:Debian-package pairs
CI_TOOLS := exiftool:libimage-exiftool-perl chromium:chromium

ci-tools:  ## the real readers CI checks against: exiftool (Debian libimage-exiftool-perl), headless Chromium (Debian chromium)
	@missing=""; for pair in $(CI_TOOLS); do cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	  if command -v $$cmd >/dev/null 2>&1; then echo "$$cmd already installed: $$(command -v $$cmd)"; \
	  else missing="$$missing $$pkg"; fi; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make ci-tools: apt-get is not available here; install$$missing yourself (macOS: brew install exiftool, brew install --cask chromium)" >&2; exit 1; \
	fi; \
	SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	$$SUDO apt-get install -y --no-install-recommends $$missing || \
	{ $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends $$missing; }

SCENARIO ?= configs/scenarios/default.yaml
OUT ?= build/mission
TLOG ?=

detectability: $(STAMP) $(BUNDLE)/model_card.json  ## recall by disease, stage and mm/px on the physical world, altitude per camera -> build/detectability/; exit 1 below 0.9 at the card's working resolution
	$(BIN)/python -m tools.detectability --bundle $(BUNDLE) --out build/detectability $(ARGS)

demo: $(STAMP)  ## fly the default scenario with the real payload, map and score it -> build/demo/
	$(BIN)/python -m tools.mission --scenario configs/scenarios/default.yaml --out build/demo

review-shot: $(STAMP)  ## docs/img/review.png: fly the default scenario (review tiles kept) -> build/review_demo/, then the review page in headless Chromium
	$(BIN)/python -m tools.mission --scenario configs/scenarios/default.yaml --out build/review_demo
	$(BIN)/python -m tools.review_shot build/review_demo --out docs/img/review.png

mission: $(STAMP)  ## the same for any scenario: make mission SCENARIO=FILE OUT=DIR [TLOG=FILE]
	$(BIN)/python -m tools.mission --scenario $(SCENARIO) --out $(OUT) $(if $(TLOG),--tlog $(TLOG))
