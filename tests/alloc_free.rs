//! The hot paths allocate nothing (DESIGN §2): tunnel encapsulate/decapsulate into caller
//! buffers. Heap allocations are counted per thread by a counting global allocator. (The
//! session's and the chat's tests moved to their `_rules.rs` files.)

use allocation_counter::measure;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::time::{Duration, Instant};

#[test]
fn tunnel_encapsulate_and_decapsulate_allocate_nothing() {
    use sealwire::crypto::x25519::StaticSecret;
    use sealwire::tunnel::{Action, Device, DeviceConfig, PeerConfig, WallTime};

    let (ka, kb) = (
        StaticSecret::from_bytes([1; 32]),
        StaticSecret::from_bytes([2; 32]),
    );
    let (pa, pb) = (ka.public_key(), kb.public_key());
    let mut a = Device::new(DeviceConfig::new(ka), ChaCha20Rng::seed_from_u64(1));
    let mut b = Device::new(DeviceConfig::new(kb), ChaCha20Rng::seed_from_u64(2));
    let addr_a = "192.0.2.1:51820".parse().unwrap();
    let addr_b = "192.0.2.2:51820".parse().unwrap();
    let mut peer_b = PeerConfig::new(pb);
    peer_b.endpoint = Some(addr_b);
    peer_b.allowed_ips.push("10.0.0.2/32".parse().unwrap());
    a.add_peer(Instant::ZERO, peer_b).unwrap();
    let mut peer_a = PeerConfig::new(pa);
    peer_a.endpoint = Some(addr_a);
    peer_a.allowed_ips.push("10.0.0.1/32".parse().unwrap());
    b.add_peer(Instant::ZERO, peer_a).unwrap();
    let now = Instant::from_secs(1);
    a.set_wall_clock(now, WallTime::from_unix(1_700_000_000, 0));
    b.set_wall_clock(now, WallTime::from_unix(1_700_000_000, 0));

    // A 1420-byte IPv4 packet 10.0.0.1 -> 10.0.0.2.
    let mut ip = vec![0u8; 1420];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&1420u16.to_be_bytes());
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let (mut buf, mut out) = (vec![0u8; 2048], vec![0u8; 2048]);

    // Handshake (allocations allowed here: sessions are created).
    let Ok(Action::WriteToNetwork { len, .. }) = a.encapsulate(now, &ip, &mut buf) else {
        panic!("initiation")
    };
    let Ok(Action::WriteToNetwork { len, .. }) = b.decapsulate(now, addr_a, &buf[..len], &mut out)
    else {
        panic!("response")
    };
    let _ = a.decapsulate(now, addr_b, &out[..len], &mut buf).unwrap();
    let staged = a.poll_transmit().expect("staged packet").payload.to_vec();
    let _ = b.decapsulate(now, addr_a, &staged, &mut out).unwrap();
    while a.poll_event().is_some() {}
    while b.poll_event().is_some() {}

    let mut delivered = 0;
    let info = measure(|| {
        for i in 0..100u64 {
            let t = now + Duration::from_millis(i);
            let Ok(Action::WriteToNetwork { len, .. }) = a.encapsulate(t, &ip, &mut buf) else {
                panic!("data")
            };
            if let Ok(Action::WriteToTunnel { len, .. }) =
                b.decapsulate(t, addr_a, &buf[..len], &mut out)
            {
                delivered += usize::from(out[..len] == ip[..]);
            }
        }
    });
    assert_eq!(delivered, 100, "every packet arrives");
    assert_eq!(info.count_total, 0, "tunnel data path allocated: {info:?}");

    // The zero-copy variants: the packet is placed at buf[16..] and sealed there, and the
    // datagram is opened where it lies.
    let mut delivered = 0;
    let info = measure(|| {
        for i in 100..200u64 {
            let t = now + Duration::from_millis(i);
            buf[16..16 + ip.len()].copy_from_slice(&ip);
            let Ok(Action::WriteToNetwork { len, .. }) =
                a.encapsulate_in_place(t, &mut buf, ip.len())
            else {
                panic!("data")
            };
            if let Ok(Action::WriteToTunnel { len, .. }) =
                b.decapsulate_in_place(t, addr_a, &mut buf, len)
            {
                delivered += usize::from(buf[16..16 + len] == ip[..]);
            }
        }
    });
    assert_eq!(delivered, 100, "every packet arrives");
    assert_eq!(
        info.count_total, 0,
        "in-place data path allocated: {info:?}"
    );
}
