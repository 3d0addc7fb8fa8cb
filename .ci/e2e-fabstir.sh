#!/usr/bin/env bash
# CI entry point: examples/ws_node against the independent SDK-compatible client (see the script).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/../tests/e2e_fabstir.sh" "$@"
