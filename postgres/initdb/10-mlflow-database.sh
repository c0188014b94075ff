#!/bin/sh
# Runs once, on an empty data directory (official postgres image convention):
# creates the role and database MLflow uses, so MLflow never holds the
# superuser password. The role's password comes from the secrets volume.
set -eu

create_mlflow_role_and_database() {
	# Through the environment, not argv: other processes can read argv.
	MLFLOW_DB_PASSWORD=$(cat "$MLFLOW_DB_PASSWORD_FILE") \
	psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
		--set=role="$MLFLOW_DB_USER" --set=db="$MLFLOW_DB_NAME" <<-'SQL'
		\getenv password MLFLOW_DB_PASSWORD
		CREATE ROLE :"role" LOGIN PASSWORD :'password';
		CREATE DATABASE :"db" OWNER :"role";
		REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
	SQL
	echo "10-mlflow-database: created role $MLFLOW_DB_USER and database $MLFLOW_DB_NAME"
}

create_mlflow_role_and_database
