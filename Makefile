# goose-mlflow. The contract: `make up` starts the stack, `make test` passes.
SHELL := /bin/bash
PYTHON ?= python3
COMPOSE ?= docker compose
# The stack's settings as Compose reads them, shell over .env (stdlib; no venv needed).
SETTINGS = PYTHONPATH=scripts $(PYTHON) scripts/host/compose_settings.py
# Team mode: the files of COMPOSE_FILE (compose.yaml when unset) with
# compose.team.yaml after compose.yaml, so compose.external.yaml in
# COMPOSE_FILE is honoured by every team target.
TEAM_COMPOSE = $(COMPOSE) $(addprefix -f ,$(subst :, ,$(or $(shell $(SETTINGS) compose-files --team),$(error the line above says what to fix))))
# The stack as it runs (backup, restore, judge, ... act on it): the compose
# files its containers were started with, team mode's too; COMPOSE's when nothing runs.
STACK_COMPOSE = $(COMPOSE) $(shell $(SETTINGS) running-files)
# make up, make team-up and make restore (scripts/host/up.py).
UP = PYTHONPATH=scripts:scripts/host $(PYTHON) scripts/host/up.py --compose "$(COMPOSE)"
BOOTSTRAP := python3 /opt/stack/scripts/bootstrap.py --tracking-uri http://mlflow:5000 --users-dir /project/users
VENV := .venv
STAMP := $(VENV)/.installed-requirements
# The host commands (scripts/host/) need only the Docker SDK: a small venv of their own.
HOST_VENV := .venv-host
HOST_STAMP := $(HOST_VENV)/.installed-requirements
PYTEST = $(VENV)/bin/python -m pytest
# The tools that measure the stack import its commands and the development harness (harness/).
TOOLS := PYTHONPATH=scripts:scripts/host:.:bench $(VENV)/bin/python
# The locks are resolved with the overrides and installed as they are, with
# --no-deps: a lock is the whole closure, and pip could not resolve it itself.
# uv resolves them (from .venv unless UV names another).
UV ?= $(VENV)/bin/uv
LOCK = $(UV) pip compile --native-tls --quiet --override mlflow/overrides.txt \
	--custom-compile-command "make lock-image"
# The image's Python version, from its base image (mlflow/Dockerfile).
IMAGE_PYTHON = $(shell sed -n 's/^ARG PYTHON_IMAGE=python:\([0-9.]*\)-.*/\1/p' mlflow/Dockerfile)

.PHONY: help up down logs team-up team-down user remove-user gateway-endpoint judge remove-judge team-ca prune backup restore usage status doctor verify test test-fast test-native test-docker mutation bench profile lock-image bump-mlflow offline-images clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

up: ## Start the stack, wait until healthy, print the bootstrap's summary
	@$(UP)

down: ## Stop the stack; data and credentials stay (down -v deletes them)
	$(COMPOSE) down

logs: ## Follow the stack's logs
	$(COMPOSE) logs --follow

team-up: ## Team mode: TLS proxy, accounts (needs MLFLOW_PUBLIC_URL; see docs/team.md)
	@$(UP) --team

team-down: ## Stop team mode; data, accounts and certificates stay
	$(TEAM_COMPOSE) down

user: ## Team mode: create or keep an account, write users/NAME.env (NAME=alice [ROTATE=1] [CA_FILE=path] [PROMPTS=off])
	@test -n "$(NAME)" || { echo "make user: say whose account: make user NAME=alice" >&2; exit 2; }
	@$(TEAM_COMPOSE) run --rm --no-deps bootstrap $(BOOTSTRAP) --user "$(NAME)" \
		$(if $(ROTATE),--rotate) $(if $(CA_FILE),--ca-file "$(CA_FILE)") $(if $(PROMPTS),--prompts "$(PROMPTS)")

remove-user: ## Team mode: delete an account and users/NAME.env (NAME=alice)
	@test -n "$(NAME)" || { echo "make remove-user: say whose account: make remove-user NAME=alice" >&2; exit 2; }
	@$(TEAM_COMPOSE) run --rm --no-deps bootstrap $(BOOTSTRAP) --remove-user "$(NAME)"

gateway-endpoint: ## Give judges a model: a provider key (from stdin) behind gateway:/NAME (NAME=judge MODEL=openai:/gpt-4o-mini [API_BASE=url])
	@test -n "$(NAME)" && test -n "$(MODEL)" || { echo "make gateway-endpoint: say which: make gateway-endpoint NAME=judge MODEL=openai:/gpt-4o-mini" >&2; exit 2; }
	@# In the running stack's mode (team: as the admin, inside the network); the key never is an argument.
	@$(STACK_COMPOSE) run --rm --no-deps bootstrap python3 /opt/stack/scripts/gateway.py \
		--tracking-uri http://mlflow:5000 --endpoint "$(NAME)" --model "$(MODEL)" $(if $(API_BASE),--api-base "$(API_BASE)")

judge: ## Score every new goose reply with an LLM judge, its instructions from stdin (NAME=did_what_was_asked [MODEL=gateway:/judge] [SAMPLE=1.0]; SAMPLE=0 stops it)
	@test -n "$(NAME)" || { echo "make judge: say which: make judge NAME=did_what_was_asked < instructions.txt" >&2; exit 2; }
	@# In the running stack's mode (team: as the admin, inside the network; the proxy refuses judge writes).
	@$(STACK_COMPOSE) run --rm --no-deps bootstrap python3 /opt/stack/scripts/judge.py \
		--tracking-uri http://mlflow:5000 --name "$(NAME)" $(if $(MODEL),--model "$(MODEL)") $(if $(SAMPLE),--sample "$(SAMPLE)")

remove-judge: ## Delete a judge, every version of it (NAME=did_what_was_asked)
	@test -n "$(NAME)" || { echo "make remove-judge: say which: make remove-judge NAME=did_what_was_asked" >&2; exit 2; }
	@$(STACK_COMPOSE) run --rm --no-deps bootstrap python3 /opt/stack/scripts/judge.py \
		--tracking-uri http://mlflow:5000 --name "$(NAME)" --remove

team-ca: ## Team mode, local CA: copy the CA certificate to users/ca.crt for teammates
	@mkdir -p -m 700 users
	$(TEAM_COMPOSE) cp proxy:/data/caddy/pki/authorities/local/root.crt users/ca.crt
	@echo "users/ca.crt: give it to each teammate; docs/team.md says how to trust it"

prune: ## Delete traces older than TRACE_RETENTION_DAYS now, in every experiment (the stack does it hourly)
	@# Through the entrypoint: in team mode it reads the admin's password file.
	@# With the limit .env sets now, which the running stack must have been started with.
	@configured=$$($(SETTINGS) setting TRACE_RETENTION_DAYS) && \
	$(COMPOSE) exec retention docker-entrypoint.sh python3 scripts/retention.py --configured "$$configured"

backup: ## Back up databases and artifacts into backups/goose-mlflow-<UTC time>.tar, while goose keeps sending
	@mkdir -p -m 700 backups
	@$(STACK_COMPOSE) run --rm --no-deps migrate python3 scripts/backup.py

restore: ## Restore a backup into this stack, which must hold no data (FILE=backups/....tar [FORCE=1] [PRUNE=1])
	@$(UP) --restore "$(FILE)" $(if $(FORCE),--force) $(if $(PRUNE),--prune)

usage: ## Sessions, replies, tokens and cost per person per day [SINCE=YYYY-MM-DD] [UNTIL=YYYY-MM-DD] [EXPERIMENT=name] [CSV=1]
	@$(STACK_COMPOSE) run --rm --no-deps migrate python3 scripts/usage.py $(if $(SINCE),--since "$(SINCE)") $(if $(UNTIL),--until "$(UNTIL)") $(if $(EXPERIMENT),--experiment "$(EXPERIMENT)") $(if $(CSV),--csv)

status: $(HOST_STAMP) ## Each service's health, disk use, schema, traces per experiment, the last backup's age
	@PYTHONPATH=scripts $(HOST_VENV)/bin/python scripts/host/status.py

doctor: $(HOST_STAMP) ## What is wrong with the stack and goose's settings, one line each with its fix [ENV_FILE=users/alice.env]
	@PYTHONPATH=scripts $(HOST_VENV)/bin/python scripts/host/doctor.py $(if $(ENV_FILE),--env-file "$(ENV_FILE)")

verify: ## Send one goose-shaped session through .env (or ENV_FILE=users/alice.env) and read it back
	$(PYTHON) scripts/verify.py $(if $(ENV_FILE),--env-file "$(ENV_FILE)")

test: $(STAMP) ## Create .venv and run every test (Docker ones when an engine answers)
	$(PYTEST)

test-fast: $(STAMP) ## The inner loop: the tests that start nothing (no PostgreSQL, MLflow, Caddy or Docker), on two workers
	$(PYTEST) --numprocesses 2 -m "not native and not docker"

test-native: $(STAMP) ## The tests that start PostgreSQL, MLflow, Caddy or goose on this machine
	$(PYTEST) -m native

test-docker: $(STAMP) ## The tests that run the real compose files under the Docker engine
	$(PYTEST) -m docker

mutation: $(STAMP) ## Mutation testing of scripts/ (slow, not in CI): the share of planted bugs the tests catch
	$(VENV)/bin/python tests/mutation/report.py $(MUTATION_ARGS)

bench: $(STAMP) ## Benchmark the stack against plain `mlflow server` (~25 min on 2 cores; writes docs/benchmarks.md)
	$(TOOLS) bench/bench.py $(BENCH_ARGS)

profile: $(STAMP) ## Profile the stack's OTLP ingest: CPU per process, py-spy, SQL per request (writes docs/profiles/)
	$(TOOLS) bench/profile_ingest.py $(PROFILE_ARGS)

lock-image: $(UV) ## Resolve the locks from the requirements: mlflow/constraints.txt (the image) and constraints-dev.txt
	@# uv, for its --override: the pinned MLflow requires a package the index does
	@# not offer (mlflow/overrides.txt says which and why). Review the diff.
	$(LOCK) mlflow/requirements.txt --output-file mlflow/constraints.txt \
		--python-version $(IMAGE_PYTHON) --python-platform x86_64-unknown-linux-gnu
	$(LOCK) requirements-dev.txt --output-file constraints-dev.txt

bump-mlflow: $(UV) ## Move the stack to another MLflow release: the pin, the image tag and both locks (VERSION=x.y.z)
	@test -n "$(VERSION)" || { echo "make bump-mlflow: say which release: make bump-mlflow VERSION=3.18.1" >&2; exit 2; }
	@PYTHONPATH=scripts $(PYTHON) scripts/host/bump_mlflow.py "$(VERSION)" --uv "$(UV)"

$(VENV)/bin/uv: $(STAMP)

offline-images: ## Build local stand-ins for the base images (no registry needed)
	bash .ci/offline-images/build.sh

$(STAMP): requirements-dev.txt requirements-host.txt constraints-dev.txt mlflow/requirements.txt
	$(PYTHON) -m venv --clear $(VENV)
	$(VENV)/bin/pip install --quiet --no-deps --requirement constraints-dev.txt
	touch $@

$(HOST_STAMP): requirements-host.txt constraints-dev.txt
	$(PYTHON) -m venv $(HOST_VENV)
	$(HOST_VENV)/bin/pip install --quiet --requirement requirements-host.txt --constraint constraints-dev.txt
	touch $@

clean: ## Remove .venv, .venv-host and caches (not the stack's volumes, not backups/)
	rm -rf $(VENV) $(HOST_VENV) .pytest_cache
