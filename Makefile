# The two commands: `make up` runs the whole system, `make test` runs every test.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: up down reset test token bench logs clean

# The embedded database (deploy/embedded-db.txt) is installed beside the project, not as one of its
# dependencies: the services never import it, and production images never contain it.
$(STAMP): pyproject.toml deploy/embedded-db.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]' -r deploy/embedded-db.txt
	touch $(STAMP)

up: $(STAMP)
	$(PY) -m deploy.local up

down: $(STAMP)
	$(PY) -m deploy.local down

reset: $(STAMP)
	$(PY) -m deploy.local reset

# The test files run on TEST_WORKERS workers (pytest-xdist), each with a broker vhost and a database of its own;
# a file's tests stay together on one worker, in order, and the e2e files (the longest) start first
# (tests/conftest.py, pytest_xdist_make_scheduler). The slowest tests are listed at the end, for CI's log.
# Four workers on two cores: much of a test's time is spent waiting for an answer, and the fourth fills it.
TEST_WORKERS ?= 4

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --no-loadscope-reorder --durations=15

token: $(STAMP)
	@$(PY) -m shared.auth --role $(or $(ROLE),office) --sub $(or $(SUB),office-1) \
		$(if $(DEPT),--dept $(DEPT)) $(if $(GRID),--grid $(GRID))

bench: $(STAMP)
	$(PY) -m bench.intake_throughput

logs:
	tail -n 50 -f .run/*.log

clean: down
	rm -rf $(VENV) .run
