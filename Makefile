# Set-up and checks. From a fresh clone `make demo` or `make test` is enough (each builds
# .venv first when it is missing); see README.md.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch keeps the environment small; a GPU machine can skip it
# (pip then resolves the project's torch range to a CUDA build).
TORCH_PIN ?= torch==2.13.0

.PHONY: install lint test check demo train-embedded probe-embedded clean mutants presets-doc

# The venv as a file: $(VENV)/bin/vidgen, written by the last pip install below, so an
# install that failed half-way is redone and a finished one is not. `make test` and
# `make demo` need it; `install` (phony) always runs the same recipe, for a venv only or
# to bring one up to date after pyproject.toml changed.
VENV_READY = $(VENV)/bin/vidgen

install $(VENV_READY):
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/python -m pip install $(TORCH_PIN)
	# vidgen[post]'s spandrel for the --upscale-model tests, without torchvision: PyPI's torchvision
	# wheels are CUDA builds that do not import beside the CPU torch (vidgen/media/post/upscaler.py copes).
	$(VENV)/bin/python -m pip install --no-deps 'spandrel>=0.4' einops
	$(VENV)/bin/python -m pip install -e '.[test]'

# One worker per core (the tests are single-threaded; times in docs/benchmarks.md);
# a module's tests stay on one worker, so a module's fixtures (a Ray cluster) are built once.
test: $(VENV_READY)
	$(VENV)/bin/python -m pytest -q -n auto --dist loadscope

# The inner loop: everything but the tests marked `slow` (processes, servers, launchers, Ray, a
# browser) and `model` (tiny real pipelines: presets, families, loading, quantization, LoRA);
# the command line, batch, output and exit-code tests run on the fake pipeline (tests/fake_pipeline.py).
# Run `make test` before a commit that touches loading, a preset or a process.
check: $(VENV_READY)
	$(VENV)/bin/python -m pytest -q -n auto --dist loadscope -m "not slow and not model"

# The formatter and the linter (ruff, configured in pyproject.toml): `make lint` checks as CI does;
# `ruff format . && ruff check --fix .` (in the venv) rewrites.
lint: $(VENV_READY)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

# One clip from the built-in model (needs its weights in vidgen/embedded/weights/shapes).
demo: $(VENV_READY)
	$(VENV)/bin/vidgen "a red circle moving left on a black background" --seed 1 -o demo.mp4 --overwrite

# Retrain the built-in Shapes model from scratch and write its weights (docs/embedded-model.md).
# One torch thread a process; the decoder runs beside the denoiser on the second core. Every stage
# checkpoints under runs/shapes and resumes when run again: stop it at any point, run
# `make train-embedded` again later, and it goes on where it stopped. Minutes are each stage's budget.
# DEVICE=cuda runs the latent pool, the decoder and the denoiser on a GPU with the batches and minutes
# the shipped weights were trained with (an H200, about 20 minutes in all); the autoencoder stays on the CPU.
TRAIN = $(VENV)/bin/python -m training.train
DEVICE ?= cpu
ifeq ($(DEVICE),cpu)
DECODER_ON = --minutes 90
DENOISER_ON = --minutes 150
else
DECODER_ON = --minutes 6.5 --device $(DEVICE) --batch 32 --crop 64 --workers 10
DENOISER_ON = --minutes 10.3 --device $(DEVICE) --batch 256 --lr 1e-3
endif
train-embedded:
	$(TRAIN) vae --minutes 40
	$(TRAIN) latents --device $(DEVICE) $(if $(filter cpu,$(DEVICE)),,--pool 20000 --workers 14)
	$(TRAIN) decoder $(DECODER_ON) > runs/shapes/decoder.log 2>&1 & \
	$(TRAIN) denoiser $(DENOISER_ON); status=$$?; wait $$! && test $$status -eq 0
	$(TRAIN) export --dtype float16

# Score the built-in model with the probe: 100 random prompts, the held-out combinations, and the
# ceiling (the same probe on its autoencoder's round trips of rendered clips, in both layouts).
probe-embedded:
	$(VENV)/bin/python benchmarks/probe_shapes.py --count 100 --json docs/probe-shapes.json
	$(VENV)/bin/python benchmarks/probe_shapes.py --count 40 --held-out --json docs/probe-shapes-held-out.json
	$(VENV)/bin/python benchmarks/probe_shapes.py --count 100 --ceiling --json docs/probe-shapes-ceiling.json
	$(VENV)/bin/python benchmarks/probe_shapes.py --count 100 --ceiling --canonical --json docs/probe-shapes-ceiling-canonical.json

# Break what each listed test claims and check that the test then fails (tests/test_mutants.py;
# two at a time, each in a child forked from a runner that imported torch once: about 70 s on 2 cores,
# docs/benchmarks.md; CI runs it after the tests). `make test` runs only its cheap check.
mutants: $(VENV_READY)
	$(VENV)/bin/python tests/test_mutants.py --jobs 2

# docs/presets.md's generated part (every preset's defaults and their sources) from presets/*.toml.
presets-doc: $(VENV_READY)
	$(VENV)/bin/python tools/presets_doc.py

clean:
	rm -rf build dist .pytest_cache demo.mp4

# The declared dependency floors, tested: a second venv with every dependency of vidgen and of its
# test extra at the floor pyproject.toml declares (constraints/floors.txt pins each;
# tests/test_floors.py keeps the two equal), and the fast tier run in it. The venv is a file
# target as VENV_READY is, rebuilt in place when pyproject.toml or the pins change.
FLOORS_VENV ?= .venv-floors
FLOORS_READY = $(FLOORS_VENV)/bin/vidgen
FLOORS = constraints/floors.txt

.PHONY: test-floors
$(FLOORS_READY): pyproject.toml $(FLOORS)
	test -x $(FLOORS_VENV)/bin/python || $(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/python -m pip install --upgrade pip
	$(FLOORS_VENV)/bin/python -m pip install -c $(FLOORS) torch
	$(FLOORS_VENV)/bin/python -m pip install -c $(FLOORS) --no-deps spandrel einops
	$(FLOORS_VENV)/bin/python -m pip install -c $(FLOORS) -e '.[test]'
	touch $(FLOORS_READY)

test-floors: $(FLOORS_READY)
	$(FLOORS_VENV)/bin/python -m pytest -q -n auto --dist loadscope -m "not slow"
