//! `Noise_XX_25519_ChaChaPoly_SHA256`, written from the Noise specification (rev. 34, §5 and
//! §7.5) over the crate's primitives. Only the XX pattern is needed, so the three messages are
//! spelled out instead of interpreting a pattern table.
//!
//! ```text
//! XX:
//!   -> e
//!   <- e, ee, s, es
//!   -> s, se
//! ```

use alloc::vec::Vec;
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::aead::{chacha_open_in_place, chacha_seal_in_place, TAG_LEN};
use crate::crypto::kdf::{hmac_sha256, sha256};
use crate::crypto::x25519::{PublicKey as X25519Public, StaticSecret as X25519Secret};

/// Length of an X25519 public key and of a shared secret.
pub(crate) const X25519_LEN: usize = 32;

/// The full protocol name; exactly 32 bytes, so it is used as `h` without hashing (§5.2).
pub(crate) const PROTOCOL_NAME: &[u8; 32] = b"Noise_XX_25519_ChaChaPoly_SHA256";

/// Handshake failed: a tag did not verify, a key was low order, or a message had the wrong size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NoiseError;

/// Noise's `HKDF(ck, ikm)` with two outputs (§4.3): HMAC-SHA256 based.
fn hkdf2(ck: &[u8; 32], ikm: &[u8]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let temp = hmac_sha256(ck, &[ikm]);
    let o1 = hmac_sha256(&temp[..], &[&[1u8]]);
    let o2 = hmac_sha256(&temp[..], &[&o1[..], &[2u8]]);
    (o1, o2)
}

/// ChaChaPoly nonce encoding (§12.3): 32 zero bits then the 64-bit counter little-endian.
fn nonce(n: u64) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[4..].copy_from_slice(&n.to_le_bytes());
    out
}

/// The CipherState of §5.1 (handshake use only: at most a handful of messages per key).
#[derive(Clone)]
struct CipherState {
    k: Option<Zeroizing<[u8; 32]>>,
    n: u64,
}

impl CipherState {
    fn encrypt_with_ad(&mut self, ad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(plaintext);
        if let Some(k) = &self.k {
            // `start` is the length `out` had before the plaintext was appended: in bounds.
            #[allow(clippy::indexing_slicing)]
            let tag = chacha_seal_in_place(k, &nonce(self.n), ad, &mut out[start..]);
            out.extend_from_slice(&tag);
            self.n = self.n.wrapping_add(1);
        }
    }

    fn decrypt_with_ad(&mut self, ad: &[u8], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>, NoiseError> {
        let Some(k) = &self.k else {
            return Ok(Zeroizing::new(ct.to_vec()));
        };
        let split = ct.len().checked_sub(TAG_LEN).ok_or(NoiseError)?;
        let (body, tag) = ct.split_at(split);
        let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| NoiseError)?;
        let mut buf = Zeroizing::new(body.to_vec());
        chacha_open_in_place(k, &nonce(self.n), ad, &mut buf, tag).map_err(|_| NoiseError)?;
        self.n = self.n.wrapping_add(1);
        Ok(buf)
    }

    fn overhead(&self) -> usize {
        if self.k.is_some() {
            TAG_LEN
        } else {
            0
        }
    }
}

/// The SymmetricState of §5.2.
#[derive(Clone)]
struct SymmetricState {
    ck: Zeroizing<[u8; 32]>,
    h: [u8; 32],
    cs: CipherState,
}

impl SymmetricState {
    fn new(prologue: &[u8]) -> Self {
        let mut s = SymmetricState {
            ck: Zeroizing::new(*PROTOCOL_NAME),
            h: *PROTOCOL_NAME,
            cs: CipherState { k: None, n: 0 },
        };
        s.mix_hash(prologue);
        s
    }

    fn mix_hash(&mut self, data: &[u8]) {
        self.h = sha256(&[&self.h, data]);
    }

    fn mix_key(&mut self, ikm: &[u8]) {
        let (ck, k) = hkdf2(&self.ck, ikm);
        self.ck = ck;
        self.cs = CipherState { k: Some(k), n: 0 };
    }

    fn encrypt_and_hash(&mut self, plaintext: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let h = self.h;
        self.cs.encrypt_with_ad(&h, plaintext, out);
        let ct = out.get(start..).unwrap_or_default();
        self.h = sha256(&[&h, ct]);
    }

    fn decrypt_and_hash(&mut self, ct: &[u8]) -> Result<Zeroizing<Vec<u8>>, NoiseError> {
        let h = self.h;
        let pt = self.cs.decrypt_with_ad(&h, ct)?;
        self.mix_hash(ct);
        Ok(pt)
    }

    fn split(&self) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
        hkdf2(&self.ck, &[])
    }
}

/// Which side of the XX pattern this state plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Initiator,
    Responder,
}

/// Keys and transcript hash produced by a completed handshake.
pub(crate) struct HandshakeOutput {
    /// Handshake hash `h` (channel binding).
    pub(crate) handshake_hash: [u8; 32],
    /// First `Split()` output: the initiator→responder chain key.
    pub(crate) initiator_to_responder: Zeroizing<[u8; 32]>,
    /// Second `Split()` output: the responder→initiator chain key.
    pub(crate) responder_to_initiator: Zeroizing<[u8; 32]>,
}

/// An XX handshake in progress. Each `write_*`/`read_*` checks that it is that message's turn.
/// `Clone` lets the machine try a message on a copy and keep the original if it fails.
#[derive(Clone)]
pub(crate) struct Handshake {
    role: Role,
    ss: SymmetricState,
    s: X25519Secret,
    e: X25519Secret,
    /// Public halves, computed once (each is a scalar multiplication).
    s_pub: [u8; X25519_LEN],
    e_pub: [u8; X25519_LEN],
    re: Option<[u8; X25519_LEN]>,
    rs: Option<[u8; X25519_LEN]>,
    /// Number of messages processed so far (0..=3).
    step: u8,
}

/// Size of message 1 with an empty payload.
pub(crate) const MSG1_LEN: usize = X25519_LEN;

impl Handshake {
    /// Starts a handshake with static key `s`, ephemeral key `e` and `prologue`.
    pub(crate) fn new(role: Role, prologue: &[u8], s: X25519Secret, e: X25519Secret) -> Self {
        Handshake {
            role,
            ss: SymmetricState::new(prologue),
            s_pub: *s.public_key().as_bytes(),
            e_pub: *e.public_key().as_bytes(),
            s,
            e,
            re: None,
            rs: None,
            step: 0,
        }
    }

    /// Our Noise static public key.
    pub(crate) fn local_static(&self) -> [u8; 32] {
        self.s_pub
    }

    /// Our ephemeral public key (used by the rekey tie-break).
    pub(crate) fn local_ephemeral(&self) -> [u8; 32] {
        self.e_pub
    }

    /// The peer's ephemeral public key, once received.
    pub(crate) fn remote_ephemeral(&self) -> Option<[u8; 32]> {
        self.re
    }

    pub(crate) fn role(&self) -> Role {
        self.role
    }

    fn dh(
        &self,
        local: &X25519Secret,
        remote: Option<&[u8; 32]>,
    ) -> Result<Zeroizing<[u8; 32]>, NoiseError> {
        local
            .dh(&X25519Public::from_bytes(*remote.ok_or(NoiseError)?))
            .ok_or(NoiseError)
    }

    /// `-> e` (empty payload).
    pub(crate) fn write_msg1(&mut self) -> Result<Vec<u8>, NoiseError> {
        if self.role != Role::Initiator || self.step != 0 {
            return Err(NoiseError);
        }
        let e = self.e_pub;
        self.ss.mix_hash(&e);
        let mut out = Vec::with_capacity(MSG1_LEN);
        out.extend_from_slice(&e);
        self.ss.encrypt_and_hash(&[], &mut out);
        self.step = 1;
        Ok(out)
    }

    /// Reads `-> e`; the payload must be empty.
    pub(crate) fn read_msg1(&mut self, msg: &[u8]) -> Result<(), NoiseError> {
        if self.role != Role::Responder || self.step != 0 || msg.len() != MSG1_LEN {
            return Err(NoiseError);
        }
        let (re, rest) = msg.split_at_checked(X25519_LEN).ok_or(NoiseError)?;
        let re: [u8; 32] = re.try_into().map_err(|_| NoiseError)?;
        self.ss.mix_hash(&re);
        self.re = Some(re);
        let payload = self.ss.decrypt_and_hash(rest)?;
        if !payload.is_empty() {
            return Err(NoiseError);
        }
        self.step = 1;
        Ok(())
    }

    /// `<- e, ee, s, es` with `payload`.
    pub(crate) fn write_msg2(&mut self, payload: &[u8]) -> Result<Vec<u8>, NoiseError> {
        if self.role != Role::Responder || self.step != 1 {
            return Err(NoiseError);
        }
        let mut out =
            Vec::with_capacity(payload.len().saturating_add(2 * X25519_LEN + 2 * TAG_LEN));
        let e = self.e_pub;
        self.ss.mix_hash(&e);
        out.extend_from_slice(&e);
        let ee = self.dh(&self.e, self.re.as_ref())?;
        self.ss.mix_key(&ee[..]);
        // `s, es`: es for the responder is DH(s, re).
        self.write_static_and_payload(payload, &mut out)?;
        self.step = 2;
        Ok(out)
    }

    /// The tail both signed messages share: our encrypted static key `s`, then the DH of it
    /// with the peer's ephemeral (`es` for the responder writing message 2, `se` for the
    /// initiator writing message 3), then the encrypted payload.
    fn write_static_and_payload(
        &mut self,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), NoiseError> {
        let s = self.s_pub;
        self.ss.encrypt_and_hash(&s, out);
        let dh = self.dh(&self.s, self.re.as_ref())?;
        self.ss.mix_key(&dh[..]);
        self.ss.encrypt_and_hash(payload, out);
        Ok(())
    }

    /// Reads `<- e, ee, s, es`; returns the decrypted payload.
    pub(crate) fn read_msg2(&mut self, msg: &[u8]) -> Result<Zeroizing<Vec<u8>>, NoiseError> {
        if self.role != Role::Initiator || self.step != 1 {
            return Err(NoiseError);
        }
        let (re, rest) = msg.split_at_checked(X25519_LEN).ok_or(NoiseError)?;
        let re: [u8; 32] = re.try_into().map_err(|_| NoiseError)?;
        self.ss.mix_hash(&re);
        self.re = Some(re);
        let ee = self.dh(&self.e, self.re.as_ref())?;
        self.ss.mix_key(&ee[..]);
        // `s, es`: es for the initiator is DH(e, rs).
        let payload = self.read_static_and_payload(rest)?;
        self.step = 2;
        Ok(payload)
    }

    /// The tail both signed messages share: the peer's encrypted static key `s`, then the DH
    /// of our ephemeral with it (`es` for the initiator reading message 2, `se` for the
    /// responder reading message 3), then the encrypted payload.
    fn read_static_and_payload(&mut self, msg: &[u8]) -> Result<Zeroizing<Vec<u8>>, NoiseError> {
        let (s_ct, rest) = msg
            .split_at_checked(X25519_LEN.saturating_add(self.ss.cs.overhead()))
            .ok_or(NoiseError)?;
        let rs_plain = self.ss.decrypt_and_hash(s_ct)?;
        let rs: [u8; 32] = rs_plain.as_slice().try_into().map_err(|_| NoiseError)?;
        self.rs = Some(rs);
        let dh = self.dh(&self.e, self.rs.as_ref())?;
        self.ss.mix_key(&dh[..]);
        self.ss.decrypt_and_hash(rest)
    }

    /// `-> s, se` with `payload`.
    pub(crate) fn write_msg3(&mut self, payload: &[u8]) -> Result<Vec<u8>, NoiseError> {
        if self.role != Role::Initiator || self.step != 2 {
            return Err(NoiseError);
        }
        let mut out = Vec::with_capacity(payload.len().saturating_add(X25519_LEN + 2 * TAG_LEN));
        // `s, se`: se for the initiator is DH(s, re).
        self.write_static_and_payload(payload, &mut out)?;
        self.step = 3;
        Ok(out)
    }

    /// Reads `-> s, se`; returns the decrypted payload.
    pub(crate) fn read_msg3(&mut self, msg: &[u8]) -> Result<Zeroizing<Vec<u8>>, NoiseError> {
        if self.role != Role::Responder || self.step != 2 {
            return Err(NoiseError);
        }
        // `s, se`: se for the responder is DH(e, rs).
        let payload = self.read_static_and_payload(msg)?;
        self.step = 3;
        Ok(payload)
    }

    /// The remote static key, once message 2 (initiator) or 3 (responder) was read.
    pub(crate) fn remote_static(&self) -> Option<[u8; 32]> {
        self.rs
    }

    /// `Split()` after the third message.
    pub(crate) fn finish(&self) -> Result<HandshakeOutput, NoiseError> {
        if self.rs.is_none() || self.step != 3 {
            return Err(NoiseError);
        }
        let (k1, k2) = self.ss.split();
        Ok(HandshakeOutput {
            handshake_hash: self.ss.h,
            initiator_to_responder: k1,
            responder_to_initiator: k2,
        })
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        self.ss.h.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn xx_handshake_completes_and_splits_agree() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([3u8; 32]);
        let mut i = Handshake::new(
            Role::Initiator,
            b"p",
            X25519Secret::random(&mut rng),
            X25519Secret::random(&mut rng),
        );
        let mut r = Handshake::new(
            Role::Responder,
            b"p",
            X25519Secret::random(&mut rng),
            X25519Secret::random(&mut rng),
        );
        let m1 = i.write_msg1().unwrap();
        r.read_msg1(&m1).unwrap();
        let m2 = r.write_msg2(b"two").unwrap();
        assert_eq!(&i.read_msg2(&m2).unwrap()[..], b"two");
        let m3 = i.write_msg3(b"three").unwrap();
        assert_eq!(&r.read_msg3(&m3).unwrap()[..], b"three");
        let (oi, or) = (i.finish().unwrap(), r.finish().unwrap());
        assert_eq!(oi.handshake_hash, or.handshake_hash);
        assert_eq!(*oi.initiator_to_responder, *or.initiator_to_responder);
        assert_ne!(*oi.initiator_to_responder, *oi.responder_to_initiator);
        assert_eq!(i.remote_static(), Some(r.local_static()));
    }

    #[test]
    fn wrong_prologue_fails_at_message_two() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([4u8; 32]);
        let mut i = Handshake::new(
            Role::Initiator,
            b"a",
            X25519Secret::random(&mut rng),
            X25519Secret::random(&mut rng),
        );
        let mut r = Handshake::new(
            Role::Responder,
            b"b",
            X25519Secret::random(&mut rng),
            X25519Secret::random(&mut rng),
        );
        r.read_msg1(&i.write_msg1().unwrap()).unwrap();
        assert!(i.read_msg2(&r.write_msg2(b"").unwrap()).is_err());
    }
}
