# The README's two commands are `make run` and `make test`; both set everything up first.
DURATION ?= 90
PYTEST_ARGS ?=

.PHONY: setup run test lint lock stack-up stack-down

setup:
	@bash deploy/local/setup.sh

## Bring the local stack up, stream the simulator through Kafka and show prices live.
run: setup
	.venv/bin/pricewave quickstart --duration $(DURATION)

## The whole test suite (unit, integration and slow) against the real local stack: the tests on the
## shared stack one at a time, the unit and private-stack tests beside them (deploy/local/test.sh).
test: setup
	@bash deploy/local/test-tools.sh
	.venv/bin/pricewave stack up
	bash deploy/local/test.sh $(PYTEST_ARGS)

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy pricewave jobs udfs bench

## Re-resolve requirements.lock and requirements-dev.lock from pyproject.toml (then test the result).
lock:
	@bash deploy/local/setup.sh lock

stack-up: setup
	.venv/bin/pricewave stack up

stack-down:
	.venv/bin/pricewave stack down
