# The two commands: `make up` runs the whole system, `make test` runs every test.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: up down test token bench logs clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

up: $(STAMP)
	$(PY) -m deploy.local up

down: $(STAMP)
	$(PY) -m deploy.local down

test: $(STAMP)
	$(PY) -m pytest

token: $(STAMP)
	@$(PY) -m shared.auth --role $(or $(ROLE),office) --sub $(or $(SUB),office-1) \
		$(if $(DEPT),--dept $(DEPT)) $(if $(GRID),--grid $(GRID))

bench: $(STAMP)
	$(PY) -m bench.intake_throughput

logs:
	tail -n 50 -f .run/*.log

clean: down
	rm -rf $(VENV) .run
