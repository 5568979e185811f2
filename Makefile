# Spectrogram-image deepfake speech detection: data/ → images/ → runs/<run>/.
# `make help` lists the targets; variables are set on the command line: make train ARCH=resnet101
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed

# DATASET, WORKERS, ARCH, EPOCHS, BS and SPLIT are passed on only when set: unset, the command's own default
# (its settings dataclass, shown by --help) applies, so no default is written twice
DATA ?=
DATASET ?=
IMAGES ?= images
WORKERS ?=
ARCH ?=
EPOCHS ?=
BS ?=
RUNS ?= runs
RUN ?= $(RUNS)/latest
SPLIT ?=
AUDIO ?=
OUT ?=
FORMAT ?=
SEEDS ?=
RUN_A ?=
RUN_B ?=
GPUS ?= 1
GPU_CHECK_ARGS ?=
TRAIN_ARGS ?=
SPEC_ARGS ?=
GROUP ?= $(if $(DATA),,path:2)
TRAIN_GROUPS ?=
TEST_GROUPS ?=
QUALITY_ARGS ?=
ACCELERATE_ARGS ?=
DEMO_DATA := data/demo
SEEDS_FILE := seeds$(if $(ARCH),-$(ARCH)).txt
# the offline GPU machine (Python 3.12, its own torch) lacks these: `make gpu-wheels` fetches them into .whl/
WHEELS := .whl
GPU_WHEELS := fastai==2.8.12 fastcore==2.2.41 fastprogress==1.0.3 fastdownload==0.0.8 fasttransform==0.0.5 \
              plum-dispatch==2.9.0 beartype==0.23.1 librosa==0.11.0 soxr==1.1.0 soundfile==0.14.0 cffi==2.1.1 \
              pycparser==3.12 audioread==3.1.0 pooch==1.9.0 decorator==5.3.1 platformdirs==4.14.9
GPU_SITE := /tmp/site
# bench-gpu runs with the project's .venv where there is one, else with the machine's own python3 (and torch)
BENCH_PY := $(if $(wildcard $(PY)),$(PY),python3)
# `make images` with no DATA converts the built-in synthetic demo corpus
SOURCE := $(if $(DATA),$(DATA),$(DEMO_DATA))

.DEFAULT_GOAL := help
.PHONY: help install demo demo-data images audit train evaluate compare predict test browser \
        bench-convert bench-train bench-predict bench-gpu gpu-wheels bench-quality example-picture clean

help: ## list the targets and variables
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-14s %s\n", $$1, $$2}'
	@echo
	@echo "  variables: DATA=<audio root or csv> DATASET=<layout> IMAGES=$(IMAGES) WORKERS=<n> (0 = all cores)"
	@echo "             ARCH=<name> EPOCHS=<n> BS=<n> SEEDS='0 1 2' GPUS=$(GPUS) RUN=$(RUN) SPLIT=<split> AUDIO=<files>"
	@echo "             (unset DATASET, WORKERS, ARCH, EPOCHS, BS, SPLIT: the command's default, see its --help)"
	@echo "             RUN_A=<run> RUN_B=<run> (make compare)"
	@echo "             GPU_CHECK_ARGS='<benchmarks.gpu_check flags, e.g. --work /tmp/check --budget 480>'"
	@echo "             SPEC_ARGS='<more spec2img flags, e.g. --augment 2 --overwrite>' TRAIN_ARGS='<more classify-train flags>' ACCELERATE_ARGS='--num_machines M --machine_rank R ...'"
	@echo "             GROUP=<column | system | path:N> TRAIN_GROUPS=a,b TEST_GROUPS=c QUALITY_ARGS='<more benchmarks.quality flags>' (bench-quality)"

install: $(STAMP) ## create .venv, install the tested lock requirements.txt, then this package (editable) and its commands

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

demo-data: $(STAMP) ## generate the synthetic demo corpus in data/demo (seeded, deterministic)
	$(BIN)/spec2img-demo $(DEMO_DATA)

demo: demo-data ## the whole job on the synthetic demo corpus: images, CPU training, evaluation report
	$(BIN)/spec2img $(DEMO_DATA) --out $(IMAGES) $(if $(WORKERS),--workers $(WORKERS))
	$(BIN)/classify-train --images $(IMAGES) --arch lcnn --no-pretrained --epochs 6 --bs 32 --out $(RUNS)
	$(BIN)/classify-evaluate $(RUNS)/latest --split test

images: $(STAMP) $(if $(DATA),,demo-data) ## convert DATA (default: the demo corpus) into IMAGES, with the audit
	$(BIN)/spec2img $(SOURCE) --out $(IMAGES) $(if $(DATASET),--dataset $(DATASET)) $(if $(WORKERS),--workers $(WORKERS)) $(SPEC_ARGS)

audit: $(STAMP) ## (re)write IMAGES/audit/: counts, sample rates, duration and amplitude histograms
	$(BIN)/spec2img-audit $(IMAGES)

train: $(STAMP) ## fine-tune ARCH on IMAGES into RUNS/<arch>-<time>/ (SEEDS="0 1 2" trains one run per seed, GPUS=N uses accelerate)
	@set -e; for seed in $(if $(SEEDS),$(SEEDS),0); do \
	  $(if $(filter-out 1,$(GPUS)),$(BIN)/accelerate launch --multi_gpu --num_processes $(GPUS) --num_machines 1 --mixed_precision no --dynamo_backend no $(ACCELERATE_ARGS)) $(BIN)/classify-train \
	    --images $(IMAGES) $(if $(ARCH),--arch $(ARCH)) $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(BS),--bs $(BS)) \
	    --seed $$seed --out $(RUNS) $(TRAIN_ARGS); \
	  $(if $(SEEDS),readlink -f $(RUNS)/latest >> $(RUNS)/.$(SEEDS_FILE).tmp;) \
	done; $(if $(SEEDS),mv $(RUNS)/.$(SEEDS_FILE).tmp $(RUNS)/$(SEEDS_FILE); echo "seed runs listed in $(RUNS)/$(SEEDS_FILE)")

evaluate: $(STAMP) ## scores, tuned threshold, metrics, plots and report.html for RUN (SEEDS=... aggregates the seed runs of ARCH)
	$(BIN)/classify-evaluate $(if $(SEEDS),$$(cat $(RUNS)/$(SEEDS_FILE)),$(RUN)) $(if $(SPLIT),--split $(SPLIT))

compare: $(STAMP) ## EER of RUN_A minus RUN_B (both evaluated on the same images) with a paired-bootstrap interval
	@test -n "$(RUN_A)" -a -n "$(RUN_B)" || { echo "usage: make compare RUN_A=runs/<a> RUN_B=runs/<b>"; exit 2; }
	$(BIN)/classify-compare $(RUN_A) $(RUN_B)

predict: $(STAMP) ## score AUDIO files or folders with RUN: path, spoof probability, score, label
	@test -n "$(AUDIO)" || { echo "usage: make predict RUN=runs/latest AUDIO='clip.wav folder/'"; exit 2; }
	$(BIN)/classify-predict --run $(RUN) $(AUDIO) $(if $(OUT),--out $(OUT)) $(if $(FORMAT),--format $(FORMAT))

# example-picture: three test-split bona fide clips of the demo corpus followed by three spoofed ones, as one file
define JOIN_DEMO_CLIPS
import csv, sys, numpy as np, soundfile as sf
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["split"] == "test" and r["status"] == "ok"]
pick = [r for label in ("bonafide", "spoof") for r in [r for r in rows if r["label"] == label][:3]]
waves = [sf.read(r["path"], dtype="float32")[0] for r in pick]
sf.write(sys.argv[2], np.concatenate(waves), sf.info(pick[0]["path"]).samplerate)
print("joined", " + ".join(r["path"] for r in pick), "->", sys.argv[2])
endef
export JOIN_DEMO_CLIPS

example-picture: $(STAMP) ## README's picture classify/assets/explain-example.png: predict --explain on joined demo clips (after make demo)
	mkdir -p $(RUNS)/example
	$(PY) -c "$$JOIN_DEMO_CLIPS" $(IMAGES)/manifest.csv $(RUNS)/example/bonafide-then-spoof.wav
	$(PY) -m classify.predict --run $(RUN) $(RUNS)/example/bonafide-then-spoof.wav --explain $(RUNS)/example
	cp $(RUNS)/example/bonafide-then-spoof.wav.png classify/assets/explain-example.png

browser: ## install Debian's Chromium for the report test, when missing (needs root)
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: $(STAMP) browser ## run the test suite (CPU only, no network, generated data only)
	$(PY) -m pytest -q tests

bench-convert: $(STAMP) ## conversion clips/s: 1 worker, all workers, N x 1 side by side, matplotlib approach; ratios
	$(PY) -m benchmarks.convert_throughput

bench-train: $(STAMP) ## training images/s: plain PyTorch ceiling vs the project's path in memory and out of core; ratios
	$(PY) -m benchmarks.train_throughput

bench-predict: $(STAMP) ## predict clips/s: front end with 1 and all workers (scaling), model, end to end vs min(both)
	$(PY) -m benchmarks.predict_throughput

bench-quality: $(STAMP) $(if $(DATA),,demo-data) ## generalization: train on some GROUPs of DATA, test on others; recipes x seeds -> benchmarks/out/quality.csv
	@test -n "$(GROUP)" || { echo "usage: make bench-quality DATA=<csv or root> GROUP=<column | system | path:N> [TRAIN_GROUPS=a,b TEST_GROUPS=c]"; exit 2; }
	$(PY) -m benchmarks.quality $(SOURCE)$(if $(DATA),,/manifest.csv) --group '$(GROUP)' $(if $(TRAIN_GROUPS),--train-groups '$(TRAIN_GROUPS)') $(if $(TEST_GROUPS),--test-groups '$(TEST_GROUPS)') $(QUALITY_ARGS)

gpu-wheels: ## download into .whl/ the wheels the offline GPU machine lacks (fastai, librosa and their small deps; cp312)
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  --platform any -d $(WHEELS) $(GPU_WHEELS)
	@ls $(WHEELS) | wc -l | xargs echo "wheels in $(WHEELS)/:"; du -sh $(WHEELS)

bench-gpu: ## the GPU check: demo, 3 LCNN loaders, resnet101 + efficientnet_b4, evaluate, predict GPU vs CPU, benchmarks
	@$(BENCH_PY) -c "import fastai, librosa" 2>/dev/null || { \
	  test -n "$$(ls $(WHEELS)/*.whl 2>/dev/null)" || { echo "fastai/librosa missing and no $(WHEELS)/*.whl: run make gpu-wheels where pip works, then carry $(WHEELS)/"; exit 2; }; \
	  echo "installing $(WHEELS)/*.whl into $(GPU_SITE) (against this machine's torch)"; \
	  $(BENCH_PY) -m pip install -q --no-index --no-deps --no-compile --target $(GPU_SITE) $(WHEELS)/*.whl; }
	PYTHONPATH=$(GPU_SITE)$${PYTHONPATH:+:$$PYTHONPATH} $(BENCH_PY) -m benchmarks.gpu_check $(GPU_CHECK_ARGS)

clean: ## remove generated data, images and runs (keeps .venv)
	rm -rf $(DEMO_DATA) $(RUNS) benchmarks/out .pytest_cache
	find $(IMAGES) -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
