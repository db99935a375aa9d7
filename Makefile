# `make run` and `make test` create the environment (.venv) when it is missing or requirements.txt changed.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-requirements
RAY_STAMP := $(VENV)/.installed-requirements-ray

.PHONY: run test test-fast test-ray setup setup-ray build bench clean-cache

$(STAMP): requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -r requirements.txt
	cp requirements.txt $@

setup: $(STAMP)

# Optional: Ray, for --ray / ATELIER_RAY (core/distributed/), pinned together with requirements.txt
$(RAY_STAMP): $(STAMP) requirements-ray.txt
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -r requirements-ray.txt -c requirements.txt
	cp requirements-ray.txt $@

setup-ray: $(RAY_STAMP)

run: $(STAMP)
	$(VENV)/bin/python -m streamlit run app.py

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not integration and not app and not ray"

# the cluster tests: a simulated Ray cluster on this machine (installs requirements-ray.txt first)
test-ray: $(RAY_STAMP)
	$(VENV)/bin/python -m pytest -q -m ray

build: $(STAMP)
	$(VENV)/bin/python -m core build

bench: $(STAMP)
	$(VENV)/bin/python -m core bench embed
	$(VENV)/bin/python -m core bench search

clean-cache:
	rm -rf cache
