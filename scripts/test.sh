#!/usr/bin/env bash
# Install everything the tests need and run every test (real PostgreSQL, Chromium, model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh all,dev
# Debian's Chromium for the browser tests (never a browser downloaded by Playwright)
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null
  fi
fi
# A real PostgreSQL 15 server for the Postgres store tests
bash scripts/pg_setup.sh
export MEMCHAT_TEST_PG_DSN="${MEMCHAT_TEST_PG_DSN:-postgresql://memchat:memchat@127.0.0.1:5432/memchat_test}"
.venv/bin/ruff check src tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
