# Two commands do everything on a fresh machine (python3 + a C++ compiler):
#   make run    set up .venv if needed, then run the main job on the default (digits,
#               ULX3S-85F): `exitgate flow`, which resumes and skips up-to-date steps
#   make test   set up .venv if needed, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
RUN    ?= runs/digits
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/exitgate flow --out $(RUN)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2

bench: $(STAMP)
	$(BIN)/python bench/headline.py

clean:
	rm -rf $(VENV) runs
