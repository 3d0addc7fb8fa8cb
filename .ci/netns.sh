#!/usr/bin/env bash
# End-to-end: tun_node against boringtun-cli and wireguard-go in network namespaces (needs root;
# prints SKIP and exits 0 where namespaces are unavailable). Installs wireguard-tools, iperf3,
# wireguard-go and boringtun-cli itself on first use. Bounded: a few minutes plus the one-time `cargo install`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec timeout 2400 bash tests/netns_interop.sh
