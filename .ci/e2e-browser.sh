#!/usr/bin/env bash
# CI entry for the browser client end-to-end test (tests/e2e_browser.sh): installs what it needs
# when missing (idempotent, quiet): the wasm32-unknown-unknown target, wasm-bindgen-cli at the
# exact wasm-bindgen version of Cargo.lock, Debian's chromium; puppeteer-core is installed by
# the test under the target dir. Builds the module, ws_node and ws_mitm, then runs the test.
# First run on 2 cores: about 5 minutes (wasm-bindgen-cli builds from source in ~4 min,
# chromium ~1 min);
# cached: about 5-20 s. Last line `N passed, N failed`; non-zero exit on failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown >/dev/null 2>&1
fi
WB_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WB_VERSION" ]; then
  echo "installing wasm-bindgen-cli $WB_VERSION (first run: a few minutes) ..."
  # Not --locked: the CLI's own lock file names a webpki-roots release yanked from crates.io.
  cargo install --quiet --force wasm-bindgen-cli --version "$WB_VERSION" >/dev/null 2>&1
fi
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  echo "installing chromium ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq chromium >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }
fi

# Not a default member (see Cargo.toml), so the workspace clippy skips it: linted here, for the
# target it is built for, with the speed page's code too.
cargo clippy --quiet -p browser-client --all-targets --features bench \
  --target wasm32-unknown-unknown -- -D warnings
cargo build --quiet --example ws_node --example ws_mitm
examples/browser/build.sh >/dev/null
CHROMIUM=$CHROMIUM E2E_NO_BUILD=1 exec bash tests/e2e_browser.sh
