# Two commands on a fresh machine:
#   make all    create .venv, install the pinned environment, run the whole DAG on the default config (demo subject)
#   make test   create/update .venv and run the test suite
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CORES ?= $(shell nproc 2>/dev/null || echo 1)  # train/render/evaluate use up to this many torch threads
PIP_QUIET := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: all test venv lint dryrun clean-results

$(STAMP): envs/requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip $(PIP_QUIET)
	$(PY) -m pip install -q -r envs/requirements.txt $(PIP_QUIET)
	$(PY) -m pip install -q --no-deps -e . $(PIP_QUIET)
	touch $(STAMP)

venv: $(STAMP)

all: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/snakemake --workflow-profile workflow/profiles/default --cores $(CORES) all

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/snakemake --lint

dryrun: $(STAMP)
	$(VENV)/bin/snakemake -n all

clean-results:
	rm -rf results reports logs .snakemake
