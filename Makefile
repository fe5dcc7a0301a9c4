# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-installed

.PHONY: demo test lint docs bench setup clean compat-suites

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned, so no later requirement pulls a CUDA build
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,bench,cli,docs]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/torchnde demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# the documentation site into site/ (open site/index.html); quiet about mkdocs' own future
DOCS_ENV := DISABLE_MKDOCS_2_WARNING=true NO_MKDOCS_2_WARNING=1
docs: $(STAMP)
	$(DOCS_ENV) $(BIN)/mkdocs build

# the site with warnings as errors (a broken reference or link fails), then the tests, which
# check the site's inventory (tests/test_docs.py)
test: lint
	$(DOCS_ENV) $(BIN)/mkdocs build --strict
	TORCHNDE_DOCS_SITE=site $(BIN)/python -m pytest -q -n 2 --dist loadgroup

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# the peers' own test suites against torchnde's facades (outside the gate; fetches nothing):
# PEERS_SRC holds checkouts named torchdiffeq, torchsde, torchcde (see compat_suites/README.md)
compat-suites: $(STAMP)
	@test -n "$(PEERS_SRC)" || (echo "usage: make compat-suites PEERS_SRC=/path/to/checkouts"; exit 2)
	-$(BIN)/python compat_suites/run.py --peer torchdiffeq --src $(PEERS_SRC)/torchdiffeq
	-$(BIN)/python compat_suites/run.py --peer torchsde --src $(PEERS_SRC)/torchsde
	-$(BIN)/python compat_suites/run.py --peer torchcde --src $(PEERS_SRC)/torchcde

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site
