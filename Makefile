# The two commands: `make repro` runs the pipeline, `make test` runs the tests.
# Both create .venv and install the pinned dependencies first when needed.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 5000

# Stages call `python`: make it the environment's.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: repro test test-fast format ui setup bench compare predict send docs

setup: $(STAMP)

$(STAMP): requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing pinned dependencies into $(VENV) (first time only, a few minutes)..."
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock 2>&1 \
		| { grep -v "is ignored: it is neither a file nor a directory" || true; }
	@touch $@

# DVC's echo of each command, its lock-file notes and blank lines are left out: each stage says
# in a line what it did (LOGLEVEL=DEBUG for more); DVC's errors go to stderr, untouched.
repro: $(STAMP)
	@echo "dvc repro"
	@dvc repro | { grep --line-buffered -v -e '^> ' -e '^Updating lock file' -e '^$$' || true; }
	@python -m stages.send --if-pending || echo "(the pipeline's outputs are written; \`make send\` logs the rest once the store is back)"
	@python -m stages.show --audit reports/audit.json
	@echo
	@echo "The report: reports/report.html (open it in a browser); the pick and why: reports/audit.json; every output: docs/getting-started.md"
	@echo "MLflow: make ui (it prints the address to open); predictions from the champion: make predict INPUT=rows.csv"

# Tests run side by side, a worker per CPU core (pytest-xdist's count, at most 4); PYTEST_ARGS=-n0 runs them one by one.
XDIST := -n auto --maxprocesses 4

test: $(STAMP)
	python -m pytest $(XDIST) $(PYTEST_ARGS)

# The developer loop: every test but the end-to-end ones (marked slow); `make test` runs them all.
test-fast: $(STAMP)
	python -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

# The code's one style (ruff format at pyproject.toml's line length); a fast test checks it.
format: $(STAMP)
	ruff format pipeline stages bench tests

# The documentation site, built offline into site/ (open site/index.html); any warning fails it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict

# The MLflow UI on this checkout's store; it prints the address that lists the candidates flat.
ui: $(STAMP)
	@python -m stages.show --runs-table http://127.0.0.1:$(PORT)
	mlflow ui --backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}" --port $(PORT)

# Experiments side by side (within 200 characters): what each changed against its baseline
# commit, the pick, its validation and test scores, P(best), and the reference's.
compare: $(STAMP)
	dvc exp show --json | python -m stages.show --experiments -

# Predictions on raw rows from the registered champion (or MODEL=<any MLflow model URI>):
#   make predict INPUT=new_rows.csv [OUTPUT=predictions.csv] [MODEL=models:/imbalanced-mlp/3]
# Without INPUT: the bundled digits' raw rows, written to data/digits.csv first.
INPUT ?= data/digits.csv
predict: $(STAMP) $(filter data/digits.csv,$(INPUT))
	python -m stages.predict --input $(INPUT) $(if $(OUTPUT),--output $(OUTPUT)) $(if $(MODEL),--model $(MODEL))

data/digits.csv: | $(STAMP)
	python -c "from sklearn.datasets import load_digits as l; d = l(as_frame=True); \
		d.data.astype(int).assign(digit=d.target).to_csv('$@', index=False)"

# What the stages could not log (the store unreachable, lost mid-run, or PIPELINE_OFFLINE=1):
# sent from .mlflow-outbox/, idempotently; `make repro` does it too when something waits.
send: $(STAMP)
	python -m stages.send

bench: $(STAMP)
	python -m bench.sweep
