# Set-up and checks. `make install` then `make test`; see README.md.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch keeps the environment small; a GPU machine can skip it
# (pip then resolves the project's torch range to a CUDA build).
TORCH_PIN ?= torch==2.13.0

.PHONY: install test demo clean

install:
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/python -m pip install $(TORCH_PIN)
	$(VENV)/bin/python -m pip install -e '.[test]'

test:
	$(VENV)/bin/python -m pytest -q

# One clip from the built-in model (needs its weights in vidgen/embedded/weights/shapes).
demo:
	$(VENV)/bin/vidgen "a red circle moving left on a black background" --seed 1 -o demo.mp4 --overwrite

clean:
	rm -rf build dist .pytest_cache demo.mp4
