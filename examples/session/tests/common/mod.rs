//! What the integration tests of `ws_node`'s driver share: a node served on a loopback port
//! with the test key, and a clean stop.
#![allow(dead_code)] // each test binary uses a part

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::session::{Address, Node, NodeConfig, PublicKey, SecretKey};
use sealwire::time::Clock;
use session_examples::model::{EchoModel, Model};
use session_examples::node_driver::{serve, Service};
use tokio::sync::oneshot;

/// The longest any single test step may take.
pub const LIMIT: Duration = Duration::from_secs(20);

/// A node being served; `extra` is what a test file keeps beside it (a stand-in server, ...).
pub struct Running<X = ()> {
    pub addr: SocketAddr,
    pub public_key: PublicKey,
    pub address: Address,
    pub extra: X,
    stop: oneshot::Sender<()>,
    served: tokio::task::JoinHandle<bool>,
}

/// The tests' service: `model`, 16 streams, no end gap, default limits, no TLS, no hook.
pub fn service(model: Arc<dyn Model>) -> Service {
    Service {
        allow: None,
        model,
        max_streams: 16,
        clock: Clock::new(),
        replay_file: None,
        end_gap: Duration::ZERO,
        limits: Default::default(),
        tls: None,
        admission: None,
    }
}

/// The echo model answering at once.
pub fn echo() -> Arc<dyn Model> {
    Arc::new(EchoModel {
        delay: Duration::ZERO,
    })
}

/// Serves `service` with the test node key (0x42…) on a free loopback port.
pub async fn start<X>(service: Service, extra: X) -> Running<X> {
    let key = SecretKey::from_bytes(&[0x42; 32]).unwrap();
    let node = Node::new(key, NodeConfig::default(), ChaCha20Rng::from_seed([1; 32])).unwrap();
    let (public_key, address) = (node.public_key(), node.address());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(serve(listener, node, service, async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        public_key,
        address,
        extra,
        stop,
        served,
    }
}

/// Stops the node and checks its task ended cleanly.
pub async fn stop<X>(node: Running<X>) {
    node.stop.send(()).unwrap();
    let clean = tokio::time::timeout(LIMIT, node.served).await.unwrap();
    assert!(clean.unwrap(), "the node task failed");
}
