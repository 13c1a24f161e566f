#!/usr/bin/env bash
# Static Linux release binaries of rclaude and rclaude-server (musl, no shared libraries: they run
# on any x86_64 Linux, including minimal sandbox images), packaged with a checksum in dist/.
#
#   scripts/release.sh                       # x86_64-unknown-linux-musl
#   TARGET=aarch64-unknown-linux-musl scripts/release.sh   (needs that target's musl C compiler)
#
# Needs rustup (for the musl target) and musl-gcc (Debian: musl-tools) because libgit2, SQLite
# and aws-lc are C. As root, missing pieces are installed; otherwise the command to do so is printed.
# For a plain install from source, `cargo install --locked --path .` (and `--path server`) is enough.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${TARGET:-x86_64-unknown-linux-musl}

if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
fi
if ! command -v musl-gcc >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends musl-tools >/dev/null
  else
    echo "scripts/release.sh: needs musl-gcc: sudo apt-get install -y musl-tools" >&2
    exit 1
  fi
fi

cargo build --profile dist --locked --target "$target" -p rclaude -p rclaude-server
out="${CARGO_TARGET_DIR:-target}/$target/dist"
for bin in rclaude rclaude-server; do
  if ! file "$out/$bin" | grep -q "static"; then
    echo "scripts/release.sh: $out/$bin is not statically linked:" >&2
    file "$out/$bin" >&2
    exit 1
  fi
done
version=$("$out/rclaude" --version | awk '{print $2}')
name="rclaude-$version-$target"
mkdir -p dist
tar -czf "dist/$name.tar.gz" -C "$out" rclaude rclaude-server
(cd dist && sha256sum "$name.tar.gz" > "$name.tar.gz.sha256")
echo "dist/$name.tar.gz"
cat "dist/$name.tar.gz.sha256"
