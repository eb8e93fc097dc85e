#!/bin/sh
# Run once by the postgres image, on the first start of an empty data volume: the product's
# login role `moltbot` (no superuser, no CREATEDB or CREATEROLE, no replication, no BYPASSRLS)
# owning database `moltbot`, and the confined role `moltbot_gateway` the gateway and the agent
# switch to for row-level security — what `moltbot up` provisions (docs/operations.md, "PostgreSQL").
# MOLTBOT_DB_PASSWORD comes from infra/compose/secrets/postgres.env; MOLTBOT_DATABASE_URL in
# infra/compose/moltbot.env must carry the same password.
set -eu
: "${MOLTBOT_DB_PASSWORD:?set MOLTBOT_DB_PASSWORD in infra/compose/secrets/postgres.env}"
psql --no-psqlrc --set ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set password="$MOLTBOT_DB_PASSWORD" <<'SQL'
CREATE ROLE moltbot LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'password';
CREATE ROLE moltbot_gateway NOLOGIN;
GRANT moltbot_gateway TO moltbot;
CREATE DATABASE moltbot OWNER moltbot;
SQL
