#!/usr/bin/env bash
# Install Metaflow (the pipelines peer) in its own virtualenv: benchmarks/.venvs/metaflow
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="$HERE/.venvs/metaflow"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q -U pip
"$VENV/bin/pip" install -q "metaflow"
"$VENV/bin/python" -c "import metaflow; print('metaflow', metaflow.__version__)"
