# The two commands of the README are `make lab` and `make test`; every other target is
# a step they share, each idempotent, so a fresh Debian 12 machine needs nothing else.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
APT_PACKAGES := systemd-container iproute2 gzip tar dpkg-dev

.PHONY: deps venv artifacts s3server lab test lint unit integration down bench reliability clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	@# kubectl for the lab test of `kubernetes:apply` (this kind of machine has one already).
	@command -v kubectl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null; }
	@# apt-get download (artifacts) needs the package lists.
	@apt-cache show etcd-server >/dev/null 2>&1 || apt-get update -qq

$(VENV)/.stamp: requirements.txt
	python3.11 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

venv: $(VENV)/.stamp

# An S3-compatible server for the lab test of backups to S3 (moto's standalone server),
# in a venv of its own: the formula's venv must not hold boto3, so the runner can only
# use Salt's own S3 client.
MOTO := build/moto
$(MOTO)/.stamp:
	python3.11 -m venv $(MOTO)
	$(MOTO)/bin/python -m pip install -q "moto[server]==5.2.6"
	touch $@

s3server: $(MOTO)/.stamp

artifacts: deps venv
	scripts/build-artifacts

# Main job: a lab of 3 etcd nodes (+ a CA node), left running to explore.
lab: deps venv artifacts
	./lab up --apply

# Every test: lint, then the three tiers.
test: deps venv artifacts s3server
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest tests

lint:
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/yamllint -s .
	find salt pillar -name '*.sls' | xargs $(VENV)/bin/salt-lint

down:
	./lab down --all

# The fault catalogue, every row (make test runs three of them): the table is printed and
# kept in build/reliability.md (README: Reliability).
reliability: deps venv artifacts
	RELIABILITY=all $(PY) -m pytest tests/integration/test_reliability.py
	@cat build/reliability.md

bench: deps venv artifacts
	$(PY) -m benchmarks.lab_up
	$(PY) -m benchmarks.converge
	$(PY) -m benchmarks.health
	$(PY) -m benchmarks.roll
	$(PY) -m benchmarks.backup

clean: down
	rm -rf $(VENV) artifacts
