#!/usr/bin/env bash
# The fuzzing campaign (issue 22): 100,000 property-based cases per entry point (the wire decoder, the
# registry protocol, the parameter services, the launch-file parser), new random ones each run, the
# outcome counts printed at the end. CI runs a seeded 200 per entry point. Usage: scripts/fuzz.sh [CASES]
set -euo pipefail
cd "$(dirname "$0")/.."
export PERCEPT_FUZZ_CASES="${1:-100000}"
exec pytest -q -s -p no:cacheprovider --timeout 0 tests/runtime/test_fuzz.py
