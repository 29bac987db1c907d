#!/usr/bin/env bash
# Lint, format check, types, the import contracts (layers), then the tests: what CI runs, via the
# README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check .
ruff format --check .
mypy
lint-imports
pytest -q "$@"
