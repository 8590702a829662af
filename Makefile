# SSH face detector in PyTorch. `make demo` and `make test` each set up what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.stamp

.PHONY: setup build demo test mutants fetch-models fetch-imagenet benchmark gpu-check clean

# The virtualenv is rebuilt only when requirements.txt changes (the stamp records it).
$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

build: $(STAMP)
	$(MAKE) -s -C lib PYTHON=$(abspath $(PY))

setup: build

# Official trained model (data/SSH_models/SSH.caffemodel), then faces on the demo photo.
demo: setup
	$(PY) -m model.weights ssh
	$(PY) test.py

test: setup
	$(PY) -m pytest -q

# Curated semantic mutations of the exactness-critical code; each must make its tests fail.
mutants: setup
	$(PY) -m tests.mutants

fetch-models: setup
	$(PY) -m model.weights ssh

# ImageNet VGG16 for training (data/imagenet_models/VGG16.caffemodel).
fetch-imagenet: setup
	$(PY) -m model.weights imagenet

benchmark: setup
	$(PY) -m benchmarks all

# On a CUDA machine: the test suite on the GPU, then the benchmarks.
gpu-check: setup
	SSH_TEST_DEVICE=cuda $(PY) -m pytest -q -x
	$(PY) -m benchmarks detect --device cuda

clean:
	$(MAKE) -s -C lib clean
