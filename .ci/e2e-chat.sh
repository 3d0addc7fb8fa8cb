#!/usr/bin/env bash
# CI entry for the chat-over-gRPC end-to-end test: builds the relay node, the app and the probe
# (no system protoc: the generated gRPC code is checked in, see tests/grpc_proto.rs), then runs
# tests/e2e_chat.sh on loopback. Its last line is `N passed, N failed`; non-zero exit on failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --quiet --example grpc_chat_node --example grpc_chat_app --example grpc_chat_probe
E2E_NO_BUILD=1 exec bash tests/e2e_chat.sh
