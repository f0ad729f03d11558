# `make demo` sets everything up and runs the main job; `make test` runs the tests.
# Both are idempotent: the virtual environment is built once and rebuilt only when
# pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
INSTALLED = $(VENV)/.installed

.PHONY: install demo test builtin explore-screenshots clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/vae train --name demo-$$(date +%Y%m%d-%H%M%S)
	$(BIN)/vae sample --n 64
	$(BIN)/vae moon 1.0 runs/full.png
	$(BIN)/vae moon 0.5 runs/half.png
	$(BIN)/vae interpolate runs/full.png runs/half.png --gif

test: $(INSTALLED)
	$(BIN)/python -m pytest -q

# Retrains the built-in moons model (vae_cli/weights/moons.pt, `--run builtin:moons`) from the
# shipped configs/moons.yaml and its seed: run it whenever that config changes, and commit the file.
builtin: $(INSTALLED)
	$(BIN)/python -m vae_cli.builtin

# The screenshots docs/explore.md shows, taken by the browser test of `vae explore`.
explore-screenshots: $(INSTALLED)
	VAE_EXPLORE_SCREENSHOTS=$(CURDIR)/docs $(BIN)/python -m pytest -q tests/test_explore_browser.py

clean:
	rm -rf $(VENV)
