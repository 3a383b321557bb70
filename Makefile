# The entry points of the README: `make demo` (the quickstart on real MNIST digits, under nine minutes on 2 cores),
# `make test` (what CI runs), `make test-fast` (the suite without its slow tests), `make matrix` and
# `make frontier` (the real-MNIST results of docs/results.md, without Ray), `make leakage` (every explainer's
# leakage on real MNIST, docs/explainers.md), `make demo-full` (the quickstart at the quick budget). Each creates .venv when it is missing and installs the project into it, every package at
# the version of .ci/constraints.txt (the versions the tests ran on).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q -c .ci/constraints.txt
# torch is installed first, from the releases this project is tested with
# (on the project machines pip takes them from local disk).
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: setup setup-dev demo demo-full figures matrix frontier leakage test test-fast constraints clean

# what the studies need; the tests' tools (pytest, scikit-image, moto, ...) come with setup-dev, so that
# `make demo` does not wait for them (about 30 s of its eight and a half minutes)
$(VENV)/.installed: pyproject.toml .ci/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PIP) $(TORCH)
	$(PIP) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

setup-dev: $(VENV)/.installed-dev

demo: setup
	$(PY) studies/quickstart.py --preset demo --study demo --num-samples 2 --front-points 1 --match perturbation,utility

# the quickstart at the quick budget (real MNIST's operating point): 4 trials and 2 x 2 fresh GNIMEs of 3,000 steps
# (about 8 minutes each on one core) with their attackers; not timed at this commit, estimated 1.5 to 2 hours on 2 cores
demo-full: setup
	$(PY) studies/quickstart.py

# the figures of the demo's held-out frontier (run `make demo` first)
figures: setup
	$(VENV)/bin/gnime-ray figures --out results --study demo-lrp-report --dest results/_readme

# the real-MNIST Table 1 row of docs/results.md (all three explainers, two GNIMEs, three attack seeds)
matrix: setup
	$(VENV)/bin/gnime-ray matrix --dataset mnist5k --preset quick --attack-seeds 3 --gnime-seeds 2

# the real-MNIST held-out comparison of docs/results.md: lambda 100 at GNIME's own operating point (the paper's
# Table 1 protocol), RND and OND at GNIME's perturbation and at its utility (two measures), two GNIMEs with one
# attack seed each, 95% intervals over test images and GNIMEs (about 40 minutes on 2 cores once the GNIMEs are
# trained); --attack-seeds 2 adds the attack-seed spread, --budgets 0.5,1,2 fixed perturbation budgets
frontier: setup
	$(VENV)/bin/gnime-ray matrix --dataset mnist5k --preset quick --attack-seeds 1 --gnime-seeds 2 \
	    --match perturbation,utility,utility-topk --study frontier-mnist5k

# which explainers leak on real MNIST, and whether GNIME's protection carries over (docs/explainers.md): the
# matrix over the paper's three and Captum's six, two GNIMEs and two attack seeds each, IG at 8 steps and
# SmoothGrad at 8 samples (benchmarks/captum_settings.py); its last table ranks the explainers. Not yet run:
# estimated at about 4 hours on 2 cores (make matrix took 81 minutes for three explainers)
leakage: setup
	$(VENV)/bin/gnime-ray matrix --dataset mnist5k --preset quick --attack-seeds 2 --gnime-seeds 2 \
	    --explainers grad,gradcam,lrp,ig,smoothgrad,gxi,deeplift,gradshap,guidedbp \
	    --set ig_steps=8 --set smoothgrad_samples=8 --study leakage-mnist5k

# the test suite, with the coverage report of the lines the test process ran
test: setup-dev
	$(PY) -m pytest -q --cov --cov-report=term

# the suite without the tests marked slow (they train for minutes or start Ray clusters)
test-fast: setup-dev
	$(PY) -m pytest -q -m "not slow"

# rewrite .ci/constraints.txt from .venv (after a dependency changed; then run `make test`)
constraints: setup-dev
	head -5 .ci/constraints.txt > .ci/constraints.new
	$(PY) -m pip freeze --exclude-editable | grep -v -i '^ruff==' >> .ci/constraints.new
	mv .ci/constraints.new .ci/constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache
