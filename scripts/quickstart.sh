#!/usr/bin/env bash
# From a fresh Debian 12 machine to three running functions: installs dependencies, builds
# `stratus`, starts the all-in-one server in the background, deploys the examples (python3,
# nodejs, custom) and invokes each once. Safe to re-run: a server that is already up is reused
# and deploys are idempotent (create, else update).
#
#   STRATUS_DATA    data directory (default ~/.stratus)
#   STRATUS_LISTEN  ADDR:PORT to listen on (default 127.0.0.1:9000)
#   BUILD_DIR       build directory (default build)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

data=${STRATUS_DATA:-$HOME/.stratus}
listen=${STRATUS_LISTEN:-127.0.0.1:9000}
endpoint="http://$listen"
build_dir=${BUILD_DIR:-build}
bin="$repo/$build_dir/stratus"
pidfile="$data/stratus.pid"
log="$data/stratus.log"

say() { printf '\n==> %s\n' "$*"; }

say "installing dependencies (scripts/setup.sh)"
scripts/setup.sh

say "building stratus (scripts/build.sh)"
BUILD_TARGETS=${BUILD_TARGETS:-stratus} scripts/build.sh

healthy() { curl -sf -o /dev/null --max-time 2 "$endpoint/healthz"; }

mkdir -p "$data"
if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  say "stratus already running (pid $(cat "$pidfile")), reusing it"
elif healthy; then
  say "something already serves $endpoint/healthz; reusing it (not started by this script)"
else
  say "starting stratus up --listen $listen --data-dir $data (log: $log)"
  nohup "$bin" up --listen "$listen" --data-dir "$data" >>"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
fi

# Wait for the server (and its admin key) with a deadline, noticing if it died.
deadline=$((SECONDS + 60))
until healthy && [[ -s "$data/admin-key" ]]; do
  if [[ -f "$pidfile" ]] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "stratus exited during start-up; last lines of $log:" >&2
    tail -n 30 "$log" >&2 || true
    rm -f "$pidfile"
    exit 1
  fi
  if (( SECONDS > deadline )); then
    echo "stratus did not answer $endpoint/healthz within 60 s; see $log" >&2
    exit 1
  fi
  sleep 0.2
done
key=$(cat "$data/admin-key")
cli=("$bin")
auth=(--endpoint "$endpoint" --key "$key")

failed=0
deploy() {  # name dir runtime [extra args...]
  local name=$1 dir=$2 runtime=$3
  shift 3
  say "deploying $name ($runtime) from examples/$dir"
  "${cli[@]}" deploy "$repo/examples/$dir" --name "$name" --runtime "$runtime" "$@" "${auth[@]}" ||
    failed=1
}
invoke() {
  say "invoking $1"
  "${cli[@]}" invoke "$1" --data '{"from": "quickstart"}' "${auth[@]}" || failed=1
}

deploy hello-python hello-python python3 --handler index.handler
deploy hello-node hello-node nodejs --handler index.handler
deploy hello-custom hello-custom custom
for fn in hello-python hello-node hello-custom; do invoke "$fn"; done

cat <<EOF2

Stratus is running at $endpoint (data in $data, log in $log).

Call a function with curl:
  curl -s -X POST $endpoint/2023-03-30/functions/hello-python/invocations \\
       -H "Authorization: Bearer \$(cat $data/admin-key)" -d '{"hello": "world"}'

Or with the CLI (\`stratus up\` saved the endpoint and key in ${STRATUS_CONFIG:-~/.config/stratus/config.json}):
  $build_dir/stratus ls
  $build_dir/stratus invoke hello-node --data '{"hello": "world"}' --log
  $build_dir/stratus deploy examples/hello-python --name my-fn --runtime python3
  $build_dir/stratus get my-fn ; $build_dir/stratus rm my-fn

Stop the server:
  kill \$(cat $pidfile)
EOF2

if (( failed )); then
  echo "quickstart: some deploys or invocations failed (see above and $log)" >&2
  exit 1
fi
