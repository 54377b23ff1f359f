# machine-sound: every command a user needs. Run `make help` for the list.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
ARGS   ?=
SNR    ?= -6_dB
JOBS   ?= 2
DIR    ?=
HOST   ?= localhost
REAL   ?= ../shared/real-samples

.PHONY: help install download train eval predict export sweep compare summarize test test-slow baseline figures bench tensorboard lint clean clean-data

help:  ## list the commands
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install:  ## create .venv and install the package (editable) with the dev tools
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'

download:  ## real data, verified and unpacked: make download ARGS="dataset=mimii snr=-6_dB machine=pump" (or dcase2020..2025)
	@test -n "$(ARGS)" || { echo 'usage: make download ARGS="dataset=<mimii|dcase2020|...|dcase2025> [machine=a,b] [snr=-6_dB] [dest=<folder>] [dry_run=true]"'; exit 2; }
	$(PY) -m machine_sound.download $(ARGS)

train:  ## train the quickstart model (synthetic -6 dB pump/id_04); extra overrides in ARGS="..."
	$(PY) train.py machine=pump id=id_04 $(ARGS)

eval:  ## test a checkpoint again, on its run's data or another: make eval CKPT=<file.ckpt> [ARGS="snr=6_dB"]
	@test -n "$(CKPT)" || { echo "usage: make eval CKPT=<run folder>/checkpoints/<name>.ckpt [ARGS='snr=6_dB']"; exit 2; }
	$(PY) -m machine_sound.eval "ckpt_path=$(CKPT)" $(ARGS)

predict:  ## score recordings: make predict CKPT=<file.ckpt or .onnx> INPUT=<file or folder> [ARGS=...]
	@test -n "$(CKPT)" -a -n "$(INPUT)" || { echo "usage: make predict CKPT=<file.ckpt or file.onnx> INPUT=<file or folder> [ARGS='output=scores.csv aggregate=max timeline=true']"; exit 2; }
	$(PY) -m machine_sound.predict "$$(case "$(CKPT)" in *.onnx) echo model_path;; *) echo ckpt_path;; esac)=$(CKPT)" "input=$(INPUT)" $(ARGS)

export:  ## one ONNX file of a checkpoint, to run without torch: make export CKPT=<file.ckpt> [ARGS="output=m.onnx"]
	@test -n "$(CKPT)" || { echo "usage: make export CKPT=<file.ckpt> [ARGS='output=model.onnx']"; exit 2; }
	$(PY) -m machine_sound.export "ckpt_path=$(CKPT)" $(ARGS)

sweep:  ## all 16 machine/IDs at SNR (default -6_dB), JOBS (default 2) in parallel; ends in one results table
	$(PY) train.py -m sweep=mimii snr=$(SNR) hydra/launcher=joblib hydra.launcher.n_jobs=$(JOBS) $(ARGS)

compare:  ## the normal-only detectors side by side (36 jobs at SNR; table into benchmarks/results/)
	$(PY) train.py -m sweep=compare snr=$(SNR) hydra/launcher=joblib hydra.launcher.n_jobs=$(JOBS) \
		hydra.sweep.dir=outputs/sweeps/compare_$(SNR) $(ARGS)
	$(PY) benchmarks/compare_detectors.py outputs/sweeps/compare_$(SNR) \
		--out benchmarks/results/compare_$(SNR)_$$(date +%F).md

summarize:  ## rebuild the results table of a sweep folder: make summarize DIR=outputs/sweeps/<date>
	@test -n "$(DIR)" || { echo "usage: make summarize DIR=outputs/sweeps/<date> [ARGS='--positive normal']"; exit 2; }
	$(PY) -m machine_sound.summarize "$(DIR)" $(ARGS)

test:  ## the default test suite (fast; slow tests excluded)
	$(PY) -m pytest

test-slow:  ## the slow tests: real training runs that must learn
	$(PY) -m pytest -m slow

baseline:  ## linear classifier on time-averaged log-mels over all 16 machine/IDs (how hard is the data?)
	$(PY) benchmarks/linear_baseline.py snr=$(SNR) --out benchmarks/results/linear_baseline_$(SNR).md $(ARGS)

figures:  ## log-mel of genuine clips (REAL=<folder>, not in this repository) beside synthetic ones, into docs/
	$(PY) benchmarks/real_vs_synthetic.py --real "$(REAL)" $(ARGS)

bench:  ## data path (installs librosa): cache, librosa, PNG+ImageFolder; inference: PyTorch vs ONNX Runtime; download
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) benchmarks/pipeline.py $(ARGS)
	$(PY) benchmarks/inference.py
	$(PY) benchmarks/download.py

tensorboard:  ## dashboards of every run under outputs/ (or DIR=...), on this machine only (HOST=0.0.0.0 to share)
	$(VENV)/bin/tensorboard --logdir "$(or $(DIR),outputs)" --host "$(HOST)"

lint:  ## static checks
	$(VENV)/bin/ruff check src tests benchmarks train.py

clean:  ## remove runs, sweeps, evaluations, predictions and caches (keeps .venv and generated data)
	rm -rf outputs/runs outputs/sweeps outputs/evals outputs/predictions .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

clean-data:  ## remove the generated synthetic recordings, the decoded-audio cache and the benchmark data
	rm -rf data/synthetic data/cache data/bench
