#!/usr/bin/env bash
# End-to-end check: the browser client (examples/browser: sealwire's session::Client as
# WebAssembly, with the JS module www/sealwire.js) in real headless Chromium against ws_node.
#
# Builds the module (examples/browser/build.sh) and ws_node/ws_mitm, installs puppeteer-core
# under the cargo target dir (cached), then runs tests/browser/e2e.mjs: it serves the page,
# starts the nodes (and the on-path proxy) on free loopback ports, drives Chromium and checks
# several prompts echoed back exactly through the demo page, the module API (pieces, token
# counts), a caller-supplied client key on an allow-list, a wrong node key, an answer truncated
# by ws_mitm, a node error frame and three timeouts (handshake, ack, first piece). Screenshot: $TARGET/browser/demo.png.
# Prints `PASS name` / `FAIL name` lines, then `N passed, N failed`; exits 1 on any failure.
#
# Needs: node (>= 18), npm (registry on the first run), a Chromium (CHROMIUM, default
# /usr/bin/chromium), the wasm32-unknown-unknown target and wasm-bindgen-cli
# (.ci/e2e-browser.sh installs them). E2E_NO_BUILD=1 skips the cargo builds.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
command -v node >/dev/null || { echo "e2e_browser: node (>= 18) is required" >&2; exit 2; }
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || { echo "e2e_browser: no Chromium at $CHROMIUM (set CHROMIUM)" >&2; exit 2; }

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "${E2E_NO_BUILD:-}" ]; then
  cargo build --quiet --example ws_node --example ws_mitm
  examples/browser/build.sh >/dev/null
fi

NPM=$TARGET/browser/npm
mkdir -p "$NPM"
cp "$ROOT/tests/browser/package.json" "$NPM/package.json.want"
if ! cmp -s "$NPM/package.json.want" "$NPM/package.json" || [ ! -d "$NPM/node_modules/puppeteer-core" ]; then
  cp "$NPM/package.json.want" "$NPM/package.json"
  echo "installing puppeteer-core into $NPM ..."
  (cd "$NPM" && PUPPETEER_SKIP_DOWNLOAD=1 npm install --no-audit --no-fund --silent >/dev/null)
fi
cp "$ROOT/tests/browser/e2e.mjs" "$NPM/e2e.mjs" # resolves puppeteer-core there

exec timeout 180 node "$NPM/e2e.mjs" --www "$TARGET/browser/www" \
  --ws-node "$TARGET/debug/examples/ws_node" --ws-mitm "$TARGET/debug/examples/ws_mitm" \
  --chromium "$CHROMIUM" --out "$TARGET/browser"
