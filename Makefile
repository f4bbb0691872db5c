# The two README commands: `make demo` (install, train the default run, analyze it, write
# figures) and `make test` (install, then the test suite and the linter).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
RUN    ?= runs/n4

.PHONY: install demo test bench clean

$(BIN)/interp-grok: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# pinned first: a bare `torch` requirement would pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(BIN)/interp-grok

# Re-running is safe: an existing run is resumed (a finished one is left as it is) and
# only checkpoints not analyzed yet are analyzed.
demo: install
	if [ -f $(RUN)/config.json ]; then $(BIN)/interp-grok train --resume --out $(RUN); \
	else $(BIN)/interp-grok train --out $(RUN); fi
	$(BIN)/interp-grok analyze $(RUN)

test: install
	$(BIN)/python -m pytest -q
	$(BIN)/ruff check interp_grok tests benchmarks

bench: install
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_analyze.py

clean:
	rm -rf $(VENV) build *.egg-info
