# traitcache: `make demo` runs the whole pipeline on generated data, `make test` the tests.
# Both create .venv (Python 3.11+) with everything they need on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DATA ?= train=../shared/fixtures/chalearn/train validation=../shared/fixtures/chalearn/validation
LABELS ?=
CACHE ?= features
WEIGHTS ?= imagenet
JOBS ?= 0
EXTRACT_FLAGS ?=
NAME ?= seed-head
HEAD ?= seed
TRAIN_FLAGS ?=
PYTEST_FLAGS ?=
GPU ?=
comma := ,
# GPU=1 adds TensorFlow's CUDA build (the `gpu` extra) to the environment.
EXTRAS := dev$(if $(GPU),$(comma)gpu)

.PHONY: install features train test lint format docs bench bench-gpu demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)
ifneq ($(GPU),)
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
endif

# TRAITCACHE_VIA_MAKE names the variable that passes further flags: error messages then
# say how to set an option through make (WEIGHTS=..., TRAIN_FLAGS=--overwrite) beside its flag.
EXTRACT = $(BIN)/python -m extract $(DATA) --cache $(CACHE) $(foreach file,$(LABELS),--labels $(file)) --weights $(WEIGHTS) --jobs $(JOBS) $(EXTRACT_FLAGS)
COUNT_FAILURES = $(BIN)/python -c 'import sys; from cache.manifest import read_failures; print(len(read_failures(sys.argv[1])))'

# Exit 1 of the extraction (some videos failed, the rest are cached) is a success for make,
# whose own failure status, 2, would read as "nothing done"; its last line counts the failures.
features: $(STAMP)
	@echo '$(EXTRACT)'
	@status=0; TRAITCACHE_VIA_MAKE=EXTRACT_FLAGS $(EXTRACT) || status=$$?; \
	if [ $$status -ne 1 ]; then exit $$status; fi; \
	echo "make features: some videos failed, the others are cached; failed: $$($(COUNT_FAILURES) $(CACHE)) (see $(CACHE)/failures.csv)"

train: $(STAMP)
	TRAITCACHE_VIA_MAKE=TRAIN_FLAGS $(BIN)/python -m train fit --cache $(CACHE) --out runs/$(NAME) --head $(HEAD) $(TRAIN_FLAGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_FLAGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The README's option tables, generated from the commands' flags (tests/test_readme.py checks them).
docs: $(STAMP)
	$(BIN)/python -m scripts.options_table

bench: $(STAMP)
	$(BIN)/python -m bench.embed_bench --out bench-out/embed.json
	$(BIN)/python -m bench.extract_bench --out bench-out/extract.json
	$(BIN)/python -m bench.cluster_bench --out bench-out/cluster.json
	$(BIN)/python -m bench.memory_bench --out bench-out/memory.json
	$(BIN)/python -m bench.train_bench --out bench-out/train.json
	$(BIN)/python -m bench.add_bench --out bench-out/add.json

# ResNet50 on the GPU: img/s, clips/s and GPU busy % per batch size (make install GPU=1 first; needs a GPU).
bench-gpu: $(STAMP)
	$(BIN)/python -m bench.gpu_bench --out bench-out/gpu.json

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

clean:
	rm -rf demo-data demo-cache runs/demo bench-out .pytest_cache

# The ChaLearn protocol: extraction with the official pickles, every head with 5 seeds, an ensemble of the best,
# compare on test and the per-group audit, into one report folder (REPORT/report.md). Run again: nothing finished is
# redone. DATA is ChaLearn's folder holding train/ validation/ test/; LABELS its pickles; GROUPS its eth/gender CSVs.
REPORT ?= reports/chalearn
GROUPS ?=
CHALEARN_FLAGS ?=

.PHONY: chalearn
chalearn: $(STAMP)
	$(BIN)/python scripts/chalearn.py $(DATA) --cache $(CACHE) --report $(REPORT) --weights $(WEIGHTS) $(foreach file,$(LABELS),--labels $(file)) $(foreach file,$(GROUPS),--groups $(file)) $(CHALEARN_FLAGS)
