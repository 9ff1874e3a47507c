# medgan: the two commands (see README):
#   make demo   - set up (if needed) and run the main job: train -> augment -> evaluate on real BreastMNIST
#   make test   - set up (if needed) and run the test suite
#
# Environment variables:
#   PYTHON          interpreter used to create the virtual environment (default: python3)
#   TORCH_SPEC      how torch is installed (default: torch==2.13.0, the local CPU build; use e.g. "torch>=2.3"
#                   for a CUDA build from PyPI)
#   MEDGAN_DATA_DIR folder with the MedMNIST .npz files (default: ../shared/data/medmnist)
#   PYTEST_ARGS     extra arguments for pytest (e.g. -m "not slow")

PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV ?= .venv
MEDGAN_DATA_DIR ?= $(abspath ../shared/data/medmnist)
export MEDGAN_DATA_DIR
PY := $(VENV)/bin/python
DEMO_OUT ?= runs/demo

.PHONY: setup test test-fast lint demo clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

lint: setup
	$(VENV)/bin/ruff check medgan pipelines tests

test: setup lint
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

test-fast: setup
	$(VENV)/bin/pytest -q -m "not slow" $(PYTEST_ARGS)

# The main job on real data: BreastMNIST with the malignant class kept at 20% of its training images.
demo: setup
	rm -rf $(DEMO_OUT)
	$(VENV)/bin/medgan train --config configs/breastmnist.yaml --dataset breastmnist --scarce 0=0.2 \
		--out $(DEMO_OUT)/train
	$(VENV)/bin/medgan augment --checkpoint $(DEMO_OUT)/train --balance --format png --out $(DEMO_OUT)/synth
	$(VENV)/bin/medgan evaluate --dataset breastmnist --scarce 0=0.2 --checkpoint $(DEMO_OUT)/train \
		--out $(DEMO_OUT)/report

clean:
	rm -rf $(VENV) runs synth reports .pytest_cache
