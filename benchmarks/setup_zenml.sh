#!/usr/bin/env bash
# Install ZenML (the second pipelines peer) in its own virtualenv: benchmarks/.venvs/zenml
# ZenML needs a repository (`zenml init`) and a local stack; bench_pipelines.py does both in a temp dir,
# offline, with analytics off (ZENML_ANALYTICS_OPT_IN=false).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="$HERE/.venvs/zenml"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q -U pip
# "zenml[local]" pulls the local server/SQL store extras the default local stack needs.
"$VENV/bin/pip" install -q "zenml[local]"
ZENML_ANALYTICS_OPT_IN=false "$VENV/bin/python" -c "import zenml; print('zenml', zenml.__version__)"
