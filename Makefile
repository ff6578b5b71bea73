# Quick start: `make demo` runs the whole method on generated data; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO ?= demo
DEMO_ARGS := --dataset=avenue --data_root=$(DEMO)/data --work_dir=$(DEMO)/work
# The demo uses CLIP's pretrained RN101 when it is in CLIP's cache; otherwise it asks for random
# weights explicitly, and every result it prints and saves says so.
CLIP_CACHE ?= $(HOME)/.cache/clip
DEMO_WEIGHTS := $(if $(wildcard $(CLIP_CACHE)/RN101.pt),,--random_weights)

.PHONY: install install-ray install-faiss browser test demo compare tables figures clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $@

# Ray, for --ray (optional: README, Many machines); CI installs it so that its tests run.
install-ray: $(VENV)/.installed-ray

$(VENV)/.installed-ray: requirements-ray.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-ray.txt
	touch $@

# faiss, for --search faiss-flat|faiss-ivf (optional: README, Many machines); CI installs it so that its tests run.
install-faiss: $(VENV)/.installed-faiss

$(VENV)/.installed-faiss: requirements-faiss.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-faiss.txt
	touch $@

# Headless Chromium and its driver from Debian, for the report's browser test, when either is missing
# (apt-get as root, else through sudo).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; }

test: install browser
	$(PY) -m pytest

demo: install
	$(PY) -m extra.make_demo --out $(DEMO)/data --seed 0 --n_train 2 --n_test 4 --n_frames 60 --skip_existing
	$(PY) ObjectDetection/run.py $(DEMO_ARGS) --detector=motion
	@$(if $(DEMO_WEIGHTS),echo "No $(CLIP_CACHE)/RN101.pt: the demo runs CLIP with RANDOM weights (see README, Weights).")
	$(PY) Memorization/run.py $(DEMO_ARGS) $(DEMO_WEIGHTS) --report

# VideoPatchCore against MNAD and the dual-memory model on the demo data (compare.py; what it measures:
# comparison/run.py), MNAD reduced from its published 256 x 256 and 60 epochs, the dual-memory model from
# 256 x 256 and 40 epochs (one 64 x 64 epoch of the demo takes about 45 s on a 2-core CPU) with two memory
# sizes, so that the comparison takes minutes on a 2-core CPU (the table says so). The dual-memory model's
# official learning rate, 1e-7, does not move its weights in 2 epochs: 0.001 here. Results in
# $(DEMO)/work/compare/avenue/; a rerun reuses every finished measurement.
COMPARE_MNAD ?= --h 64 --w 64 --epochs 5
COMPARE_DUAL ?= --dual_h 64 --dual_w 64 --dual_epochs 2 --dual_lr 0.001 --mem_dims 200,2000
compare: install
	$(PY) -m extra.make_demo --out $(DEMO)/data --seed 0 --n_train 2 --n_test 4 --n_frames 60 --skip_existing
	@$(if $(DEMO_WEIGHTS),echo "No $(CLIP_CACHE)/RN101.pt: the comparison runs CLIP with RANDOM weights (see README, Weights).")
	$(PY) compare.py $(DEMO_ARGS) $(DEMO_WEIGHTS) --detector=motion $(COMPARE_MNAD) $(COMPARE_DUAL)

tables: demo
	$(PY) Memorization/reproduce.py $(DEMO_ARGS) $(DEMO_WEIGHTS) --table=all

figures: demo
	$(PY) Memorization/figures.py $(DEMO_ARGS)

clean-demo:
	rm -rf $(DEMO)
