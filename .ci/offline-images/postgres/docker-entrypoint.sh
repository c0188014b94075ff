#!/usr/bin/env bash
# Entrypoint of the postgres:17-trixie stand-in. It keeps the interface of the
# official image's docker-entrypoint.sh (docker-library/postgres):
#   POSTGRES_PASSWORD / POSTGRES_PASSWORD_FILE (one of them, required on first start
#   unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_USER (postgres),
#   POSTGRES_DB (= user), POSTGRES_INITDB_ARGS, POSTGRES_INITDB_WALDIR,
#   POSTGRES_HOST_AUTH_METHOD, PGDATA; /docker-entrypoint-initdb.d/* on an empty
#   data directory only; "postgres -c name=value ..." as the command.
# One difference, on purpose: initdb gets --auth-host=scram-sha-256, so TCP
# connections from inside the container (127.0.0.1, ::1) need the password too
# (upstream leaves those "trust"). The unix socket stays "trust".
set -Eeo pipefail

# usage: file_env VAR [DEFAULT]
# VAR_FILE names a file whose content becomes VAR; VAR and VAR_FILE are exclusive.
file_env() {
	local var="$1"
	local fileVar="${var}_FILE"
	local def="${2:-}"
	if [ "${!var:-}" ] && [ "${!fileVar:-}" ]; then
		printf >&2 'error: both %s and %s are set (but are exclusive)\n' "$var" "$fileVar"
		exit 1
	fi
	local val="$def"
	if [ "${!var:-}" ]; then
		val="${!var}"
	elif [ "${!fileVar:-}" ]; then
		if [ ! -r "${!fileVar}" ]; then
			printf >&2 'error: %s=%s: file not readable\n' "$fileVar" "${!fileVar}"
			exit 1
		fi
		val="$(< "${!fileVar}")"
	fi
	export "$var"="$val"
	unset "$fileVar"
}

# true when this file is sourced (so its functions can be reused), not run
_is_sourced() {
	[ "${#FUNCNAME[@]}" -ge 2 ] \
		&& [ "${FUNCNAME[0]}" = '_is_sourced' ] \
		&& [ "${FUNCNAME[1]}" = 'source' ]
}

# create PGDATA and the socket directory; as root, hand them to postgres
docker_create_db_directories() {
	local user
	user="$(id -u)"

	mkdir -p "$PGDATA"
	# postgres is picky about this mode; failure here shows up later anyway
	chmod 00700 "$PGDATA" || :

	mkdir -p /var/run/postgresql || :
	chmod 03775 /var/run/postgresql || :

	if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
		mkdir -p "$POSTGRES_INITDB_WALDIR"
		if [ "$user" = '0' ]; then
			find "$POSTGRES_INITDB_WALDIR" \! -user postgres -exec chown postgres '{}' +
		fi
		chmod 700 "$POSTGRES_INITDB_WALDIR"
	fi

	if [ "$user" = '0' ]; then
		find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
		find /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
	fi
}

# initdb into the empty PGDATA; the superuser is POSTGRES_USER with POSTGRES_PASSWORD
docker_init_database_dir() {
	# initdb wants the current uid in /etc/passwd: fake it with nss_wrapper if needed
	local uid
	uid="$(id -u)"
	if ! getent passwd "$uid" &> /dev/null; then
		local wrapper
		for wrapper in {/usr,}/lib{/*,}/libnss_wrapper.so; do
			if [ -s "$wrapper" ]; then
				NSS_WRAPPER_PASSWD="$(mktemp)"
				NSS_WRAPPER_GROUP="$(mktemp)"
				export LD_PRELOAD="$wrapper" NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
				local gid
				gid="$(id -g)"
				printf 'postgres:x:%s:%s:PostgreSQL:%s:/bin/false\n' "$uid" "$gid" "$PGDATA" > "$NSS_WRAPPER_PASSWD"
				printf 'postgres:x:%s:\n' "$gid" > "$NSS_WRAPPER_GROUP"
				break
			fi
		done
	fi

	if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
		set -- --waldir "$POSTGRES_INITDB_WALDIR" "$@"
	fi

	# socket: trust; TCP: scram-sha-256 (or POSTGRES_HOST_AUTH_METHOD);
	# POSTGRES_INITDB_ARGS come last so they can override both.
	# --pwfile refuses an empty file, hence the "\n".
	set -- --auth-local=trust --auth-host="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" "$@"
	eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") "$@" '"$POSTGRES_INITDB_ARGS"

	if [[ "${LD_PRELOAD:-}" == */libnss_wrapper.so ]]; then
		rm -f "$NSS_WRAPPER_PASSWD" "$NSS_WRAPPER_GROUP"
		unset LD_PRELOAD NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
	fi
}

# refuse to initialise without a password (unless host auth is "trust")
docker_verify_minimum_env() {
	if [ -z "$POSTGRES_PASSWORD" ] && [ 'trust' != "$POSTGRES_HOST_AUTH_METHOD" ]; then
		cat >&2 <<-'EOE'
			Error: Database is uninitialized and superuser password is not specified.
			       You must specify POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) to a
			       non-empty value for the superuser. For example,
			       "-e POSTGRES_PASSWORD=password" on "docker run".

			       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
			       connections without a password. This is *not* recommended.
		EOE
		exit 1
	fi
	if [ 'trust' = "$POSTGRES_HOST_AUTH_METHOD" ]; then
		cat >&2 <<-'EOWARN'
			********************************************************************************
			WARNING: POSTGRES_HOST_AUTH_METHOD has been set to "trust". This will allow
			         anyone with access to the Postgres port to access your database without
			         a password, even if POSTGRES_PASSWORD is set.
			********************************************************************************
		EOWARN
	fi
}

# run the init files in the order given (the glob's sorted order):
# *.sh executable: run; *.sh otherwise: sourced; *.sql(.gz|.xz|.zst): psql
docker_process_init_files() {
	# "${psql[@]}" for init scripts written for the official image
	# shellcheck disable=SC2034
	psql=(docker_process_sql)

	printf '\n'
	local f
	for f; do
		case "$f" in
			*.sh)
				if [ -x "$f" ]; then
					printf '%s: running %s\n' "$0" "$f"
					"$f"
				else
					printf '%s: sourcing %s\n' "$0" "$f"
					# shellcheck disable=SC1090
					. "$f"
				fi
				;;
			*.sql)     printf '%s: running %s\n' "$0" "$f"; docker_process_sql -f "$f"; printf '\n' ;;
			*.sql.gz)  printf '%s: running %s\n' "$0" "$f"; gunzip -c "$f" | docker_process_sql; printf '\n' ;;
			*.sql.xz)  printf '%s: running %s\n' "$0" "$f"; xzcat "$f" | docker_process_sql; printf '\n' ;;
			*.sql.zst) printf '%s: running %s\n' "$0" "$f"; zstd -dc "$f" | docker_process_sql; printf '\n' ;;
			*)         printf '%s: ignoring %s\n' "$0" "$f" ;;
		esac
		printf '\n'
	done
}

# psql against the temporary server, over the unix socket
# usage: docker_process_sql [psql args]   e.g. docker_process_sql -f file.sql
docker_process_sql() {
	local query_runner=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
	if [ -n "$POSTGRES_DB" ]; then
		query_runner+=(--dbname "$POSTGRES_DB")
	fi

	PGHOST='' PGHOSTADDR='' "${query_runner[@]}" "$@"
}

# create POSTGRES_DB unless it exists (initdb made "postgres" already)
docker_setup_db() {
	# POSTGRES_DB='' keeps docker_process_sql from adding --dbname; the --set
	# expansion still sees the real name
	local dbAlreadyExists
	dbAlreadyExists="$(
		# shellcheck disable=SC2097,SC2098
		POSTGRES_DB='' docker_process_sql --dbname postgres --set db="$POSTGRES_DB" --tuples-only <<-'EOSQL'
			SELECT 1 FROM pg_database WHERE datname = :'db' ;
		EOSQL
	)"
	if [ -z "$dbAlreadyExists" ]; then
		# shellcheck disable=SC2097,SC2098
		POSTGRES_DB='' docker_process_sql --dbname postgres --set db="$POSTGRES_DB" <<-'EOSQL'
			CREATE DATABASE :"db" ;
		EOSQL
		printf '\n'
	fi
}

# read the POSTGRES_* settings; call before any other docker_* function
docker_setup_env() {
	file_env 'POSTGRES_PASSWORD'

	file_env 'POSTGRES_USER' 'postgres'
	file_env 'POSTGRES_DB' "$POSTGRES_USER"
	file_env 'POSTGRES_INITDB_ARGS'
	: "${POSTGRES_HOST_AUTH_METHOD:=}"

	declare -g DATABASE_ALREADY_EXISTS
	: "${DATABASE_ALREADY_EXISTS:=}"
	# PG_VERSION marks an initialised data directory
	if [ -s "$PGDATA/PG_VERSION" ]; then
		DATABASE_ALREADY_EXISTS='true'
	fi
}

# append the catch-all "host" line to pg_hba.conf
# arguments: the server command line (to read password_encryption from it)
pg_setup_hba_conf() {
	if [ "$1" = 'postgres' ]; then
		shift
	fi
	local auth
	auth="$(postgres -C password_encryption "$@")"
	: "${POSTGRES_HOST_AUTH_METHOD:=$auth}"
	{
		printf '\n'
		if [ 'trust' = "$POSTGRES_HOST_AUTH_METHOD" ]; then
			printf '# warning trust is enabled for all connections\n'
		fi
		printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD"
	} >> "$PGDATA/pg_hba.conf"
}

# start a server on the unix socket only, for the init steps
# arguments: the server command line (its -c settings apply here too)
docker_temp_server_start() {
	if [ "$1" = 'postgres' ]; then
		shift
	fi

	set -- "$@" -c listen_addresses='' -p "${PGPORT:-5432}"

	NOTIFY_SOCKET='' \
	PGUSER="${PGUSER:-$POSTGRES_USER}" \
		pg_ctl -D "$PGDATA" \
			-o "$(printf '%q ' "$@")" \
			-w start
}

docker_temp_server_stop() {
	PGUSER="${PGUSER:-postgres}" \
		pg_ctl -D "$PGDATA" -m fast -w stop
}

# true when the arguments ask postgres for help or its version (nothing to set up)
_pg_want_help() {
	local arg
	for arg; do
		case "$arg" in
			-'?' | --help | --describe-config | -V | --version)
				return 0
				;;
		esac
	done
	return 1
}

_main() {
	# "-c x=y ..." alone means "postgres -c x=y ..."
	if [ "${1:0:1}" = '-' ]; then
		set -- postgres "$@"
	fi

	if [ "$1" = 'postgres' ] && ! _pg_want_help "$@"; then
		docker_setup_env
		docker_create_db_directories
		if [ "$(id -u)" = '0' ]; then
			# once more, as the postgres user
			exec gosu postgres "${BASH_SOURCE[0]}" "$@"
		fi

		if [ -z "$DATABASE_ALREADY_EXISTS" ]; then
			docker_verify_minimum_env

			# fail early (before initdb) if the init directory is unreadable
			ls /docker-entrypoint-initdb.d/ > /dev/null

			docker_init_database_dir
			pg_setup_hba_conf "$@"

			# for psql in init scripts; harmless with "trust" on the socket
			export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
			docker_temp_server_start "$@"

			docker_setup_db
			docker_process_init_files /docker-entrypoint-initdb.d/*

			docker_temp_server_stop
			unset PGPASSWORD

			cat <<-'EOM'

				PostgreSQL init process complete; ready for start up.

			EOM
		else
			cat <<-'EOM'

				PostgreSQL Database directory appears to contain a database; Skipping initialization

			EOM
		fi
	fi

	exec "$@"
}

if ! _is_sourced; then
	_main "$@"
fi
