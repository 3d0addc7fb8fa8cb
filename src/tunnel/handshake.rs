//! Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s with the WireGuard construction (paper §5.4).
//!
//! The functions here build and consume messages 1 and 2 and derive the transport keys. They
//! hold no peer tables: the device looks the peer up by the decrypted static key and passes
//! in the precomputed static-static DH. Nothing is written into any state until the whole
//! message has verified, so a bad message leaves everything as it was.

use super::error::DropReason;
use super::wire::{self, init, resp, INITIATION_LEN, RESPONSE_LEN};
use crate::crypto::aead::{chacha_open_in_place, chacha_seal_in_place, TAG_LEN};
use crate::crypto::blake2s::{hash, kdf};
use crate::crypto::x25519::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Noise protocol name, hashed into the initial chaining key.
pub(crate) const CONSTRUCTION: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
/// WireGuard identifier, mixed into the initial hash.
pub(crate) const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
/// Label of the mac1 key: `HASH(LABEL_MAC1 ‖ S_pub)`.
pub(crate) const LABEL_MAC1: &[u8] = b"mac1----";
/// Label of the cookie encryption key: `HASH(LABEL_COOKIE ‖ S_pub)`.
pub(crate) const LABEL_COOKIE: &[u8] = b"cookie--";

/// Length of a TAI64N timestamp.
pub(crate) const TAI64N_LEN: usize = 12;

/// A TAI64N timestamp as WireGuard sends it: big-endian `2^62 + 10 + unix seconds` followed
/// by big-endian nanoseconds. Byte order makes lexicographic order equal time order.
/// The base is the kernel's and wireguard-go's (`0x400000000000000a`); boringtun adds 37
/// instead of 10, which only matters to a peer that sees the same key move between them
/// (it rejects our initiations for 27 s).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Tai64N(pub(crate) [u8; TAI64N_LEN]);

impl Tai64N {
    pub(crate) fn from_unix(secs: u64, nanos: u32) -> Self {
        let mut b = [0u8; TAI64N_LEN];
        b[..8].copy_from_slice(&0x4000_0000_0000_000au64.wrapping_add(secs).to_be_bytes());
        b[8..].copy_from_slice(&nanos.to_be_bytes());
        Tai64N(b)
    }
}

fn initial_chain_key() -> [u8; 32] {
    hash(&[CONSTRUCTION])
}

/// `HASH(HASH(CK0 ‖ IDENTIFIER) ‖ responder_static)`: the initial transcript hash.
fn initial_hash(responder: &PublicKey) -> [u8; 32] {
    let ck = initial_chain_key();
    let h0 = hash(&[&ck, IDENTIFIER]);
    hash(&[&h0, responder.as_bytes()])
}

/// Our own static identity with the keys derived from it.
// Fuzz targets clone an established device per input (cargo-fuzz builds with `--cfg
// fuzzing`); no other build can copy these keys.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct Identity {
    pub(crate) secret: StaticSecret,
    pub(crate) public: PublicKey,
    /// `HASH(LABEL_MAC1 ‖ our public)`: checks mac1 of messages sent to us.
    pub(crate) mac1_key: [u8; 32],
    /// `HASH(LABEL_COOKIE ‖ our public)`: encrypts cookie replies we send.
    pub(crate) cookie_key: [u8; 32],
    /// Initial hash for initiations addressed to us.
    initial_hash: [u8; 32],
    /// `HASH(CONSTRUCTION)`, the same for every handshake: hashed once here, not per message.
    initial_ck: [u8; 32],
}

impl Identity {
    pub(crate) fn new(secret: StaticSecret) -> Self {
        let public = secret.public_key();
        Identity {
            mac1_key: hash(&[LABEL_MAC1, public.as_bytes()]),
            cookie_key: hash(&[LABEL_COOKIE, public.as_bytes()]),
            initial_hash: initial_hash(&public),
            initial_ck: initial_chain_key(),
            secret,
            public,
        }
    }
}

/// What we hold about a peer for the handshake: its key, the PSK and precomputed values.
#[derive(Zeroize, ZeroizeOnDrop)]
// Fuzz targets clone an established device per input (cargo-fuzz builds with `--cfg
// fuzzing`); no other build can copy these keys.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct PeerKeys {
    #[zeroize(skip)]
    pub(crate) remote: PublicKey,
    pub(crate) psk: [u8; 32],
    /// `DH(s_local, S_remote)`, computed once per peer (the expensive part of a handshake).
    /// `None` when the remote key is a low-order point (such a peer can never handshake).
    pub(crate) ss: Option<[u8; 32]>,
    /// `HASH(LABEL_MAC1 ‖ remote)`: mac1 key of messages we send to this peer.
    pub(crate) mac1_key: [u8; 32],
    /// `HASH(LABEL_COOKIE ‖ remote)`: decrypts cookie replies from this peer.
    pub(crate) cookie_key: [u8; 32],
    initial_hash: [u8; 32],
}

impl PeerKeys {
    pub(crate) fn new(identity: &Identity, remote: PublicKey, psk: Option<[u8; 32]>) -> Self {
        PeerKeys {
            psk: psk.unwrap_or([0u8; 32]),
            ss: identity.secret.dh(&remote).map(|z| *z),
            mac1_key: hash(&[LABEL_MAC1, remote.as_bytes()]),
            cookie_key: hash(&[LABEL_COOKIE, remote.as_bytes()]),
            initial_hash: initial_hash(&remote),
            remote,
        }
    }
}

/// Initiator state between sending message 1 and receiving message 2.
#[derive(Zeroize, ZeroizeOnDrop)]
// Fuzz targets clone an established device per input (cargo-fuzz builds with `--cfg
// fuzzing`); no other build can copy these keys.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct InitiatorState {
    pub(crate) local_index: u32,
    ck: [u8; 32],
    h: [u8; 32],
    ephemeral: [u8; 32],
}

impl core::fmt::Debug for InitiatorState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "InitiatorState {{ local_index: {}, .. }}",
            self.local_index
        )
    }
}

/// Transport keys derived at the end of a handshake.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct DerivedKeys {
    pub(crate) send: [u8; 32],
    pub(crate) recv: [u8; 32],
}

fn mix(ck: &mut [u8; 32], input: &[u8]) {
    let [c] = kdf::<1>(ck, input);
    *ck = *c;
}

fn mix_key(ck: &mut [u8; 32], input: &[u8]) -> Zeroizing<[u8; 32]> {
    let [c, k] = kdf::<2>(ck, input);
    *ck = *c;
    k
}

fn mix_hash(h: &mut [u8; 32], data: &[u8]) {
    *h = hash(&[h, data]);
}

/// Builds message 1 (without macs) into `msg[..116]` and returns the initiator state.
/// `None` if a DH result is zero (low-order peer key).
pub(crate) fn create_initiation(
    identity: &Identity,
    peer: &PeerKeys,
    local_index: u32,
    ephemeral: StaticSecret,
    timestamp: Tai64N,
    msg: &mut [u8; INITIATION_LEN],
) -> Option<InitiatorState> {
    let ss = peer.ss.as_ref()?;
    let mut ck = Zeroizing::new(identity.initial_ck);
    let mut h = peer.initial_hash;
    let e_pub = ephemeral.public_key();
    msg.fill(0);
    msg[..4].copy_from_slice(&wire::MSG_INITIATION.to_le_bytes());
    msg[init::SENDER..init::SENDER + 4].copy_from_slice(&local_index.to_le_bytes());
    msg[init::EPHEMERAL..init::EPHEMERAL + 32].copy_from_slice(e_pub.as_bytes());
    mix(&mut ck, e_pub.as_bytes());
    mix_hash(&mut h, e_pub.as_bytes());
    let es = ephemeral.dh(&peer.remote)?;
    let k = mix_key(&mut ck, &*es);
    {
        let field = &mut msg[init::STATIC..init::STATIC + 48];
        let (pt, tag) = field.split_at_mut(32);
        pt.copy_from_slice(identity.public.as_bytes());
        tag.copy_from_slice(&chacha_seal_in_place(&k, &[0u8; 12], &h, pt));
    }
    mix_hash(&mut h, &msg[init::STATIC..init::STATIC + 48]);
    let k = mix_key(&mut ck, ss);
    {
        let field = &mut msg[init::TIMESTAMP..init::TIMESTAMP + 28];
        let (pt, tag) = field.split_at_mut(TAI64N_LEN);
        pt.copy_from_slice(&timestamp.0);
        tag.copy_from_slice(&chacha_seal_in_place(&k, &[0u8; 12], &h, pt));
    }
    mix_hash(&mut h, &msg[init::TIMESTAMP..init::TIMESTAMP + 28]);
    Some(InitiatorState {
        local_index,
        ck: *ck,
        h,
        ephemeral: ephemeral.to_bytes(),
    })
}

/// Result of the first half of consuming message 1: the initiator's static key, found by
/// decryption, before we know which peer it is.
pub(crate) struct HalfOpenInitiation {
    pub(crate) remote_static: PublicKey,
    remote_index: u32,
    remote_ephemeral: PublicKey,
    ck: Zeroizing<[u8; 32]>,
    h: [u8; 32],
}

/// Decrypts the static key of message 1. mac1 must already have been checked.
pub(crate) fn open_initiation_static(
    identity: &Identity,
    msg: &[u8; INITIATION_LEN],
) -> Result<HalfOpenInitiation, DropReason> {
    let mut ck = Zeroizing::new(identity.initial_ck);
    let mut h = identity.initial_hash;
    let mut e = [0u8; 32];
    e.copy_from_slice(&msg[init::EPHEMERAL..init::EPHEMERAL + 32]);
    let remote_ephemeral = PublicKey::from_bytes(e);
    mix(&mut ck, &e);
    mix_hash(&mut h, &e);
    let es = identity
        .secret
        .dh(&remote_ephemeral)
        .ok_or(DropReason::HandshakeDecrypt)?;
    let k = mix_key(&mut ck, &*es);
    let mut stat = [0u8; 32];
    stat.copy_from_slice(&msg[init::STATIC..init::STATIC + 32]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&msg[init::STATIC + 32..init::STATIC + 48]);
    chacha_open_in_place(&k, &[0u8; 12], &h, &mut stat, &tag)
        .map_err(|_| DropReason::HandshakeDecrypt)?;
    mix_hash(&mut h, &msg[init::STATIC..init::STATIC + 48]);
    Ok(HalfOpenInitiation {
        remote_static: PublicKey::from_bytes(stat),
        remote_index: wire::u32_at(msg, init::SENDER),
        remote_ephemeral,
        ck,
        h,
    })
}

/// A fully verified message 1, ready for a response.
pub(crate) struct OpenedInitiation {
    pub(crate) timestamp: Tai64N,
    pub(crate) remote_index: u32,
    remote_ephemeral: PublicKey,
    ck: Zeroizing<[u8; 32]>,
    h: [u8; 32],
}

/// Decrypts the timestamp of message 1 with the peer's precomputed static-static DH.
pub(crate) fn open_initiation_timestamp(
    half: HalfOpenInitiation,
    peer: &PeerKeys,
    msg: &[u8; INITIATION_LEN],
) -> Result<OpenedInitiation, DropReason> {
    let HalfOpenInitiation {
        remote_index,
        remote_ephemeral,
        mut ck,
        mut h,
        ..
    } = half;
    let ss = peer.ss.as_ref().ok_or(DropReason::HandshakeDecrypt)?;
    let k = mix_key(&mut ck, ss);
    let mut ts = [0u8; TAI64N_LEN];
    ts.copy_from_slice(&msg[init::TIMESTAMP..init::TIMESTAMP + TAI64N_LEN]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&msg[init::TIMESTAMP + TAI64N_LEN..init::TIMESTAMP + 28]);
    chacha_open_in_place(&k, &[0u8; 12], &h, &mut ts, &tag)
        .map_err(|_| DropReason::HandshakeDecrypt)?;
    mix_hash(&mut h, &msg[init::TIMESTAMP..init::TIMESTAMP + 28]);
    Ok(OpenedInitiation {
        timestamp: Tai64N(ts),
        remote_index,
        remote_ephemeral,
        ck,
        h,
    })
}

/// Builds message 2 (without macs) for a verified initiation; returns the responder's keys
/// (`send`, `recv`).
pub(crate) fn create_response(
    opened: &OpenedInitiation,
    peer: &PeerKeys,
    local_index: u32,
    ephemeral: StaticSecret,
    msg: &mut [u8; RESPONSE_LEN],
) -> Option<DerivedKeys> {
    let mut ck = Zeroizing::new(*opened.ck);
    let mut h = opened.h;
    let e_pub = ephemeral.public_key();
    msg.fill(0);
    msg[..4].copy_from_slice(&wire::MSG_RESPONSE.to_le_bytes());
    msg[resp::SENDER..resp::SENDER + 4].copy_from_slice(&local_index.to_le_bytes());
    msg[resp::RECEIVER..resp::RECEIVER + 4].copy_from_slice(&opened.remote_index.to_le_bytes());
    msg[resp::EPHEMERAL..resp::EPHEMERAL + 32].copy_from_slice(e_pub.as_bytes());
    mix(&mut ck, e_pub.as_bytes());
    mix_hash(&mut h, e_pub.as_bytes());
    mix(&mut ck, &*ephemeral.dh(&opened.remote_ephemeral)?);
    mix(&mut ck, &*ephemeral.dh(&peer.remote)?);
    let [c, tau, k] = kdf::<3>(&*ck, &peer.psk);
    *ck = *c;
    mix_hash(&mut h, &*tau);
    let tag = chacha_seal_in_place(&k, &[0u8; 12], &h, &mut []);
    msg[resp::EMPTY..resp::EMPTY + 16].copy_from_slice(&tag);
    let [t1, t2] = kdf::<2>(&*ck, &[]);
    Some(DerivedKeys {
        send: *t2,
        recv: *t1,
    })
}

/// Consumes message 2 for our pending initiation; returns the initiator's keys.
pub(crate) fn consume_response(
    identity: &Identity,
    peer: &PeerKeys,
    state: &InitiatorState,
    msg: &[u8; RESPONSE_LEN],
) -> Result<DerivedKeys, DropReason> {
    let mut ck = Zeroizing::new(state.ck);
    let mut h = state.h;
    let mut e = [0u8; 32];
    e.copy_from_slice(&msg[resp::EPHEMERAL..resp::EPHEMERAL + 32]);
    let e_r = PublicKey::from_bytes(e);
    mix(&mut ck, &e);
    mix_hash(&mut h, &e);
    let eph = StaticSecret::from_bytes(state.ephemeral);
    let ee = eph.dh(&e_r).ok_or(DropReason::HandshakeDecrypt)?;
    mix(&mut ck, &*ee);
    let se = identity
        .secret
        .dh(&e_r)
        .ok_or(DropReason::HandshakeDecrypt)?;
    mix(&mut ck, &*se);
    let [c, tau, k] = kdf::<3>(&*ck, &peer.psk);
    *ck = *c;
    mix_hash(&mut h, &*tau);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&msg[resp::EMPTY..resp::EMPTY + 16]);
    chacha_open_in_place(&k, &[0u8; 12], &h, &mut [], &tag)
        .map_err(|_| DropReason::HandshakeDecrypt)?;
    let [t1, t2] = kdf::<2>(&*ck, &[]);
    Ok(DerivedKeys {
        send: *t1,
        recv: *t2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tai64n_is_big_endian_with_wireguard_base() {
        let t = Tai64N::from_unix(0, 5);
        assert_eq!(t.0, [0x40, 0, 0, 0, 0, 0, 0, 0x0a, 0, 0, 0, 5]);
        assert!(Tai64N::from_unix(1, 0) > Tai64N::from_unix(0, 999_999_999));
    }
}
