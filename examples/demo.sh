#!/usr/bin/env bash
# rclaude's main job on the embedded default: start rclaude-server on SQLite and log in, bring a
# repository up in a sandbox the server runs on its local provider (a managed session: the CLI
# syncs and executes straight to the sandbox), run a task with its dependency, bring the
# sandbox's work back as a branch, tear it down, and read the session's events and usage from the
# server. (`rclaude up --direct` would run the sandbox from the CLI instead.)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --workspace --bins
rclaude="$root/target/release/rclaude"
server="$root/target/release/rclaude-server"

work=$(mktemp -d)
server_pid=
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT
export RCLAUDE_HOME="$work/rclaude-home"   # keep the demo's sandboxes out of your own

# The server on SQLite (embedded default), an account and its API token.
db="sqlite://$work/server.db"
mkfifo "$work/server.out"
"$server" serve --listen 127.0.0.1:0 --database-url "$db" --sandboxes-dir "$work/server-sandboxes" \
    >"$work/server.out" 2>"$work/server.log" &
server_pid=$!
read -r first_line <"$work/server.out"      # "rclaude-server listening on http://ADDR"
url=${first_line##* }
token=$("$server" admin create-account demo --database-url "$db" | tail -n 1)
RCLAUDE_TOKEN="$token" "$rclaude" login --server "$url"
cp -R "$here/hello" "$work/hello"
cd "$work/hello"
git init -q -b main
git add -A
git -c user.name=demo -c user.email=demo@example.com commit -q -m "hello: initial commit"
echo "uncommitted edit" > NOTES.txt           # uncommitted work travels too

set -x
"$rclaude" up
"$rclaude" run test
"$rclaude" exec -- 'echo "written in the sandbox" >> NOTES.txt && git add NOTES.txt && git -c user.name=agent -c user.email=agent@example.com commit -qm "agent: note" && git log --oneline -2'
"$rclaude" pull
git log --oneline -3 rclaude/main
"$rclaude" status
session=$("$rclaude" status --json | sed -n 's/.*"session": *"\([^"]*\)".*/\1/p')
"$rclaude" down --yes
"$rclaude" logs --session "$session"   # the session's events, as the server recorded them
"$rclaude" usage       # active time and storage, billed per second
