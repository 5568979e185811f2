# Spectrogram-image deepfake speech detection: data/ → images/ → runs/<run>/.
# `make help` lists the targets; variables are set on the command line: make train ARCH=resnet101
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

DATA ?=
DATASET ?= auto
IMAGES ?= images
WORKERS ?= 0
ARCH ?= resnet101
EPOCHS ?= 5
BS ?= 64
RUNS ?= runs
RUN ?= $(RUNS)/latest
SPLIT ?= test
AUDIO ?=
OUT ?=
FORMAT ?=
SEEDS ?=
GPUS ?= 1
TRAIN_ARGS ?=
SPEC_ARGS ?=
GROUP ?= $(if $(DATA),,path:2)
TRAIN_GROUPS ?=
TEST_GROUPS ?=
QUALITY_ARGS ?=
ACCELERATE_ARGS ?=
DEMO_DATA := data/demo
# `make images` with no DATA converts the built-in synthetic demo corpus
SOURCE := $(if $(DATA),$(DATA),$(DEMO_DATA))

.DEFAULT_GOAL := help
.PHONY: help install demo demo-data images audit train evaluate predict test browser \
        bench-convert bench-train bench-predict bench-quality clean

help: ## list the targets and variables
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-14s %s\n", $$1, $$2}'
	@echo
	@echo "  variables: DATA=<audio root or csv> DATASET=$(DATASET) IMAGES=$(IMAGES) WORKERS=$(WORKERS) (0 = all cores)"
	@echo "             ARCH=$(ARCH) EPOCHS=$(EPOCHS) BS=$(BS) SEEDS='0 1 2' GPUS=$(GPUS) RUN=$(RUN) SPLIT=$(SPLIT) AUDIO=<files>"
	@echo "             SPEC_ARGS='<more spec2img flags, e.g. --augment 2 --overwrite>' TRAIN_ARGS='<more classify.train flags>' ACCELERATE_ARGS='--num_machines M --machine_rank R ...'"
	@echo "             GROUP=<column | system | path:N> TRAIN_GROUPS=a,b TEST_GROUPS=c QUALITY_ARGS='<more benchmarks.quality flags>' (bench-quality)"

install: $(STAMP) ## create .venv and install requirements.txt (other targets do this first)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

demo-data: $(STAMP) ## generate the synthetic demo corpus in data/demo (seeded, deterministic)
	$(PY) -m spec2img.demo $(DEMO_DATA)

demo: demo-data ## the whole job on the synthetic demo corpus: images, CPU training, evaluation report
	$(PY) -m spec2img $(DEMO_DATA) --out $(IMAGES) --dataset auto --workers $(WORKERS)
	$(PY) -m classify.train --images $(IMAGES) --arch lcnn --no-pretrained --epochs 6 --bs 32 --out $(RUNS)
	$(PY) -m classify.evaluate $(RUNS)/latest --split test

images: $(STAMP) $(if $(DATA),,demo-data) ## convert DATA (default: the demo corpus) into IMAGES, with the audit
	$(PY) -m spec2img $(SOURCE) --out $(IMAGES) --dataset $(DATASET) --workers $(WORKERS) $(SPEC_ARGS)

audit: $(STAMP) ## (re)write IMAGES/audit/: counts, sample rates, duration and amplitude histograms
	$(PY) -m spec2img.audit $(IMAGES)

train: $(STAMP) ## fine-tune ARCH on IMAGES into RUNS/<arch>-<time>/ (SEEDS="0 1 2" trains one run per seed, GPUS=N uses accelerate)
	@set -e; for seed in $(if $(SEEDS),$(SEEDS),0); do \
	  $(if $(filter-out 1,$(GPUS)),$(VENV)/bin/accelerate launch --multi_gpu --num_processes $(GPUS) --num_machines 1 --mixed_precision no --dynamo_backend no $(ACCELERATE_ARGS) -m,$(PY) -m) classify.train \
	    --images $(IMAGES) --arch $(ARCH) --epochs $(EPOCHS) --bs $(BS) --seed $$seed --out $(RUNS) $(TRAIN_ARGS); \
	  $(if $(SEEDS),readlink -f $(RUNS)/latest >> $(RUNS)/.seeds-$(ARCH).tmp;) \
	done; $(if $(SEEDS),mv $(RUNS)/.seeds-$(ARCH).tmp $(RUNS)/seeds-$(ARCH).txt; echo "seed runs listed in $(RUNS)/seeds-$(ARCH).txt")

evaluate: $(STAMP) ## scores, tuned threshold, metrics, plots and report.html for RUN (SEEDS=... aggregates the seed runs of ARCH)
	$(PY) -m classify.evaluate $(if $(SEEDS),$$(cat $(RUNS)/seeds-$(ARCH).txt),$(RUN)) --split $(SPLIT)

predict: $(STAMP) ## score AUDIO files or folders with RUN: path, spoof probability, score, label
	@test -n "$(AUDIO)" || { echo "usage: make predict RUN=runs/latest AUDIO='clip.wav folder/'"; exit 2; }
	$(PY) -m classify.predict --run $(RUN) $(AUDIO) $(if $(OUT),--out $(OUT)) $(if $(FORMAT),--format $(FORMAT))

browser: ## install Debian's Chromium for the report test, when missing (needs root)
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: $(STAMP) browser ## run the test suite (CPU only, no network, generated data only)
	$(PY) -m pytest -q tests

bench-convert: $(STAMP) ## conversion clips/s: 1 worker, all workers, matplotlib specshow approach; ratios
	$(PY) -m benchmarks.convert_throughput

bench-train: $(STAMP) ## training images/s: plain PyTorch ceiling vs the project's path; ratio
	$(PY) -m benchmarks.train_throughput

bench-predict: $(STAMP) ## predict clips/s end to end from 4 s audio files, against conversion clips/s
	$(PY) -m benchmarks.predict_throughput

bench-quality: $(STAMP) $(if $(DATA),,demo-data) ## generalization: train on some GROUPs of DATA, test on others; recipes x seeds -> benchmarks/out/quality.csv
	@test -n "$(GROUP)" || { echo "usage: make bench-quality DATA=<csv or root> GROUP=<column | system | path:N> [TRAIN_GROUPS=a,b TEST_GROUPS=c]"; exit 2; }
	$(PY) -m benchmarks.quality $(SOURCE)$(if $(DATA),,/manifest.csv) --group '$(GROUP)' $(if $(TRAIN_GROUPS),--train-groups '$(TRAIN_GROUPS)') $(if $(TEST_GROUPS),--test-groups '$(TEST_GROUPS)') $(QUALITY_ARGS)

clean: ## remove generated data, images and runs (keeps .venv)
	rm -rf $(DEMO_DATA) $(RUNS) benchmarks/out .pytest_cache
	find $(IMAGES) -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
