#!/usr/bin/env bash
# Installs everything Stratus needs to build, test and run its built-in runtimes on Debian 12
# (bookworm). Idempotent and non-interactive: only missing packages are installed, and the
# apt index is refreshed only when something is missing. Run as root.
set -euo pipefail

die() { echo "setup.sh: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (try: sudo $0)"
if [[ ! -r /etc/debian_version ]] || ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
  die "this script supports Debian 12 (and Debian-like systems with apt/dpkg) only"
fi
. /etc/os-release 2>/dev/null || true
if [[ "${ID:-}" == debian && -n "${VERSION_ID:-}" && "${VERSION_ID}" != 12 ]]; then
  echo "setup.sh: warning: tested on Debian 12, this is Debian ${VERSION_ID}; package names may differ" >&2
fi

packages=(
  # toolchain
  build-essential g++ cmake ninja-build pkg-config git
  # libraries (DESIGN.md section 4; README.md says why each is there)
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libsqlite3-dev libseccomp-dev libfuse3-dev fuse3 libarchive-dev libssl-dev libzstd-dev
  libspdlog-dev libfmt-dev libcli11-dev
  # tests and benchmarks; clang + libclang-rt for the libFuzzer targets (scripts/fuzz.sh)
  libgtest-dev libgmock-dev libbenchmark-dev wrk etcd-server clang libclang-rt-14-dev
  # fuzzing the code pack reader (libFuzzer ships in libclang-rt-14-dev)
  clang libclang-rt-14-dev
  # built-in runtimes and the examples
  python3
  # sandboxing helpers, tools the scripts and tests call
  runc bubblewrap iproute2 procps ca-certificates zip unzip curl
)

# Node: keep an existing node >= 18 (e.g. from NodeSource or nvm), else Debian's nodejs.
node_ok=0
if command -v node >/dev/null; then
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  [[ "$major" =~ ^[0-9]+$ ]] && (( major >= 18 )) && node_ok=1
fi
(( node_ok )) || packages+=(nodejs)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$status" == installed ]] || missing+=("$p")
done

if (( ${#missing[@]} == 0 )); then
  echo "setup.sh: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "setup.sh: installing ${#missing[@]} missing package(s): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup.sh: done"
