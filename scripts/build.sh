#!/usr/bin/env bash
# Configures (Ninja, RelWithDebInfo) into ./build and builds everything: the `stratus` binary,
# all tests and benchmarks. Extra arguments go to the configure step (e.g. -DSTRATUS_SANITIZE=address).
# BUILD_DIR and JOBS override the build directory and parallelism; BUILD_TARGETS (space separated)
# builds only those targets, e.g. BUILD_TARGETS=stratus.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}

cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
if [[ -n "${BUILD_TARGETS:-}" ]]; then
  # shellcheck disable=SC2086  # word splitting intended
  cmake --build "$build_dir" -j "$jobs" --target ${BUILD_TARGETS}
else
  cmake --build "$build_dir" -j "$jobs"
fi
