#!/usr/bin/env bash
# Creates benchmarks/.venvs/mlflow with MLflow 3.x for the tracking benchmark.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venvs/mlflow
.venvs/mlflow/bin/pip install -q -U pip
.venvs/mlflow/bin/pip install -q 'mlflow>=3'
.venvs/mlflow/bin/python -c 'import mlflow; print("mlflow", mlflow.__version__)'
