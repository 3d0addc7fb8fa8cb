#!/usr/bin/env bash
# The browser client's size and speed (not a test, not in CI): builds the shipping module and
# the bench build, opens examples/browser/www/bench.html in headless Chromium and prints the
# gzipped module size and the per-operation times of sealwire (wasm) and noble (the versions
# the Fabstir SDK uses), also written to $TARGET/browser/bench.json. Run .ci/e2e-browser.sh once
# first (it installs the target, wasm-bindgen-cli, chromium and the npm packages).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
examples/browser/build.sh >/dev/null
examples/browser/build.sh --bench >/dev/null
NPM=$TARGET/browser/npm
[ -d "$NPM/node_modules/@noble/secp256k1" ] || { echo "run .ci/e2e-browser.sh first (npm packages)" >&2; exit 2; }
cp "$ROOT/tests/browser/bench.mjs" "$NPM/bench.mjs"
node "$NPM/bench.mjs" --www "$TARGET/browser/www-bench" --ship-wasm "$TARGET/browser/www/pkg/browser_client_bg.wasm" \
  --chromium "${CHROMIUM:-/usr/bin/chromium}" --out "$TARGET/browser"
