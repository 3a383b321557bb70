# The entry points of the README: `make demo` (the quickstart on real MNIST digits), `make test`, and
# `make matrix` (the real-MNIST Table 1 row of the README, all three explainers, without Ray).
# Both create .venv when it is missing and install the project into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# torch is installed first, from the releases this project is tested with
# (on the project machines pip takes them from local disk).
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo figures matrix test clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) studies/quickstart.py

# the README's figures, from the demo's held-out report (run `make demo` first)
figures: setup
	$(VENV)/bin/gnime-ray figures results --study quickstart-lrp-report -o results/_readme

matrix: setup
	$(VENV)/bin/gnime-ray matrix --dataset mnist5k --preset quick --seeds 3 --gnime-seeds 2

# the test suite, with the coverage report of the lines the test process ran
test: setup
	$(PY) -m pytest -q --cov --cov-report=term

clean:
	rm -rf $(VENV) .pytest_cache
