# Quick start: `make demo` runs the whole method on generated data; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO ?= demo
DEMO_ARGS := --dataset=avenue --data_root=$(DEMO)/data --work_dir=$(DEMO)/work

.PHONY: install test demo clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $@

test: install
	$(PY) -m pytest

demo: install
	$(PY) -m extra.make_demo --out $(DEMO)/data --seed 0 --skip_existing
	$(PY) ObjectDetection/run.py $(DEMO_ARGS) --detector=motion
	$(PY) Memorization/run.py $(DEMO_ARGS)

clean-demo:
	rm -rf $(DEMO)
