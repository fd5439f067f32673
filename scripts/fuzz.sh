#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (coverage-instrumented, ASan + UBSan) in their own build
# dir and runs each for a fixed time against its kept corpus (ctest label "fuzz").
#   scripts/fuzz.sh                 # 20 s per target
#   FUZZ_SECONDS=300 scripts/fuzz.sh
# New interesting inputs land in BUILD_DIR/src/*/fuzz_*_corpus; copy the ones worth keeping into
# src/api/fuzz_corpus/json or src/gateway/fuzz_corpus/request. A crash leaves crash-<sha1> in
# the current directory: add it to the corpus once fixed (the g++ build replays the corpus).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (scripts/setup.sh installs it)" >&2; exit 1; }
BUILD_DIR=${BUILD_DIR:-build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSTRATUS_FUZZ=ON -DSTRATUS_FUZZ_SECONDS="$FUZZ_SECONDS" \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build "$BUILD_DIR" --target fuzz_api_json fuzz_http_request codepack_pack_fuzz \
  codepack_zip_fuzz -j"${JOBS:-2}"
# The front door's targets (fuzz_*) and the code-pack reader and zip importer (codepack_*_fuzz).
ctest --test-dir "$BUILD_DIR" -L fuzz -R '^(fuzz_|codepack_.*_fuzz$)' --output-on-failure
