# `make run` and `make test` create the environment (.venv) when it is missing or requirements.txt changed.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-requirements

.PHONY: run test test-fast setup build bench clean-cache

$(STAMP): requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -r requirements.txt
	cp requirements.txt $@

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/python -m streamlit run app.py

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not integration and not app"

build: $(STAMP)
	$(VENV)/bin/python -m core build

bench: $(STAMP)
	$(VENV)/bin/python -m core bench embed
	$(VENV)/bin/python -m core bench search

clean-cache:
	rm -rf cache
