//! Fabstir-compatible LLM end-to-end encryption (placeholder page, see below).

mod challenge;
mod checkpoint;
mod client;
mod config;
mod error;
mod node;
mod replay;
mod wire;

pub use crate::crypto::secp256k1::{Address, PublicKey, SecretKey};
pub use challenge::verify_challenge_response;
pub use checkpoint::{decrypt_checkpoint_delta, CheckpointDelta, CheckpointMessage};
pub use client::{Client, ClientEvent, Prompt, SessionParams};
pub use config::{ChunkAadPolicy, ClientConfig, NodeConfig};
pub use error::{ClientError, ErrorCode, SessionError};
pub use node::{
    CloseReason, ConnectionId, Node, NodeEvent, NodeStats, PromptImage, PromptRequest,
    SessionRequest, StreamEnd, Transmit,
};

/// A RAG vector database reference carried by an init.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VectorDatabase {
    /// `manifestPath` (`manifest_path` in plaintext mode).
    pub manifest_path: String,
    /// `userAddress` (`user_address` in plaintext mode).
    pub user_address: String,
}

use alloc::string::String;
