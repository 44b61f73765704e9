# Two entry points on a fresh clone:
#   make train   set up .venv, build the embedded sample dataset, train a small model, benchmark it, run the demo
#   make test    set up .venv (with the reference packages the comparison tests use) and run the test suite
#                (what .ci/run runs)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAMPLE := ./sample
SAMPLE_BIN := ./sample_BIN
RUNS := ./output/sample
PROFILE ?= wdsr-b-8
SCALE ?= 2
EPOCHS ?= 6
STEPS ?= 50
# WDSR can start as bicubic interpolation (model/bicubic_init.py): a short CPU run then beats it quickly
INIT := $(if $(filter wdsr-%,$(PROFILE)),--bicubic-init,)

.PHONY: setup setup-reference sample train test clean

# the project itself in editable mode (pyproject.toml): tests, benchmarks and tools import it from any folder
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	$(VENV)/bin/pip install --quiet -e . --no-deps
	touch $@

setup: $(VENV)/.installed

# The reference PyTorch packages the comparison tests run against (requirements-reference.txt, never imported by the
# framework). Optional: without them those tests skip, so a failed install only says so.
$(VENV)/.reference: $(VENV)/.installed requirements-reference.txt
	$(VENV)/bin/pip install --quiet --no-deps -r requirements-reference.txt && touch $@ || \
		echo "reference packages not installed: the comparisons with basicsr/realesrgan/spandrel/lpips will skip"

setup-reference: $(VENV)/.reference

$(SAMPLE_BIN)/.done: $(VENV)/.installed convert.py imaging/convert.py imaging/io.py imaging/resize.py
	$(PY) convert.py sample -o $(SAMPLE)
	$(PY) convert.py numpy -i $(SAMPLE) -o $(SAMPLE_BIN)
	touch $@

sample: $(SAMPLE_BIN)/.done

train: sample
	$(PY) train.py --profile $(PROFILE) --scale $(SCALE) --dataset $(SAMPLE_BIN) --outdir $(RUNS) \
		--epochs $(EPOCHS) --steps-per-epoch $(STEPS) --validation-steps 50 $(INIT)
	run=$$(ls -td $(RUNS)/*/ | head -n 1); run=$${run%/}; \
	$(PY) bench.py --dataset $(SAMPLE_BIN) -i $$run/models -o $$run/bench.json --bicubic && \
	best=$$($(PY) -c "import json,sys; d=json.load(open(sys.argv[1])); print(max(d, key=d.get))" $$run/bench.json) && \
	$(PY) demo.py -i $(SAMPLE)/DIV2K_valid_LR_bicubic/X$(SCALE) -o $$run/demo --model $$best --figure \
		--hr $(SAMPLE)/DIV2K_valid_HR && \
	echo && echo "results: run $$run" && echo "  checkpoints  $$run/models" && echo "  benchmark    $$run/bench.json" \
		"$$run/bench.results.json" && echo "  demo images  $$run/demo" && echo "  tensorboard  $(VENV)/bin/tensorboard --logdir $$run/logs"

test: setup setup-reference
	$(PY) -m pytest -n 2 tests

clean:
	rm -rf $(SAMPLE) $(SAMPLE_BIN) $(RUNS)
