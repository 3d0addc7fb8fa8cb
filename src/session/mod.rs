//! # Fabstir-compatible LLM end-to-end encryption
//!
//! The wire protocol of the Fabstir SDK (`@fabstir/sdk-core` 1.36.0) between a client (the SDK,
//! or [`Client`]) and an inference host ([`Node`]), byte-compatible with the SDK and hardened
//! where the SDK is weak. Every frame is one WebSocket text frame holding one compact JSON
//! object. The machines are sans-IO: feed frames and time in, drain frames, events and the
//! next deadline out. The full format, byte by byte, is [docs/fabstir-wire.md] (section numbers
//! below are that page's).
//!
//! ## Sequence
//!
//! ```text
//!  Client (SDK)                                  Node                      Embedder
//!    | encrypted_session_init ------------------->|                            |
//!    |   EphPub, nonce, sig(EphPub|NodePub|salt|  |  verify, ECDH, HKDF, open  |
//!    |   nonce|info), XChaCha(K, {sessionKey,…})  |-- SessionRequested ------->|
//!    |                                            |   (recovered address)      | owns the job?
//!    |                                            |<-- accept / reject --------|
//!    |<------------------------ session_init_ack  |   (or error NOT_AUTHORIZED)|
//!    | encrypted_message (AAD message_<n>) ------>|-- Prompt ----------------->|
//!    |<--- encrypted_chunk (AAD chunk_0, 1, …)    |<-- send_chunk -------------|
//!    |<--- encrypted_response (AAD encrypted_    |<-- finish -----------------|
//!    |     response_final_<chunk count>)          |                            |
//!    |<--- stream_end (plaintext usage)           |                            |
//!    | encrypted_session_init (fresh key) ------->|  same address and job:     |
//!    |<------------------------ session_init_ack  |  re-keyed automatically    |
//! ```
//! The SDK sends a fresh init before **every** prompt on the same connection and `session_id`,
//! so in practice each key protects exactly one prompt (index 0); the node treats such an init
//! as "replace the key, restart the index" ([`NodeEvent::SessionRekeyed`]).
//!
//! ## Wire
//!
//! Every frame is parsed and emitted in one place, the private `wire` module (one file per
//! group of frames, both directions in each).
//!
//! | frame | direction | fields (in the SDK's key order) |
//! |---|---|---|
//! | `encrypted_session_init` | c→n | `payload{ephPubHex, saltHex, nonceHex, ciphertextHex, signatureHex, recid, alg, info, aadHex}, chain_id, session_id, job_id` |
//! | `encrypted_message` | c→n | `session_id, id, payload{ciphertextHex, nonceHex, aadHex}, web_search, max_searches, search_queries` |
//! | `session_init` / `prompt` | c→n | legacy plaintext, only with [`NodeConfig::allow_plaintext`] |
//! | `ping` / `stream_cancel` | c→n | heartbeat / abort the answer |
//! | `session_init_ack` | n→c | `status, session_id, job_id, chain_id, message` |
//! | `encrypted_chunk` | n→c | `session_id, id, tokens, payload{ciphertextHex, nonceHex, aadHex, index}, final?` |
//! | `encrypted_response` | n→c | `session_id, id, payload{…}`: the sealed end of answer (finish reason, AAD `encrypted_response_final_<chunk count>`) |
//! | `stream_end` / `stream_chunk` | n→c | plaintext end of answer (usage) / plaintext chunk |
//! | `error` | n→c | `code, message, session_id?, id?` — exactly one per rejected client frame |
//! | `pong` | n→c | heartbeat answer |
//!
//! Init cryptography: `x` = x-coordinate of `e·NodePub`; `K` = HKDF-SHA256(x, salt = 32 zero
//! bytes, info = ""); XChaCha20-Poly1305 under `K`; ECDSA/secp256k1 (RFC 6979, low-S,
//! recoverable) over SHA-256(`"E2EEv1|" ‖ EphPub ‖ "|" ‖ NodePub ‖ "|" ‖ salt ‖ "|" ‖ nonce ‖ "|"
//! ‖ info`). Everything after the init is XChaCha20-Poly1305 under the 32-byte `sessionKey`
//! carried inside the init, with random 24-byte nonces.
//!
//! ## Why each check ([docs/fabstir-wire.md §2.5, §6, §7])
//!
//! The node checks in the spec's order, and each failure yields one `error` frame with a
//! stable [`ErrorCode`]; no other session changes.
//! * **Frame size before parsing** (`MESSAGE_TOO_LARGE`): images make prompts ~13 MB; bound
//!   memory before serde sees a byte.
//! * **Strict hex** (`INVALID_HEX_ENCODING`): the SDK's decoder turns `"zz"` into `00`; a node
//!   that copies that accepts garbage as the zero salt.
//! * **Point and signature validity** (`INVALID_PUBLIC_KEY`, `INVALID_SIGNATURE`): high-S and
//!   recid ≥ 2 are refused, so one init has one encoding.
//! * **The signature proves nothing about the job**: it covers only EphPub, NodePub, salt,
//!   nonce and info, and recovery yields *some* address for any bits. Hence
//!   [`NodeEvent::SessionRequested`]: the embedder must check that the recovered address owns
//!   the job (or is allow-listed) and call [`Node::accept`] or [`Node::reject`].
//! * **`jobId` = `job_id`** (`JOB_ID_MISMATCH`): the envelope is unauthenticated; only the
//!   encrypted `jobId` binds the job.
//! * **Replay** (`REPLAYED_SESSION_INIT`): nothing in the protocol is fresh, so the node keeps a
//!   bounded node-wide cache of ephemeral keys (decoded points) for the key lifetime, looked up
//!   right after the syntax so that a replay costs microseconds, not an ECDH and a recovery. It
//!   fails closed (`CAPACITY`) rather than forget a live key, and once it is half full each
//!   client address may hold only [`NodeConfig::replay_cache_per_client`] of it, so one client
//!   re-keying fast exhausts its own quota, not everyone's capacity. It survives a restart only
//!   if the embedder keeps it: [`Node::replay_state`], [`Node::restore_replay_state`].
//! * **Indices** (`INVALID_AAD`, `REPLAYED_MESSAGE`): inbound AAD must be
//!   `message_<canonical decimal>` and strictly increase per key; the node emits only
//!   `chunk_<i>` / `encrypted_response_final`, so a chunk reflected back as a message fails.
//! * **Binding**: keys belong to the `(connection, session_id)` that installed them; an init for
//!   an existing session from another address, job or chain is `NOT_AUTHORIZED` and leaves it
//!   intact.
//! * **End of answer**: `stream_end` and `final` travel in clear, so the node seals the chunk
//!   count into the `encrypted_response` (AAD `encrypted_response_final_<n>`); the SDK decrypts
//!   it under whatever `aadHex` says and discards it.
//! * **Key hygiene**: keys expire ([`NodeConfig::session_ttl`], [`NodeConfig::idle_timeout`]
//!   via [`Node::poll_timeout`]/[`Node::handle_timeout`]) and are wiped on close, re-key,
//!   expiry, disconnect and drop. `Debug` never shows keys or prompts; error messages are
//!   fixed sentences.
//!
//! The [`Client`] is strict where the SDK is lenient: chunk AADs must be `chunk_0, chunk_1, …`
//! in order ([`ChunkAadPolicy`]), an undecryptable or non-UTF-8 chunk fails the answer, an
//! encrypted answer is [`ClientEvent::Finished`] only once its sealed end matched every chunk
//! (else [`ClientEvent::Truncated`], with the text so far), a frame it already had under the key
//! is refused, and the prompt never travels in the clear `search_queries`.
//!
//! ## Memory
//!
//! The node's session table (`node/table.rs`) owns every session, its deadline and the
//! counts. An established session costs one `NodeSession` (136 bytes on 64-bit, bound asserted
//! by a test) and its key in a box of its own (32 B, 48 with the allocator's header: a key
//! never moves, so no stale copy is left when the table's vectors grow or shrink), one
//! deadline-heap entry (32 B), one replay-cache entry (≈ 120 B) with its client's quota counter
//! (≈ 40 B) and, with the SDK's one session per connection, the connection's table entry
//! (≈ 48 B): ≈ 430 B plus its `session_id` and `job_id` strings, under the 512 B budget. 100 000 concurrent sessions are exercised by a test. `poll_timeout` is
//! O(1) (heap top) and `handle_timeout` O(log n) per due entry, with lazy deletion. The
//! transmit and event queues of both machines hold at most their config's `queue_capacity`.
//!
//! ## Side protocols
//!
//! [`Node::answer_challenge`] / [`verify_challenge_response`] implement the host-key challenge
//! ([docs/fabstir-wire.md §5.1]); [`Node::encrypt_checkpoint_delta`] /
//! [`decrypt_checkpoint_delta`] the checkpoint deltas (§5.2).
//!
//! ## Where things are
//!
//! | file | owns |
//! |---|---|
//! | `node.rs` | [`Node`]: dispatch, the embedder's decisions, outputs, time |
//! | `node/table.rs` | the session table: connections, sessions, deadlines, counts |
//! | `node/init.rs`, `message.rs`, `plaintext.rs`, `answer.rs` | one kind of frame each |
//! | `client.rs`, `client/answer.rs` | [`Client`]: sending, and receiving an answer |
//! | `client/prompt.rs`, `client/events.rs` | what the application asks and is told |
//! | `wire/` | every frame, parsed and emitted |
//! | `replay.rs` | the node-wide cache of ephemeral keys |
//! | `challenge.rs`, `checkpoint.rs` | the side protocols |
//! | `events.rs`, `config.rs`, `error.rs` | the node's outputs, both configs, both errors |

mod challenge;
mod checkpoint;
mod client;
mod config;
mod error;
mod events;
mod node;
mod replay;
mod wire;

pub use crate::crypto::secp256k1::{Address, PublicKey, SecretKey};
pub use challenge::verify_challenge_response;
pub use checkpoint::{decrypt_checkpoint_delta, CheckpointDelta, CheckpointMessage};
pub use client::{Client, ClientEvent, ClientStats, Prompt, SessionParams};
pub use config::{ChunkAadPolicy, ClientConfig, NodeConfig};
pub use error::{ClientError, ErrorCode, NodeError};
pub use node::{
    CloseReason, ConnectionId, Node, NodeEvent, NodeStats, PromptImage, PromptRequest,
    SessionRequest, StreamEnd, Transmit,
};

/// A RAG vector database reference carried by an init.
///
/// ```
/// let vdb = sealwire::session::VectorDatabase { manifest_path: "m.json".into(), user_address: "0xabc".into() };
/// assert_eq!(vdb.clone(), vdb);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VectorDatabase {
    /// `manifestPath` (`manifest_path` in plaintext mode).
    pub manifest_path: String,
    /// `userAddress` (`user_address` in plaintext mode).
    pub user_address: String,
}

use alloc::string::String;
