//! The AEAD seam: ChaCha20-Poly1305 and XChaCha20-Poly1305, and the one place a backend is
//! chosen.
//!
//! Every protocol seals and opens through the few functions here. The IETF ChaCha20-Poly1305
//! data paths (tunnel transport, chat messages) come from one backend module, picked by one
//! `cfg` below: [`rustcrypto`] (pure Rust, `no_std`, every key zeroized: the default) or
//! `ring` (the `ring` feature: about three times faster on x86-64, but ring keeps key
//! schedules it never wipes; see the crate docs). Both files export the same three items,
//! `chacha_seal_in_place`, `chacha_open_in_place` and `TransportKey`. XChaCha20-Poly1305
//! (Fabstir sessions, sealed state) always runs on RustCrypto.

use alloc::vec::Vec;
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use zeroize::Zeroizing;

// Compiled in every build: the `ring` backend falls back on it, and the tests compare the two.
#[cfg(feature = "ring")]
mod ring;
#[cfg_attr(feature = "ring", allow(dead_code))]
pub(crate) mod rustcrypto;

#[cfg(feature = "ring")]
use self::ring as backend;
#[cfg(not(feature = "ring"))]
use self::rustcrypto as backend;

pub(crate) use backend::{chacha_open_in_place, chacha_seal_in_place, TransportKey};

/// Length of the Poly1305 tag.
pub(crate) const TAG_LEN: usize = 16;

/// The tag did not verify (wrong key, tampered bytes, wrong AAD or nonce), or the input is
/// shorter than a tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AeadError;

/// Encrypts `buf` in place with XChaCha20-Poly1305 and returns the detached tag.
pub(crate) fn xchacha_seal_in_place(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: &[u8],
    buf: &mut [u8],
) -> [u8; TAG_LEN] {
    let cipher = XChaCha20Poly1305::new(key.into());
    match cipher.encrypt_inout_detached(nonce.into(), aad, buf.into()) {
        Ok(tag) => tag.into(),
        // Only reachable for messages beyond 256 GiB, which no caller can build in memory.
        Err(_) => [0u8; TAG_LEN],
    }
}

/// Decrypts `buf` in place with XChaCha20-Poly1305 after checking `tag`.
/// On failure `buf` is left as it was.
pub(crate) fn xchacha_open_in_place(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), AeadError> {
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt_inout_detached(nonce.into(), aad, buf.into(), tag.into())
        .map_err(|_| AeadError)
}

/// XChaCha20-Poly1305 seal: returns `ciphertext ‖ tag`.
pub(crate) fn xchacha_seal(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    // A capacity hint: saturating is right (no plaintext is within 16 bytes of usize::MAX).
    let mut out = Vec::with_capacity(plaintext.len().saturating_add(TAG_LEN));
    out.extend_from_slice(plaintext);
    let tag = xchacha_seal_in_place(key, nonce, aad, &mut out);
    out.extend_from_slice(&tag);
    out
}

/// XChaCha20-Poly1305 open of `ciphertext ‖ tag`; the plaintext is wiped when dropped.
pub(crate) fn xchacha_open(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, AeadError> {
    let split = sealed.len().checked_sub(TAG_LEN).ok_or(AeadError)?;
    let (ct, tag) = sealed.split_at(split);
    let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| AeadError)?;
    let mut buf = Zeroizing::new(ct.to_vec());
    xchacha_open_in_place(key, nonce, aad, &mut buf, tag)?;
    Ok(buf)
}

/// The 12-byte nonce of message number `counter` in WireGuard transport data (and Noise's
/// ChaChaPoly): four zero bytes, then the counter little-endian.
#[inline]
pub(crate) fn counter_nonce(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    let (_, c) = n.split_at_mut(4);
    c.copy_from_slice(&counter.to_le_bytes());
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8439 §2.8.2 test vector (independent known answer).
    #[test]
    fn chacha20poly1305_rfc8439_vector() {
        let key: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
        let nonce = [
            0x07, 0, 0, 0, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
        ];
        let aad = [
            0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
        ];
        let mut buf = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.".to_vec();
        let tag = chacha_seal_in_place(&key, &nonce, &aad, &mut buf);
        assert_eq!(
            crate::crypto::hex::encode(&tag),
            "1ae10b594f09e26a7e902ecbd0600691"
        );
        assert_eq!(crate::crypto::hex::encode(&buf[..8]), "d31a8d34648e60db");
        chacha_open_in_place(&key, &nonce, &aad, &mut buf, &tag).unwrap();
        assert!(buf.starts_with(b"Ladies"));
    }

    // The reusable key against the one-shot function (checked by the RFC vector above) and
    // against RustCrypto directly (an independent implementation in the `ring` build), twice
    // with one key object; a flipped tag bit is rejected. End-to-end, the tunnel's interop
    // tests exchange these packets with boringtun.
    #[test]
    fn transport_key_matches_the_one_shot_seal_and_rejects_tampering() {
        assert_eq!(
            counter_nonce(0x4746_4544_4342_4140),
            [0, 0, 0, 0, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47]
        );
        let raw: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
        let key = TransportKey::new(raw);
        let msg: Vec<u8> = (0..1420u32).map(|i| (i * 7) as u8).collect();
        for counter in [0u64, 1, 0x0102_0304_0506_0708] {
            let n = counter_nonce(counter);
            let mut buf = msg.clone();
            let tag = key.seal_in_place(counter, b"ad", &mut buf);
            let mut one_shot = msg.clone();
            assert_eq!(chacha_seal_in_place(&raw, &n, b"ad", &mut one_shot), tag);
            let mut rc = msg.clone();
            assert_eq!(
                rustcrypto::chacha_seal_in_place(&raw, &n, b"ad", &mut rc),
                tag
            );
            assert_eq!(buf, one_shot);
            assert_eq!(buf, rc);
            let mut bad = tag;
            bad[15] ^= 1;
            let mut copy = buf.clone();
            assert_eq!(
                key.open_in_place(counter, b"ad", &mut copy, &bad),
                Err(AeadError)
            );
            assert_eq!(
                key.open_in_place(counter + 1, b"ad", &mut buf.clone(), &tag),
                Err(AeadError)
            );
            key.open_in_place(counter, b"ad", &mut buf, &tag).unwrap();
            assert_eq!(buf, msg);
        }
        assert_eq!(alloc::format!("{key:?}"), "TransportKey([redacted])");
    }

    #[test]
    fn xchacha_tamper_is_rejected_and_buffer_untouched() {
        let key = [1u8; 32];
        let nonce = [2u8; 24];
        let mut sealed = xchacha_seal(&key, &nonce, b"ad", b"hello");
        assert_eq!(
            &*xchacha_open(&key, &nonce, b"ad", &sealed).unwrap(),
            b"hello"
        );
        assert!(xchacha_open(&key, &nonce, b"ae", &sealed).is_err());
        sealed[0] ^= 1;
        assert!(xchacha_open(&key, &nonce, b"ad", &sealed).is_err());
        assert!(xchacha_open(&key, &nonce, b"ad", &sealed[..10]).is_err());
    }
}
