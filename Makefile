# goose-mlflow. The contract: `make up` starts the stack, `make test` passes.
SHELL := /bin/bash
PYTHON ?= python3
COMPOSE ?= docker compose
VENV := .venv
STAMP := $(VENV)/.installed-requirements

.PHONY: help up down logs verify test offline-images clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

up: ## Start the stack, wait until healthy, print the bootstrap's summary
	$(COMPOSE) up --detach --build --wait
	@# --wait returns while the bootstrap job may still run; its exit status decides.
	@$(COMPOSE) wait bootstrap >/dev/null 2>&1; status=$$?; \
	$(COMPOSE) logs --no-log-prefix bootstrap | grep -v '^bootstrap: '; \
	if [ $$status -ne 0 ]; then echo "make up: the bootstrap failed (exit $$status); see above" >&2; fi; \
	exit $$status

down: ## Stop the stack; data and credentials stay (down -v deletes them)
	$(COMPOSE) down

logs: ## Follow the stack's logs
	$(COMPOSE) logs --follow

verify: ## Send one goose-shaped session through .env and read it back
	$(PYTHON) scripts/verify.py

test: $(STAMP) ## Create .venv and run every test (Docker ones when an engine answers)
	$(VENV)/bin/python -m pytest

offline-images: ## Build local stand-ins for the base images (no registry needed)
	bash tests/offline-images/build.sh

$(STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --requirement requirements-dev.txt
	touch $@

clean: ## Remove .venv and caches (not the stack's volumes)
	rm -rf $(VENV) .pytest_cache
