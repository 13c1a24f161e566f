#!/usr/bin/env bash
# rclaude's main job on the embedded default: bring a repository up on the local provider, run a
# task with its dependency, bring the sandbox's work back as a branch, and tear it down.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin rclaude
rclaude="$root/target/release/rclaude"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export RCLAUDE_HOME="$work/rclaude-home"   # keep the demo's sandboxes out of your own
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
"$rclaude" down --yes
