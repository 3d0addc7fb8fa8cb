#!/usr/bin/env bash
# CI entry for the chat relay mesh end-to-end test (issue #13): installs nats-server (Debian
# package, quiet and idempotent), builds the relay node and the app, then runs tests/e2e_mesh.sh
# on loopback (one nats-server, three nodes, two apps). Its last line is `N passed, N failed`;
# non-zero exit on failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server) >/dev/null
fi
cargo build --quiet --example grpc_chat_node --example grpc_chat_app --example chat_load
E2E_NO_BUILD=1 exec bash tests/e2e_mesh.sh
