#!/usr/bin/env bash
# Quickstart: install what the embedded model needs and start memchat on it (no key, no network).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh local,web,embed
exec .venv/bin/memchat "${@:-web}"
