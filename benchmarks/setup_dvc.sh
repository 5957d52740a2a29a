#!/usr/bin/env bash
# Install DVC 3.x (the data peer) with S3 support in its own virtualenv: benchmarks/.venvs/dvc
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="$HERE/.venvs/dvc"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q -U pip
"$VENV/bin/pip" install -q 'dvc[s3]>=3,<4'
"$VENV/bin/dvc" --version
