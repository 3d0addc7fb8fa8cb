//! Code shared by the chat programs (`grpc_chat_node`, `grpc_chat_app`, `grpc_chat_probe`) and
//! their tests: the gRPC service generated from `proto/chat_relay.proto`, the node's pump of the
//! relay machine, and the app side of the relay stream.

/// The relay's gRPC service and messages, generated from `proto/chat_relay.proto` (checked in,
/// so building needs no `protoc`; the root package's `tests/grpc_proto.rs` fails when stale).
#[rustfmt::skip]
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto;

pub mod cli;
pub mod limits;
pub mod membership;
pub mod mesh;
pub mod metrics;
pub mod outbox;
pub mod relay_client;
pub mod relay_service;
pub mod reorder;
