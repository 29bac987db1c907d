#!/usr/bin/env bash
# The fuzzing campaign (issue 22): 100,000 property-based cases per entry point (the wire decoder, the
# registry protocol, the parameter services, the launch-file parser), new random ones each run, the
# outcome counts printed at the end; then, where atheris installs (pip install atheris), 100,000
# coverage-guided inputs each for the wire decoder and the registry (scripts/fuzz_atheris.py), with a
# memory cap and a per-input time limit. CI runs a seeded 200 per entry point.
# Usage: scripts/fuzz.sh [CASES]
set -euo pipefail
cd "$(dirname "$0")/.."
export PERCEPT_FUZZ_CASES="${1:-100000}"
pytest -q -s -p no:cacheprovider --timeout 0 tests/runtime/test_fuzz.py
if python -c "import atheris" 2>/dev/null; then
  for target in wire registry; do
    python scripts/fuzz_atheris.py "$target" -runs="$PERCEPT_FUZZ_CASES" -rss_limit_mb=1024 -timeout=10 \
      -print_final_stats=1 2>&1 | grep -E "^atheris|^stat::|DONE|ERROR|crash"
  done
else
  echo "atheris is not installed: coverage-guided fuzzing skipped (pip install atheris)"
fi
