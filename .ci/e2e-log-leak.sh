#!/usr/bin/env bash
# CI entry for the log-leak test (issue #12 item 6): builds ws_node, ws_client, grpc_chat_node,
# grpc_chat_app and tun_node (debug), then runs tests/log_leak.sh: every flow at RUST_LOG=trace,
# every output searched for the keys, seeds, passphrases and plaintexts it was given (the
# tunnel flow needs root and network namespaces, else it prints SKIP). Its last line is
# `N passed, N failed`; non-zero exit on failure. A few seconds after the build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The tunnel flow needs ip and ping: a fresh machine has no ping until the netns step installs
# it, so install it here (as root, where the flow can run at all).
if [ "$(id -u)" -eq 0 ] && ! command -v ping >/dev/null; then
    timeout 120 apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq iputils-ping iproute2 >/dev/null
fi
cargo build --quiet --example ws_node --example ws_client --example grpc_chat_node \
    --example grpc_chat_app --example tun_node
LOG_LEAK_NO_BUILD=1 exec timeout 300 bash tests/log_leak.sh
