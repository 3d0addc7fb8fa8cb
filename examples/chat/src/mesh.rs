//! The node's side of a mesh of relay nodes joined through NATS.
//!
//! Subjects: one per chat, `sealwire.chat.v1.<32 hex digits of the chat id>`. A node subscribes
//! to the subject of every chat one of its apps has started (and drops the subscription when
//! the chat expires), so NATS delivers a chat's frames only to the nodes that hold a participant
//! of it: interest-based routing done by the server, no gossip and no node directory. The
//! version in the prefix lets a later payload format run beside this one.
//!
//! Payload: one kind byte, the sender's 32-byte proven identity, then for a frame the chat
//! frame unchanged (its clear header repeats the chat id; the receiving machine checks it
//! again). Kind 0 is a frame; kind 1 announces that the identity joined the chat at the
//! publishing node (the nodes that held frames for it then publish them).
//!
//! Every publication goes through one task, in order, over one NATS connection, so each
//! sender's frames reach every subscriber in the order the machine accepted them. Delivery is
//! NATS core: at most once per subscriber while connected. A frame published while the
//! recipient's node was down or the recipient between nodes would be lost, so the sending node
//! keeps a copy of each frame it forwarded until the recipient has it (kind 3, below; at most
//! `RelayConfig::mesh_replay_frames` per chat) and publishes the copies again when the
//! recipient (re)joins at some node (kind 1), when a later frame is acknowledged first, and
//! every 5 s while they wait; the chat protocol drops the copies it already has as replays.
//!
//! Kind 3 says which frames an app at the publishing node now has for good (the identity is
//! the recipient's; then the 30-byte clear headers of the frames, at most
//! [`MAX_NOTICES`]): the node that forwarded them drops its copies, and publishes again the
//! copies it published before them that are still waiting (see
//! `sealwire::chat::relay::Relay::handle_remote_delivered`).
//!
//! Kind 2 asks the nodes that hold a chat for its participants (the reply subject of the
//! message carries the answers; see [`crate::membership`]).

use std::collections::HashMap;
use std::sync::Arc;

use sealwire::chat::relay::{Delivered, Forward};
use sealwire::chat::{ChatId, FrameHeader, HEADER_LEN};
use sealwire::crypto::ed25519::IdentityPublic;
use sealwire::crypto::hex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::codegen::tokio_stream::StreamExt;

/// The subject prefix; a chat's subject is this followed by its id in hex.
pub const SUBJECT_PREFIX: &str = "sealwire.chat.v1.";

/// Payload kind: a chat frame.
pub const KIND_FRAME: u8 = 0;
/// Payload kind: an identity joined the chat at the publishing node.
pub const KIND_JOIN: u8 = 1;
/// Payload kind: who are the chat's participants? (a request: every node that holds the chat
/// answers on the reply subject; see [`crate::membership`]).
pub const KIND_WHO: u8 = 2;

/// Payload kind: frames an app at the publishing node has for good.
pub const KIND_DELIVERED: u8 = 3;
/// Headers in one kind-3 message.
pub const MAX_NOTICES: usize = 256;

/// Publications waiting for the publisher task; beyond it frames are dropped and logged.
const OUT_QUEUE: usize = 8192;

/// The subject of `chat_id`.
pub fn subject(chat_id: &ChatId) -> String {
    format!("{SUBJECT_PREFIX}{}", hex::encode(chat_id.as_bytes()))
}

/// What the node's pump asks the mesh task to do, in order.
#[derive(Debug)]
pub enum MeshOut {
    /// Publish a frame for the other nodes.
    Frame(Forward),
    /// A local app joined `chat_id`: subscribe to it (first), then announce `identity`.
    Joined(ChatId, IdentityPublic),
    /// The chat expired here: drop its subscription.
    Expired(ChatId),
    /// Answer a membership question.
    Reply { subject: String, payload: Vec<u8> },
    /// Frames of one chat that one app here has for good (kind 3).
    Delivered(Vec<Delivered>),
}

/// Something that arrived from another node (or this one: NATS echoes).
#[derive(Debug)]
pub enum MeshIn {
    /// A frame `sender` sent in a chat held here.
    Frame {
        sender: IdentityPublic,
        frame: Vec<u8>,
    },
    /// `identity` joined `chat_id` at some node.
    Joined {
        chat_id: ChatId,
        identity: IdentityPublic,
    },
    /// A node asks for the participants of `chat_id` held here; answer on `reply`.
    Who { chat_id: ChatId, reply: String },
    /// Frames an app at some node has for good.
    Delivered(Vec<Delivered>),
}

/// The pump's handle on the mesh task.
#[derive(Clone)]
pub struct Mesh {
    out: mpsc::Sender<MeshOut>,
}

impl Mesh {
    /// Starts the mesh task on `client`; what arrives goes to `deliver`.
    pub fn start(client: async_nats::Client, deliver: Arc<dyn Fn(MeshIn) + Send + Sync>) -> Mesh {
        let (out, rx) = mpsc::channel(OUT_QUEUE);
        tokio::spawn(run(client, rx, deliver));
        Mesh { out }
    }

    /// Free places in the publication queue.
    pub fn room(&self) -> usize {
        self.out.capacity()
    }

    /// Queues `msg` for the mesh task without waiting (called under the hub's lock).
    pub fn send(&self, msg: MeshOut) {
        if let Err(e) = self.out.try_send(msg) {
            tracing::warn!(error = %e, "mesh queue full or closed: a publication is dropped");
        }
    }
}

fn payload(kind: u8, identity: &IdentityPublic, frame: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(33 + frame.len());
    p.push(kind);
    p.extend_from_slice(identity.as_bytes());
    p.extend_from_slice(frame);
    p
}

/// Parses a payload; `None` for anything malformed (logged by the caller).
pub fn parse(chat_id: ChatId, payload: &[u8]) -> Option<MeshIn> {
    let (&kind, rest) = payload.split_first()?;
    let (identity, frame) = rest.split_at_checked(32)?;
    let identity = IdentityPublic::from_bytes(identity.try_into().ok()?)?;
    match kind {
        KIND_FRAME => Some(MeshIn::Frame {
            sender: identity,
            frame: frame.to_vec(),
        }),
        KIND_JOIN if frame.is_empty() => Some(MeshIn::Joined { chat_id, identity }),
        KIND_DELIVERED if !frame.is_empty() && frame.len() <= MAX_NOTICES * HEADER_LEN => {
            let mut notices = Vec::with_capacity(frame.len() / HEADER_LEN);
            for h in frame.chunks(HEADER_LEN) {
                let (header, rest) = FrameHeader::parse(h).ok()?;
                if !rest.is_empty() || header.chat_id != chat_id {
                    return None;
                }
                notices.push(Delivered {
                    recipient: identity,
                    header,
                });
            }
            Some(MeshIn::Delivered(notices))
        }
        _ => None,
    }
}

async fn run(
    client: async_nats::Client,
    mut rx: mpsc::Receiver<MeshOut>,
    deliver: Arc<dyn Fn(MeshIn) + Send + Sync>,
) {
    let mut subs: HashMap<ChatId, JoinHandle<()>> = HashMap::new();
    while let Some(msg) = rx.recv().await {
        let result = match msg {
            MeshOut::Frame(f) => {
                let p = payload(KIND_FRAME, &f.sender, &f.frame);
                client
                    .publish(subject(&f.chat_id), p.into())
                    .await
                    .map_err(|e| e.to_string())
            }
            MeshOut::Joined(chat_id, identity) => {
                if let std::collections::hash_map::Entry::Vacant(slot) = subs.entry(chat_id) {
                    match client.subscribe(subject(&chat_id)).await {
                        Ok(sub) => {
                            slot.insert(tokio::spawn(read(chat_id, sub, deliver.clone())));
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot subscribe"),
                    }
                }
                // The subscription went out first on this connection, so the server has it
                // before anyone can answer the announcement.
                let p = payload(KIND_JOIN, &identity, &[]);
                client
                    .publish(subject(&chat_id), p.into())
                    .await
                    .map_err(|e| e.to_string())
            }
            MeshOut::Delivered(notices) => publish_delivered(&client, &notices).await,
            MeshOut::Reply { subject, payload } => client
                .publish(subject, payload.into())
                .await
                .map_err(|e| e.to_string()),
            MeshOut::Expired(chat_id) => {
                // Dropping the subscriber (with its task) unsubscribes.
                if let Some(task) = subs.remove(&chat_id) {
                    task.abort();
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "mesh publish failed");
        }
    }
}

/// Kind-3 messages for notices of one chat and recipient, [`MAX_NOTICES`] headers each.
async fn publish_delivered(
    client: &async_nats::Client,
    notices: &[Delivered],
) -> Result<(), String> {
    for part in notices.chunks(MAX_NOTICES) {
        let Some(first) = part.first() else { break };
        let mut headers = Vec::with_capacity(part.len() * HEADER_LEN);
        for d in part {
            headers.extend_from_slice(&d.header.encode());
        }
        let p = payload(KIND_DELIVERED, &first.recipient, &headers);
        client
            .publish(subject(&first.header.chat_id), p.into())
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn read(
    chat_id: ChatId,
    mut sub: async_nats::Subscriber,
    deliver: Arc<dyn Fn(MeshIn) + Send + Sync>,
) {
    while let Some(msg) = sub.next().await {
        if msg.payload.first() == Some(&KIND_WHO) {
            if let Some(reply) = msg.reply {
                deliver(MeshIn::Who {
                    chat_id,
                    reply: reply.to_string(),
                });
            }
            continue;
        }
        match parse(chat_id, &msg.payload) {
            Some(m) => deliver(m),
            None => tracing::debug!(subject = %msg.subject, "malformed mesh message dropped"),
        }
    }
}
