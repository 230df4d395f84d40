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

test: deps
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: deps
	$(VENV)/bin/hive demo --state-dir $(DEMO_STATE) --run-dir $(DEMO_RUN)

lint: deps
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

bench: deps
	@for b in bench/bench_*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
