#!/bin/sh
# Entry point of the MLflow image (server and the stack's one-shot jobs).
# MLflow, libpq and boto3 cannot read secrets from files, so this turns the
# *_FILE variables into the variables they read, derives the Host allow-list
# and CORS origin from MLFLOW_PUBLIC_URL and the job runner from EVALUATION,
# and execs the command.
set -eu

OPTIONAL_SETTINGS="MLFLOW_S3_ENDPOINT_URL MLFLOW_AUTH_DATABASE_URI"
SECRET_VARIABLES="PGPASSWORD MLFLOW_DB_PASSWORD AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
	MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY MLFLOW_TRACKING_PASSWORD
	MLFLOW_CRYPTO_KEK_PASSPHRASE"

error() {
	echo "docker-entrypoint: error: $*" >&2
	exit 1
}

# file_env VAR: export VAR from the file named by VAR_FILE, as the official
# postgres image does; setting both is an error.
file_env() {
	var=$1
	eval "file=\${${var}_FILE:-}"
	eval "value=\${${var}:-}"
	if [ -n "$file" ] && [ -n "$value" ]; then
		error "both $var and ${var}_FILE are set; keep one"
	fi
	if [ -n "$file" ]; then
		[ -r "$file" ] || error "${var}_FILE points at $file, which is not readable"
		value=$(cat "$file")
		[ -n "$value" ] || error "$file (${var}_FILE) is empty"
		export "$var=$value"
	fi
	unset "${var}_FILE"
}

load_secrets() {
	for var in $SECRET_VARIABLES; do
		file_env "$var"
	done
}

# The authority (host[:port]) of MLFLOW_PUBLIC_URL, without scheme or path.
public_authority() {
	authority=${MLFLOW_PUBLIC_URL#*://}
	echo "${authority%%/*}"
}

# A host bare and with any port; MLflow matches with fnmatch, so the "[" of
# an IPv6 address is escaped in the wildcard form.
host_patterns() {
	case $1 in
		\[*) echo "$1,[[]${1#[}:*" ;;
		*) echo "$1,$1:*" ;;
	esac
}

# --allowed-hosts REPLACES MLflow's defaults (loopback and private ranges), so
# the list names loopback, the compose service name (other containers send
# Host: mlflow:5000) and the public host, each bare and with any port.
derive_allowed_hosts() {
	[ -z "${MLFLOW_SERVER_ALLOWED_HOSTS:-}" ] || return 0
	hosts=""
	for host in localhost 127.0.0.1 "[::1]" "${MLFLOW_SERVICE_NAME:-mlflow}"; do
		hosts="$hosts${hosts:+,}$(host_patterns "$host")"
	done
	if [ -n "${MLFLOW_PUBLIC_URL:-}" ]; then
		authority=$(public_authority)
		case $authority in
			\[*) host="${authority%%]*}]" ;;
			*) host=${authority%%:*} ;;
		esac
		case ",$hosts," in
			*",$host,"*) ;;
			*) hosts="$hosts,$(host_patterns "$host")" ;;
		esac
	fi
	export MLFLOW_SERVER_ALLOWED_HOSTS="$hosts"
	echo "docker-entrypoint: allowed Host headers: $hosts" >&2
}

# Loopback origins are always allowed by MLflow; the public origin is added.
derive_cors_origins() {
	[ -z "${MLFLOW_SERVER_CORS_ALLOWED_ORIGINS:-}" ] || return 0
	[ -n "${MLFLOW_PUBLIC_URL:-}" ] || return 0
	export MLFLOW_SERVER_CORS_ALLOWED_ORIGINS="${MLFLOW_PUBLIC_URL%%://*}://$(public_authority)"
}

# Team mode (--app-name basic-auth): MLflow reads its auth settings from an
# ini file; it is written from the environment so that the auth database can
# be the bundled PostgreSQL or a managed one. It holds no secret: the database
# password comes from PGPASSWORD, the admin's from MLFLOW_AUTH_ADMIN_PASSWORD.
write_auth_config() {
	[ -n "${MLFLOW_AUTH_DATABASE_URI:-}" ] || return 0
	config=$(mktemp -t mlflow-basic-auth.XXXXXX)
	cat > "$config" <<-INI
		[mlflow]
		default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-NO_PERMISSIONS}
		database_uri = $MLFLOW_AUTH_DATABASE_URI
		admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
	INI
	export MLFLOW_AUTH_CONFIG_PATH="$config"
}

# EVALUATION=on (docs/evaluation.md) runs MLflow's job runner, which online
# judges need: its executor engine (one runner process beside the periodic
# scheduler, where the default engine starts one consumer per job type), one
# worker per job type. Off, the server runs no background process.
configure_evaluation() {
	case ${EVALUATION:-off} in
		off) export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false ;;
		on)
			export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true
			export MLFLOW_SERVER_JOB_EXECUTION_ENGINE=executor
			export MLFLOW_SERVER_ONLINE_SCORING_MAX_WORKERS="${MLFLOW_SERVER_ONLINE_SCORING_MAX_WORKERS:-1}"
			export MLFLOW_SERVER_JUDGE_INVOKE_MAX_WORKERS="${MLFLOW_SERVER_JUDGE_INVOKE_MAX_WORKERS:-1}"
			# Judges call their gateway model through the server itself; MLflow
			# would use --host (0.0.0.0), a Host the allow-list refuses.
			export MLFLOW_GATEWAY_URI="${MLFLOW_GATEWAY_URI:-http://127.0.0.1:5000}"
			;;
		*) error "EVALUATION=$EVALUATION: use on or off (docs/evaluation.md)" ;;
	esac
}

# With accounts on, MLflow 3.17.2's online scoring job calls a judge's gateway
# model with the server's own client credentials (it passes no user, and
# unauthenticated calls get 401), so give it the admin's, which this container
# holds anyway to create the admin account.
give_judges_an_account() {
	[ "${EVALUATION:-off}" = on ] && [ -n "${MLFLOW_AUTH_CONFIG_PATH:-}" ] || return 0
	export MLFLOW_TRACKING_USERNAME="${MLFLOW_AUTH_ADMIN_USERNAME:-admin}"
	export MLFLOW_TRACKING_PASSWORD="${MLFLOW_AUTH_ADMIN_PASSWORD:?team mode with EVALUATION=on needs the admin password}"
}

# The server: compose.yaml's (scripts/serve.py, MLflow's `mlflow server` behind
# the stack's ingest layer), or MLflow's own.
is_server() {
	{ [ "${1:-}" = python3 ] && case "${2:-}" in */scripts/serve.py) true ;; *) false ;; esac; } ||
		{ [ "${1:-}" = mlflow ] && [ "${2:-}" = server ]; }
}

# An empty setting means "not set": MLFLOW_S3_ENDPOINT_URL="" would point
# boto3 at no endpoint instead of AWS's own.
drop_empty_settings() {
	for var in $OPTIONAL_SETTINGS; do
		eval "value=\${${var}:-}"
		[ -n "$value" ] || unset "$var"
	done
}

# Team mode sets MLFLOW_REQUIRE_AUTH: a server without accounts must not come
# up behind the public proxy because one setting was left empty.
check_auth_required() {
	[ "${MLFLOW_REQUIRE_AUTH:-false}" = true ] || return 0
	[ -n "${MLFLOW_AUTH_CONFIG_PATH:-}" ] && return 0
	error "team mode needs accounts, but MLFLOW_AUTH_DATABASE_URI is empty; set it (EXTERNAL_AUTH_DATABASE_URI with external services)"
}

main() {
	drop_empty_settings
	load_secrets
	if is_server "$@"; then
		derive_allowed_hosts
		derive_cors_origins
		configure_evaluation
		write_auth_config
		check_auth_required
		give_judges_an_account
		# One setting switches accounts on: an auth database means basic-auth.
		if [ -n "${MLFLOW_AUTH_CONFIG_PATH:-}" ]; then
			set -- "$@" --app-name=basic-auth
		fi
	fi
	exec "$@"
}

main "$@"
