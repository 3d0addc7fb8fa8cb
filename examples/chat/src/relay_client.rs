//! The app side of the relay's `RouteChat` stream: connect, prove the identity (the proof is the
//! library's, `sealwire::chat::relay::prove_registration`), then send and receive
//! `Uplink`/`Downlink` messages. Shared by `grpc_chat_app` and `grpc_chat_probe`; it knows the
//! relay protocol only, nothing of the chat protocol.

use std::sync::atomic::{AtomicU64, Ordering};

use sealwire::chat::relay::prove_registration;
use sealwire::crypto::ed25519::IdentityKey;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic::{Status, Streaming};

use crate::proto::chat_relay_client::ChatRelayClient;
use crate::proto::{downlink, uplink, Downlink, Proof, Register, StartChat, Uplink};

/// Uplink messages buffered before `send` waits for the transport.
const UPLINK_QUEUE: usize = 64;

/// Largest message the client accepts from the node (frames are far smaller).
const MAX_DOWNLINK: usize = 1 << 20;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One open `RouteChat` stream.
pub struct RelayStream {
    tx: mpsc::Sender<Uplink>,
    rx: Streaming<Downlink>,
    /// Uplink messages sent so far: the next one's index (the node's `uplink_index`).
    sent: AtomicU64,
}

/// How a registration went: the proof the app sends can be replaced to test the node.
pub enum ProofMode {
    /// Sign the challenge with the identity key.
    Honest,
    /// Send 64 zero bytes instead of a signature (tests only).
    Forged,
}

impl RelayStream {
    /// Connects to `node` (e.g. `http://127.0.0.1:50051`) and opens the stream, unregistered.
    pub async fn open(node: &str) -> Result<Self, BoxError> {
        Self::open_with(node, None).await
    }

    /// [`RelayStream::open`], trusting the PEM certificate(s) `ca` for an `https://` node
    /// (TLS with rustls; without `ca` the system's roots are not consulted, so `https://`
    /// needs it).
    pub async fn open_with(node: &str, ca: Option<&[u8]>) -> Result<Self, BoxError> {
        let mut endpoint = Endpoint::from_shared(node.to_string())?;
        if let Some(ca) = ca {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))?;
        }
        let channel = endpoint.connect().await?;
        let mut client = ChatRelayClient::new(channel).max_decoding_message_size(MAX_DOWNLINK);
        let (tx, rx) = mpsc::channel(UPLINK_QUEUE);
        let rx = client
            .route_chat(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(RelayStream {
            tx,
            rx,
            sent: AtomicU64::new(0),
        })
    }

    /// Connects and registers `identity`; returns the stream and how many frames the node had
    /// queued for this identity (they follow as `Downlink.frame`).
    pub async fn connect(
        node: &str,
        identity: &IdentityKey,
        app_id: &str,
        mode: ProofMode,
    ) -> Result<(Self, u32), BoxError> {
        Self::connect_with(node, None, identity, app_id, mode, false).await
    }

    /// [`RelayStream::connect`] over TLS trusting `ca` (see [`RelayStream::open_with`]); with
    /// `acks`, the app answers the frames it kept with `Ack` and the node keeps each one until
    /// then (delivering it again on the next stream otherwise).
    pub async fn connect_with(
        node: &str,
        ca: Option<&[u8]>,
        identity: &IdentityKey,
        app_id: &str,
        mode: ProofMode,
        acks: bool,
    ) -> Result<(Self, u32), BoxError> {
        let mut stream = Self::open_with(node, ca).await?;
        let public = *identity.public().as_bytes();
        stream
            .send(uplink::Msg::Register(Register {
                identity: public.to_vec(),
                app_id: app_id.to_string(),
                acks,
            }))
            .await?;
        let nonce = match stream.next().await? {
            Some(downlink::Msg::Challenge(c)) => c.nonce,
            other => return Err(format!("expected a challenge, got {other:?}").into()),
        };
        let signature = match mode {
            ProofMode::Honest => {
                let nonce: [u8; 32] = nonce
                    .as_slice()
                    .try_into()
                    .map_err(|_| "the node's challenge is not 32 bytes")?;
                prove_registration(identity, &nonce).to_vec()
            }
            ProofMode::Forged => vec![0u8; 64],
        };
        stream.send(uplink::Msg::Proof(Proof { signature })).await?;
        match stream.next().await? {
            Some(downlink::Msg::Registered(r)) => Ok((stream, r.queued_frames)),
            other => Err(format!("expected `registered`, got {other:?}").into()),
        }
    }

    /// Queues one uplink message; returns its index on the stream (`register` is 0), which
    /// the node's `stored` and `rejected` answers name.
    pub async fn send(&self, msg: uplink::Msg) -> Result<u64, BoxError> {
        self.tx
            .send(Uplink { msg: Some(msg) })
            .await
            .map_err(|_| BoxError::from("the stream to the node is closed"))?;
        Ok(self.sent.fetch_add(1, Ordering::Relaxed))
    }

    /// Joins a chat, optionally pinning the other participant's identity.
    pub async fn start_chat(
        &self,
        chat_id: [u8; 16],
        pin: Option<[u8; 32]>,
    ) -> Result<(), BoxError> {
        self.send(uplink::Msg::Start(StartChat {
            chat_id: chat_id.to_vec(),
            peer_identity: pin.map(|p| p.to_vec()).unwrap_or_default(),
        }))
        .await
        .map(drop)
    }

    /// Sends one chat frame; returns its uplink index (see [`RelayStream::send`]).
    pub async fn send_frame(&self, frame: Vec<u8>) -> Result<u64, BoxError> {
        self.send(uplink::Msg::Frame(frame)).await
    }

    /// Ends the uplink and waits (at most `grace`) for the node to end the stream, so that
    /// frames queued just before (a close frame) reach the node before the process exits.
    pub async fn finish(self, grace: std::time::Duration) {
        let RelayStream { tx, mut rx, .. } = self;
        drop(tx);
        let _ = tokio::time::timeout(grace, async {
            while let Ok(Some(_)) = rx.message().await {}
        })
        .await;
    }

    /// The next downlink message; `Ok(None)` when the node closed the stream cleanly, `Err`
    /// with the node's gRPC status when it ended the stream.
    pub async fn next(&mut self) -> Result<Option<downlink::Msg>, Status> {
        loop {
            match self.rx.message().await? {
                None => return Ok(None),
                Some(Downlink { msg: None }) => continue,
                Some(Downlink { msg: Some(m) }) => return Ok(Some(m)),
            }
        }
    }
}

/// Why a stream ended, in words: what the gRPC code means for the app, then the node's or
/// the transport's own message (`tonic::Status`'s `Display` adds empty details and metadata).
///
/// ```
/// use chat_examples::relay_client::describe_end;
/// use tonic::{Code, Status};
/// let s = Status::new(Code::Unknown, "h2 protocol error: error reading a body from connection");
/// assert_eq!(
///     describe_end(&s),
///     "the connection to the node broke (h2 protocol error: error reading a body from connection)"
/// );
/// assert_eq!(describe_end(&Status::new(Code::Unavailable, "")), "the node is unreachable");
/// ```
pub fn describe_end(status: &Status) -> String {
    use tonic::Code;
    let what = match status.code() {
        Code::Unavailable => "the node is unreachable",
        Code::Cancelled => "the stream was cancelled",
        Code::DeadlineExceeded => "the node did not answer in time",
        Code::ResourceExhausted => "the node is out of room for this app",
        Code::PermissionDenied | Code::Unauthenticated => "the node refused this app",
        Code::Unknown | Code::Internal => "the connection to the node broke",
        _ => "the node ended the stream",
    };
    match status.message() {
        "" => what.to_string(),
        message => format!("{what} ({message})"),
    }
}
