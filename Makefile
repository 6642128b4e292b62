# Two commands on a fresh machine:  `make serve`  and  `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# the encoder's precision for `make serve`; auto: the int8 ONNX encoder on a CPU (README "Speed")
PRECISION ?= auto

.PHONY: venv serve test bench clean

$(BIN)/pickwise: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/pickwise

venv: $(BIN)/pickwise

## Start the service: your models ($PICKWISE_HOME/registry) over the shipped ones, the serving predictor.
serve: venv
	HF_HUB_OFFLINE=1 $(BIN)/pickwise serve --host $(HOST) --port $(PORT) --precision $(PRECISION)

## Lint (ruff), check the layers (import-linter), then run the whole test suite (what CI runs).
test: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest tests

clean:
	rm -rf $(VENV) build *.egg-info
