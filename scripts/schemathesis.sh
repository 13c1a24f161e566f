#!/usr/bin/env bash
# Property-based API testing of rclaude-server with schemathesis (not run in CI).
#
#   scripts/schemathesis.sh                      # default budget
#   scripts/schemathesis.sh --max-examples 200   # further arguments go to `st run`
#
# Builds the server, starts it on a fresh SQLite database on a loopback port with a fresh
# account and token, installs schemathesis (pinned) into a venv under the target directory, and
# runs it against /v1/openapi.json with two checks: no 5xx (`not_a_server_error`) and every
# answer follows the document's schema for its status (`response_schema_conformance`). Prints
# schemathesis' summary (each failure with a curl command that reproduces it), then the server's
# log lines for any 5xx; exits with schemathesis' status. Nothing is left behind but the venv.
#
# Needs python3 with venv and PyPI. CARGO_TARGET_DIR is honoured; CARGO_BUILD_JOBS limits the build.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=4.32.5
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target"
target=$(cd "$target" && pwd)

cargo build -p rclaude-server
bin="$target/debug/rclaude-server"

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

db="$work/server.db"
token=$("$bin" --database-url "$db" admin create-account schemathesis | tail -n 1)

"$bin" serve --listen 127.0.0.1:0 --database-url "$db" >"$work/stdout" 2>"$work/server.log" &
server_pid=$!
base=""
for _ in $(seq 1 100); do
  base=$(sed -n 's/^rclaude-server listening on \(http:\/\/[^ ]*\)$/\1/p' "$work/stdout" | head -n 1)
  [ -n "$base" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$base" ] || { echo "rclaude-server did not start; its log:" >&2; cat "$work/server.log" >&2; exit 1; }
echo "rclaude-server on $base (SQLite $db)"

venv="$target/schemathesis-$VERSION"
if [ ! -x "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$VERSION" || {
    rm -rf "$venv"
    echo "pip install schemathesis==$VERSION failed (is PyPI reachable?)" >&2
    exit 1
  }
fi

# Run from the temporary directory: schemathesis keeps a `.schemathesis/` cache in its working
# directory, which is of no use once this server is gone.
status=0
(cd "$work" && "$venv/bin/st" --no-color run "$base/v1/openapi.json" \
  --checks not_a_server_error,response_schema_conformance \
  --header "Authorization: Bearer $token" \
  --max-examples 50 \
  --seed 1 \
  --workers 1 \
  "$@") || status=$?

# What the server logged for any 5xx (schemathesis reports them too, without the server's side).
if grep -q '"status":5[0-9][0-9]' "$work/server.log"; then
  echo "server log lines with a 5xx:"
  grep '"status":5[0-9][0-9]' "$work/server.log" | head -n 20
fi
echo "schemathesis exit status: $status"
exit "$status"
