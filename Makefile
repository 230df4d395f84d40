# The scripts to rule them all: each target sets up what it needs on a fresh Debian machine.
VENV := .venv
STAMP := $(VENV)/.bootstrapped
DEMO_STATE ?= .demo/state
DEMO_RUN ?= /tmp/hyperhive-demo-$(shell id -u)
PYTEST_ARGS ?=

.PHONY: test demo lint bench deps clean

$(STAMP): pyproject.toml scripts/bootstrap
	scripts/bootstrap
	touch $(STAMP)

deps: $(STAMP)

# the suite twice: on the embedded SQLite store, then on PostgreSQL (scripts/test-both)
test: deps
	PYTEST=$(VENV)/bin/pytest scripts/test-both $(PYTEST_ARGS)

demo: deps
	$(VENV)/bin/hive demo --state-dir $(DEMO_STATE) --run-dir $(DEMO_RUN)

# ruff, mypy strict on src/, and mypy on tests/ (strict, except that a test may be unannotated)
lint: deps
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy tests --allow-untyped-defs --allow-incomplete-defs --allow-untyped-calls --no-warn-return-any

bench: deps
	@for b in bench/bench_*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
