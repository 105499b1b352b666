# KazPost — the two commands a newcomer needs:
#   make run    install what is missing, start Kafka + database + the four services with demo content
#   make test   the same infrastructure (its own ports and data), then the whole test suite
# More: make stop | status | unit | eval | bench | clean

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test unit stop status venv eval bench bench-quick clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	@$(VPY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(VPY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

run: venv
	@PYTHON=$(abspath $(VPY)) bash deploy/local/run.sh $(if $(DEMO),--demo $(DEMO))

test: venv
	@PYTHON=$(abspath $(VPY)) bash deploy/local/test.sh $(ARGS)

unit: venv
	@$(VPY) -m pytest tests/unit -q

# Every local stack, at the state dir the script that starts it uses (the same variables and
# defaults): dev (run.sh), test (test.sh, badinput), bench (bench.sh), fault suite (chaos.sh).
# A state dir that does not exist has nothing running and is not created.
stop:
	@rc=0; for state in "$${KAZPOST_STATE:-$(CURDIR)/.run/dev}" "$${KAZPOST_TEST_STATE:-$(CURDIR)/.run/test}" \
	    "$${KAZPOST_BENCH_STATE:-$(CURDIR)/.run/bench}" "$${KAZPOST_CHAOS_STATE:-$(CURDIR)/.run/chaos}"; do \
	  if [ -d "$$state" ]; then KAZPOST_STATE="$$state" bash deploy/local/stack.sh stop || rc=1; fi; \
	done; exit $$rc

status:
	@bash deploy/local/stack.sh status

eval: venv
	@$(VPY) -m services.linking.evaluate $(ARGS)

# The whole bad-input corpora against the real ingestion and gateway (on the test stack); prints
# the tables. ARGS="--sample" runs the CI sample.
.PHONY: badinput
badinput: venv
	@PYTHON=$(abspath $(VPY)) bash tests/badinput/run.sh $(ARGS)

bench: venv
	@PYTHON=$(abspath $(VPY)) bash deploy/local/bench.sh $(ARGS)

bench-quick: venv
	@PYTHON=$(abspath $(VPY)) bash deploy/local/bench.sh --quick $(ARGS)

clean: stop
	rm -rf .run

# The fault suite (deploy/local/chaos.sh): its own stack; ARGS go to `python -m tests.chaos`.
.PHONY: chaos
chaos: venv
	@PYTHON=$(abspath $(VPY)) bash deploy/local/chaos.sh $(ARGS)
