# SSH face detector in PyTorch. `make demo` and `make test` each set up what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.stamp

.PHONY: setup build browser demo app screenshots test mutants fetch-models fetch-imagenet benchmark gpu-check clean

# The virtualenv is rebuilt only when requirements.txt changes (the stamp records it).
$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

build: $(STAMP)
	$(MAKE) -s -C lib PYTHON=$(abspath $(PY))

# Headless Chromium and its driver for the web app's browser tests (tests/scripts/test_app.py), from
# Debian's packages, installed when missing (as root, or with sudo); elsewhere install them by hand.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		if command -v apt-get >/dev/null; then \
			$(SUDO) apt-get update -qq && \
			$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
		else echo "warning: no apt-get: install Chromium and chromedriver for the browser tests"; fi

setup: build

# Official trained model (data/SSH_models/SSH.caffemodel), then faces on the demo photo.
demo: setup
	$(PY) -m model.weights ssh
	$(PY) test.py

# The web app (app.py) on http://127.0.0.1:7860 with the official model; APP_ARGS adds options.
app: fetch-models
	$(PY) app.py $(APP_ARGS)

# The README's screenshots of the web app's tabs (docs/images/app_*.png) and of TensorBoard's scalars page
# on a short training run (docs/images/tensorboard_scalars.png), taken by their browser tests.
screenshots: setup browser
	SSH_APP_SCREENSHOTS=docs/images $(PY) -m pytest -q tests/scripts/test_app.py
	SSH_TB_SCREENSHOT=docs/images/tensorboard_scalars.png $(PY) -m pytest -q tests/scripts/test_tensorboard_page.py

test: setup browser
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
