#!/usr/bin/env bash
# Builds the browser client: the WebAssembly module (cargo, profile wasm-release), its JS glue
# (wasm-bindgen --target web) and the pages, into $TARGET/browser/www (TARGET: CARGO_TARGET_DIR
# or ./target). Serve that directory with any static server and open index.html.
#   examples/browser/build.sh           the module a page ships
#   examples/browser/build.sh --bench   the speed page's build (bench.html; links the node machine
#                                       to seal test chunks) into $TARGET/browser/www-bench
# Needs: rustup target wasm32-unknown-unknown, wasm-bindgen-cli at the wasm-bindgen version of
# Cargo.lock (.ci/e2e-browser.sh installs both).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
FEATURES=()
OUT=$TARGET/browser/www
if [ "${1:-}" = "--bench" ]; then
  FEATURES=(--features bench)
  OUT=$TARGET/browser/www-bench
fi
cargo build --quiet -p browser-client --target wasm32-unknown-unknown --profile wasm-release "${FEATURES[@]}"
mkdir -p "$OUT"
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section --out-dir "$OUT/pkg" \
  "$TARGET/wasm32-unknown-unknown/wasm-release/browser_client.wasm"
cp "$ROOT"/examples/browser/www/* "$OUT/"
echo "$OUT"
