#!/usr/bin/env bash
# Fetches GitHub's published OpenAPI description of its REST API (api.github.com.json) for the
# tests' GitHub stand-in (tests/support/github_server.rs), which checks every request it gets —
# and every answer it gives — against it.
#
#   scripts/github-openapi.sh             # → <workspace>/target/github-openapi/api.github.com.json
#   scripts/github-openapi.sh PATH        # → PATH
#
# GitHub publishes the description in github/rest-api-description; the Octokit project
# re-publishes the same files on npm as @octokit/openapi. CI machines reach package registries
# but not arbitrary hosts, so the file comes from npm: `npm pack` of a pinned version (about
# 29 MB), of which only `package/generated/api.github.com.json` (about 13 MB) is kept. The file
# is written next to its destination and renamed into place, so a reader never sees half of it.
# Prints the destination path. Needs npm, tar and node (node ships with npm).
#
# The tests use RCLAUDE_GITHUB_OPENAPI if it names a file, else run this script once when the
# default path is missing.
set -euo pipefail
# A relative PATH is relative to where the script is called from; the default to the workspace.
case "${1:-}" in
  "") dest="" ;;
  /*) dest=$1 ;;
  *) dest=$PWD/$1 ;;
esac
cd "$(dirname "$0")/.."
dest=${dest:-$PWD/target/github-openapi/api.github.com.json}

VERSION=23.0.2
MEMBER=package/generated/api.github.com.json

command -v npm >/dev/null || {
  echo "github-openapi.sh: npm is needed (Debian: apt-get install -y nodejs npm)" >&2
  exit 1
}

mkdir -p "$(dirname "$dest")"
dest=$(cd "$(dirname "$dest")" && pwd)/$(basename "$dest")

work=$(mktemp -d)
partial=""
cleanup() {
  rm -rf "$work"
  if [ -n "$partial" ]; then rm -f "$partial"; fi
}
trap cleanup EXIT

# `npm pack` prints the tarball's file name on its last line of stdout.
tarball=$(cd "$work" && npm pack --silent "@octokit/openapi@$VERSION" | tail -n 1)
[ -f "$work/$tarball" ] || {
  echo "github-openapi.sh: npm pack @octokit/openapi@$VERSION produced no tarball" >&2
  exit 1
}
tar -xzf "$work/$tarball" -C "$work" "$MEMBER"

# Sanity check: an OpenAPI document describing the pull request endpoints.
node -e '
  const doc = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  if (typeof doc.openapi !== "string" || !doc.paths || !doc.paths["/repos/{owner}/{repo}/pulls"]) {
    console.error("github-openapi.sh: " + process.argv[1] + " is not GitHub\x27s OpenAPI description");
    process.exit(1);
  }
' "$work/$MEMBER"

partial=$(mktemp "$dest.XXXXXX")
cp "$work/$MEMBER" "$partial"
chmod 644 "$partial"
mv -f "$partial" "$dest"
partial=""
echo "$dest"
