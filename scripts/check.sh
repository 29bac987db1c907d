#!/usr/bin/env bash
# Lint, format check, types, then the tests: what CI runs, via the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check .
ruff format --check .
mypy
pytest -q "$@"
