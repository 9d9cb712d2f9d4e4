# The two commands of a fresh machine: `make demo` and `make test`. Each creates .venv itself.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint check bench package audit clean

$(VENV)/.installed: requirements.txt requirements-deploy.txt requirements-dev.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

demo: $(VENV)/.installed  ## run the main job locally: emulator + function on SQLite
	$(PY) -m handler demo

test: $(VENV)/.installed  ## the whole test suite (needs Redis on 127.0.0.1:6379)
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check handler emulator tests bench
	$(VENV)/bin/mypy handler emulator

check: lint test

# Needs node >= 20.19 and npm; no AWS account or credentials. Report: .serverless/batch-autoretry.zip
package:  ## AWS Lambda package + CloudFormation template in .serverless/ (osls, pinned in package-lock.json)
	npm ci --no-audit --no-fund
	SLS_TELEMETRY_DISABLED=1 SLS_NOTIFICATIONS_MODE=off npx --no-install osls package
	@ls -l .serverless/batch-autoretry.zip

# pip-audit resolves the pinned runtime requirements in a scratch venv and looks every package up
# in the package index's vulnerability data. --strict: a package it could not look up (the service unreachable,
# say) fails the target, instead of being skipped under "No known vulnerabilities found".
audit: $(VENV)/.installed  ## known vulnerabilities in requirements.txt (needs the index's vulnerability service)
	$(VENV)/bin/pip-audit --requirement requirements.txt --strict --progress-spinner off

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
