#!/usr/bin/env bash
# The whole check, from a fresh Debian 12 machine: install dependencies, build, run every test,
# then fuzz each libFuzzer target for a short fixed time (clang build, scripts/fuzz.sh).
# Extra arguments go to ctest (e.g. `scripts/test.sh -R codepack` or `-L e2e`); with extra
# arguments, or STRATUS_SKIP_FUZZ=1, the fuzzing step is skipped. Exit code: ctest's, else fuzz's.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build.sh

set +e
ctest --test-dir "${BUILD_DIR:-build}" -j2 --output-on-failure "$@"
rc=$?
set -e
if [ $rc -eq 0 ] && [ $# -eq 0 ] && [ "${STRATUS_SKIP_FUZZ:-0}" != 1 ]; then
  FUZZ_SECONDS=${FUZZ_SECONDS:-15} scripts/fuzz.sh || rc=$?
fi
exit $rc
