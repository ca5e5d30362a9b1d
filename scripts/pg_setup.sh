#!/usr/bin/env bash
# Start the local PostgreSQL cluster (15 here) and create the memchat test role and database,
# installing Debian's postgresql first if it is missing. Idempotent: safe to run again.
# Used by scripts/test.sh (and so CI) before the Postgres tests.
# Env: MEMCHAT_PG_VERSION (newest installed), MEMCHAT_PG_USER and MEMCHAT_PG_PASSWORD (memchat),
#      MEMCHAT_PG_DB (memchat_test).
set -euo pipefail

role="${MEMCHAT_PG_USER:-memchat}"
password="${MEMCHAT_PG_PASSWORD:-memchat}"
db="${MEMCHAT_PG_DB:-memchat_test}"

as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else su postgres -c "$(printf '%q ' "$@")"; fi
}

if ! command -v pg_ctlcluster >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
        echo "pg_setup: PostgreSQL is not installed: run as root or apt-get install postgresql" >&2
        exit 1
    fi
    echo "pg_setup: installing PostgreSQL from Debian's packages" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
# The newest installed server unless MEMCHAT_PG_VERSION says otherwise (15 on our machines).
version="${MEMCHAT_PG_VERSION:-$(ls /usr/lib/postgresql | sort -n | tail -1)}"
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
    pg_createcluster "$version" main
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
    pg_ctlcluster "$version" main start
fi

for _ in $(seq 1 50); do
    as_postgres pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.2
done
as_postgres pg_isready -h 127.0.0.1 -p 5432

has_role=$(as_postgres psql -tAq -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'")
if [ "$has_role" != 1 ]; then
    as_postgres psql -q -c "CREATE ROLE \"$role\" LOGIN PASSWORD '$password' SUPERUSER"
fi
has_db=$(as_postgres psql -tAq -c "SELECT 1 FROM pg_database WHERE datname = '$db'")
if [ "$has_db" != 1 ]; then
    as_postgres createdb -O "$role" "$db"
fi
echo "pg_setup: postgresql://$role:$password@127.0.0.1:5432/$db is ready"
