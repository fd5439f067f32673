#!/usr/bin/env bash
# The whole check, from a fresh Debian 12 machine: install dependencies, build, run every test.
# Extra arguments go to ctest (e.g. `scripts/test.sh -R codepack` or `-L e2e`). Exit code is
# ctest's.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build.sh

set +e
ctest --test-dir "${BUILD_DIR:-build}" -j2 --output-on-failure "$@"
rc=$?
set -e
exit $rc
