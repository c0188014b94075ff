# goose-mlflow. The contract: `make up` starts the stack, `make test` passes.
SHELL := /bin/bash
PYTHON ?= python3
COMPOSE ?= docker compose
VENV := .venv
STAMP := $(VENV)/.installed-requirements

.PHONY: help up down logs verify test lock-image offline-images clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

up: ## Start the stack, wait until healthy, print the bootstrap's summary
	@# Compose 2.26's --wait counts a finished one-shot job as a failure, so the
	@# servers are waited for first and the bootstrap job is waited for by name.
	$(COMPOSE) up --detach --build --wait mlflow
	@$(COMPOSE) up --detach --no-deps --force-recreate bootstrap 2>/dev/null; \
	$(COMPOSE) wait bootstrap >/dev/null 2>&1; status=$$?; \
	container=$$($(COMPOSE) ps --all --quiet bootstrap); \
	if [ $$status -eq 0 ]; then docker logs $$container 2>/dev/null; \
	else docker logs $$container >&2; echo "make up: the bootstrap failed (exit $$status); see above" >&2; fi; \
	exit $$status

down: ## Stop the stack; data and credentials stay (down -v deletes them)
	$(COMPOSE) down

logs: ## Follow the stack's logs
	$(COMPOSE) logs --follow

verify: ## Send one goose-shaped session through .env and read it back
	$(PYTHON) scripts/verify.py

test: $(STAMP) ## Create .venv and run every test (Docker ones when an engine answers)
	$(VENV)/bin/python -m pytest

lock-image: ## Rebuild the MLflow image without the lock, then rewrite mlflow/constraints.txt from it
	: > mlflow/constraints.txt
	$(COMPOSE) build mlflow
	{ echo "# Every package in the MLflow image, pinned: the lock for mlflow/requirements.txt."; \
	  echo "# Regenerate after changing requirements.txt (make lock-image), and review the diff."; \
	  docker run --rm --entrypoint /opt/venv/bin/pip goose-mlflow/mlflow:3.17.2 freeze; } > mlflow/constraints.txt.new
	mv mlflow/constraints.txt.new mlflow/constraints.txt

offline-images: ## Build local stand-ins for the base images (no registry needed)
	bash tests/offline-images/build.sh

$(STAMP): requirements-dev.txt constraints-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --requirement requirements-dev.txt --constraint constraints-dev.txt
	touch $@

clean: ## Remove .venv and caches (not the stack's volumes)
	rm -rf $(VENV) .pytest_cache
