# Two commands for a new machine: `make train` and `make test` (each installs into .venv first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=
PYTEST_ARGS ?=

# GPU=1 (or `make setup-gpu`) adds the CUDA 12 build of the locked JAX version to the install.
GPU ?=
GPU_STAMP := $(VENV)/.installed-gpu
JAX_VERSION := $(shell sed -n 's/^jax==//p' requirements.lock)
# `make test` runs on the CPU even in a GPU install (CI is CPU-only); TEST_JAX_PLATFORMS= lifts that.
TEST_JAX_PLATFORMS ?= cpu

.PHONY: setup setup-gpu setup-parity train test test-slow parity bench bench-gpu reproduce reproduce-quick summary setup-docs docs lock clean

setup: $(STAMP) $(if $(filter 1,$(GPU)),$(GPU_STAMP))

setup-gpu: $(GPU_STAMP)

# Exact versions from requirements.lock (setuptools included: it builds the editable install), then the project
# itself (editable, no dependency resolution). -qq: errors only (at -q, pip warns once per package about the
# machine's pip config naming local index folders that do not exist).
$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip
	$(BIN)/python -m pip install -qq -r requirements.lock
	$(BIN)/python -m pip install -qq --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# jax[cuda12] of the locked version: jax-cuda12-plugin and jax-cuda12-pjrt $(JAX_VERSION) and NVIDIA's CUDA
# wheels; the lock is a constraint, so no locked version changes. Check: python -c "import jax; print(jax.devices())".
$(GPU_STAMP): $(STAMP)
	@test -n "$(JAX_VERSION)" || { echo "error: no jax==VERSION line in requirements.lock" >&2; exit 2; }
	$(BIN)/python -m pip install -qq -c requirements.lock "jax[cuda12]==$(JAX_VERSION)"
	$(BIN)/python -c "import jax; print('jax', jax.__version__, 'devices:', jax.devices())"
	@touch $(GPU_STAMP)

# The flagship: TD7 on Hopper-v4 with the paper's defaults (1M steps; on 2 CPU cores that is days,
# on a GPU hours). Shorten it with e.g. ARGS="--total-timesteps 100000", add seeds with ARGS="--num-seeds 5".
train: setup
	$(BIN)/python algos/td7.py --env-id Hopper-v4 $(ARGS)

# Two pytest-xdist workers (TEST_WORKERS=0 runs serially; a group of tests sharing a module fixture stays on
# one worker; the longest files first; JAX's compilation cache on from the start): 617 tests in 1,030 s on 2 CPU
# cores in a fresh clone (1,082 s with the install), 585 s with a warm cache (2026-12-06; 563 tests took 966 s in a
# fresh clone that morning; most of a cold run is XLA compiling each algorithm's update, which the cache keeps). It
# installs the docs packages too: tests/test_docs_site.py builds the site in strict mode.
TEST_WORKERS ?= 2
test: setup setup-docs
	JAX_PLATFORMS=$(TEST_JAX_PLATFORMS) $(BIN)/python -m pytest -q $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadgroup) $(PYTEST_ARGS)

# Tests marked @pytest.mark.slow, kept out of `make test` to hold it under 15 minutes (TD7's, DDPG's, MR.Q's, DR.Q's, TD3+LAP's and BCQ's learning tests, SR-DICE's Atari pipeline, TD7's 4-device sharding,
# DR.Q's Atari and MR.Q's DMC-pixels smoke runs, MR.Q's killed-run resume, TD7's offline resume, DriftQL's learning test, the launcher
# generating OGBench data and training DriftQL and TD3+BC on it; the learning tests of td3_sem, td3_bc_sparse and
# td3_ot: 197 s together on 2 CPU cores, 2026-12-06).
# 17 tests in 907 s on 2 CPU cores (2026-12-06, a fresh clone). `make parity`: 87 tests in 203 s there (cold cache);
# that fresh clone's .ci/run took 36m54s in all (make test 1,082 s with the install, make docs 1 s).
test-slow: setup
	JAX_PLATFORMS=$(TEST_JAX_PLATFORMS) $(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS) || test $$? -eq 5

# The authors' code beside ours (tests/parity/): float64, the same weights, batches and random draws; writes
# results/parity.md. AUTHORS_DIR: a folder of the authors' repositories at the commits docs/parity.md lists
# (default ../shared/authors when it exists; without it every parity test skips with one line saying so, as
# without torch, where pytest's exit status 5, no test collected, counts as success).
PARITY_STAMP := $(VENV)/.installed-parity
AUTHORS_DIR ?= $(if $(wildcard ../shared/authors),$(abspath ../shared/authors),)
setup-parity: $(PARITY_STAMP)

$(PARITY_STAMP): $(STAMP)
	$(BIN)/python -m pip install -qq -c requirements.lock "torch==2.13.0" "pot>=0.9.5,<0.10"
	@touch $(PARITY_STAMP)

parity: setup-parity
	AUTHORS_DIR=$(AUTHORS_DIR) JAX_PLATFORMS=cpu $(BIN)/python -m pytest -q $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile) tests/parity $(PYTEST_ARGS) || test $$? -eq 5

bench: setup
	$(BIN)/python benchmarks/bench.py $(ARGS)
	$(BIN)/python benchmarks/mrq_speed.py --before 58b475f
	$(BIN)/python benchmarks/mrq_speed.py --also algos/drq.py --out results/bench/drq_cpu
	$(BIN)/python benchmarks/drq_fade.py
	$(BIN)/python benchmarks/envs_step.py
	$(BIN)/python benchmarks/checkpoint.py --out results/bench/checkpoint_cpu
	$(BIN)/python benchmarks/offline.py
	$(BIN)/python benchmarks/compile_cache.py
	$(BIN)/python benchmarks/ddqn.py
	$(BIN)/python benchmarks/lap_pal.py
	$(BIN)/python benchmarks/sr_dice.py
	$(BIN)/python benchmarks/flops.py
	$(BIN)/python benchmarks/td3_sem.py
	$(BIN)/python benchmarks/td3_bc_sparse.py
	$(BIN)/python benchmarks/td3_ot.py

# Issue 16's suite on the accelerator of a GPU install: env steps/s, compile time and peak device memory of TD3, TD7
# and MR.Q (Gym, DMC pixels) with 1, 10 and 32 seeds in under 8 minutes -> results/bench/gpu_suite_<platform>.md.
# ARGS=--tiny: tiny sizes, a smoke of the command (about 1.5 min on 2 busy CPU cores).
bench-gpu: setup-gpu
	$(BIN)/python benchmarks/gpu_suite.py $(ARGS)

# The papers' grids (reproduce/grids/*.toml): every (algo, env) is one process with all its seeds; re-running
# skips completed runs and resumes killed ones. JOBS=N runs N processes at once. Then results/SUMMARY.md.
# reproduce = the papers' budgets and seeds (days on this CPU; meant for a GPU).
# reproduce-quick = the reduced grid, hours on 2 CPU cores (DR.Q's quick run alone took 25 min, the LAP/PAL and
# discrete BCQ grids about 50 min, SR-DICE's about 13 min, DriftQL's
# on generated OGBench data about 19 min, td3_sem's, td3_bc_sparse's and td3_ot's about 17 min with the 7-minute
# TD3 expert they share; each run's time is in results/SUMMARY.md's runs tables).
JOBS ?= 1
reproduce: setup
	$(BIN)/python -m reproduce.launch --scale full --jobs $(JOBS) $(ARGS)

reproduce-quick: setup
	$(BIN)/python -m reproduce.launch --scale quick --jobs $(JOBS) $(ARGS)

# Regenerate results/SUMMARY.md, results/summary.csv and results/plots/ from the committed runs (eval.csv, config.json,
# datasets.json) and results/reference/; a file is rewritten only when its bytes change, so a clone stays clean.
# Then the generated blocks of docs/algos/*.md (curves, quick-grid rows) from them: docs/pages.py.
summary: setup
	$(BIN)/python -m reproduce.summarize
	$(BIN)/python docs/pages.py

# The documentation site (mkdocs.yml, docs/, docs/hooks.py) in strict mode: a broken link, a missing anchor or a page
# left out of the nav fails. The docs extra at the exact versions of requirements-docs.lock; the site goes to site/.
DOCS_STAMP := $(VENV)/.installed-docs
setup-docs: $(DOCS_STAMP)

$(DOCS_STAMP): $(STAMP) requirements-docs.lock
	$(BIN)/python -m pip install -qq -c requirements.lock -r requirements-docs.lock
	@touch $(DOCS_STAMP)

docs: setup-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Re-resolve the ranges in pyproject.toml into requirements.lock and requirements-docs.lock (in a throw-away venv).
lock:
	rm -rf /tmp/fujimoto-jax-lock && $(PYTHON) -m venv /tmp/fujimoto-jax-lock
	/tmp/fujimoto-jax-lock/bin/python -m pip install -qq --upgrade pip
	/tmp/fujimoto-jax-lock/bin/python -m pip install -qq ".[dev,tb,video,plot,dmc,atari,minatar,offline,ogbench,cluster]"
	/tmp/fujimoto-jax-lock/bin/python -m pip freeze --all --exclude fujimoto-jax --exclude pip > requirements.lock
	/tmp/fujimoto-jax-lock/bin/python -m pip install -qq -c requirements.lock ".[docs]"
	{ echo "# \`make docs\`: the docs extra's exact versions, installed with requirements.lock as a constraint."; \
	  /tmp/fujimoto-jax-lock/bin/python -m pip freeze --all --exclude fujimoto-jax --exclude pip \
	  | grep -v -x -F -f requirements.lock; } > requirements-docs.lock

clean:
	rm -rf $(VENV) .pytest_cache build site *.egg-info MUJOCO_LOG.TXT
	find . -name __pycache__ -prune -exec rm -rf {} +
