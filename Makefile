# SpineTumor: the two commands of the README.
#   make demo  - set up .venv and run the main job on bundled data
#   make test  - set up .venv and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean

venv: $(STAMP)

# torch==2.13.0 is pinned first so pip takes the CPU build; the extras follow.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==2.13.0" || $(BIN)/python -m pip install -q "torch>=2.2,<2.15"
	$(BIN)/python -m pip install -q -e ".[ml,plot,slicer,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m spinetumor.demo --out demo_output

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) demo_output .pytest_cache
