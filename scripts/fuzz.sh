#!/usr/bin/env bash
# Run every fuzz target for a while (default 3 minutes each), one after the other. Not part of
# CI. Needs cargo-fuzz (`cargo install cargo-fuzz`) and the nightly toolchain
# (`rustup toolchain install nightly`). Crashes are saved under fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh            # 3 minutes per target
#   scripts/fuzz.sh 10 agent_request
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
minutes=${1:-3}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(bundle_read agent_request connect_envelopes)
fi
for t in "${targets[@]}"; do
  echo "== $t: $minutes min"
  mkdir -p "corpus/$t"
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time=$((minutes * 60)) -rss_limit_mb=4096 2>&1 |
    grep -E "^#[0-9]+.*(DONE|pulse)|Done|ERROR|SUMMARY|artifact" || true
done
