#!/usr/bin/env bash
# Builds every cargo-fuzz target on nightly and runs each for a bounded time from its checked-in
# seed corpus. Usage: .ci/fuzz.sh [SECONDS_PER_TARGET]
#
# Without AddressSanitizer (`-s none`): the library is `forbid(unsafe_code)`, so ASan would only
# watch the dependencies' unsafe code, and it triples the cost of an input (tunnel_device: 82 us
# with ASan, 27 us without); a panic, an abort, a timeout or the rss limit still fail the run.
# To fuzz with ASan, drop `-s none` (e.g. `cargo +nightly fuzz run -O TARGET`).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain on this machine" >&2; exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
targets=$(cargo +nightly fuzz list)
[ -n "$targets" ] || { echo "fuzz: no targets" >&2; exit 1; }
cargo +nightly fuzz build -O -s none
for t in $targets; do
  mkdir -p "fuzz/corpus/$t"
  work=$(mktemp -d)
  echo "fuzz: $t for ${secs}s"
  # Run on a scratch copy so CI never rewrites the checked-in corpus.
  cp -r "fuzz/corpus/$t/." "$work/" 2>/dev/null || true
  log="$work.log"
  status=0
  cargo +nightly fuzz run -O -s none "$t" "$work" -- -max_total_time="$secs" -rss_limit_mb=2048 \
    -max_len=65536 >"$log" 2>&1 || status=$?
  grep -E 'Done [0-9]+ runs' "$log" || true
  rm -rf "$work"
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "fuzz: $t FAILED" >&2; exit 1
  fi
  rm -f "$log"
done
