//! The AEAD seam (DESIGN §7): ChaCha20-Poly1305 and XChaCha20-Poly1305 over RustCrypto.
//!
//! Every data path goes through these few functions, so a faster backend can replace the
//! body of each without touching a protocol.

use alloc::vec::Vec;
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, XChaCha20Poly1305};
use zeroize::Zeroizing;

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
    let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
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

/// Encrypts `buf` in place with ChaCha20-Poly1305 (IETF, 12-byte nonce); returns the tag.
pub(crate) fn chacha_seal_in_place(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
) -> [u8; TAG_LEN] {
    #[cfg(feature = "ring")]
    {
        use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
        let Ok(unbound) = UnboundKey::new(&CHACHA20_POLY1305, key) else {
            return [0u8; TAG_LEN];
        };
        let k = LessSafeKey::new(unbound);
        let n = Nonce::assume_unique_for_key(*nonce);
        match k.seal_in_place_separate_tag(n, Aad::from(aad), buf) {
            Ok(tag) => tag.as_ref().try_into().unwrap_or([0u8; TAG_LEN]),
            // Only reachable for messages beyond 256 GiB.
            Err(_) => [0u8; TAG_LEN],
        }
    }
    #[cfg(not(feature = "ring"))]
    rustcrypto_seal(key, nonce, aad, buf)
}

/// Decrypts `buf` in place with ChaCha20-Poly1305 after checking `tag`. With the `ring`
/// feature the contents of `buf` are unspecified on failure.
pub(crate) fn chacha_open_in_place(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), AeadError> {
    #[cfg(feature = "ring")]
    {
        use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key).map_err(|_| AeadError)?;
        let k = LessSafeKey::new(unbound);
        let n = Nonce::assume_unique_for_key(*nonce);
        k.open_in_place_separate_tag(n, Aad::from(aad), Tag::from(*tag), buf, 0..)
            .map(|_| ())
            .map_err(|_| AeadError)
    }
    #[cfg(not(feature = "ring"))]
    rustcrypto_open(key, nonce, aad, buf, tag)
}

/// RustCrypto ChaCha20-Poly1305 seal (the default backend, and the `ring` build's fallback).
fn rustcrypto_seal(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
    let cipher = ChaCha20Poly1305::new(key.into());
    match cipher.encrypt_inout_detached(nonce.into(), aad, buf.into()) {
        Ok(tag) => tag.into(),
        // Only reachable for messages beyond 256 GiB, which no caller can build in memory.
        Err(_) => [0u8; TAG_LEN],
    }
}

/// RustCrypto ChaCha20-Poly1305 open; `buf` is unchanged on failure.
fn rustcrypto_open(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), AeadError> {
    let cipher = ChaCha20Poly1305::new(key.into());
    cipher
        .decrypt_inout_detached(nonce.into(), aad, buf.into(), tag.into())
        .map_err(|_| AeadError)
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

/// A ChaCha20-Poly1305 key that seals or opens many messages (one direction of a tunnel
/// transport session): the backend's per-key setup runs once, in [`TransportKey::new`],
/// instead of once per packet as in [`chacha_seal_in_place`].
///
/// Secrets: the raw key is wiped on drop. With the `ring` feature the key is also held by a
/// `ring::aead::LessSafeKey`, which `ring` does not zeroize and gives no way to wipe, so that
/// copy of the key stays in freed memory until the allocator reuses it. That is the
/// trade-off of opting into `ring` (DESIGN §7); the default RustCrypto build keeps only the
/// zeroizing raw key.
pub(crate) struct TransportKey {
    raw: Zeroizing<[u8; 32]>,
    /// Always `Some` in practice (ring accepts every 32-byte ChaCha20-Poly1305 key); `None`
    /// would fall back to RustCrypto rather than fail.
    #[cfg(feature = "ring")]
    ring: Option<ring::aead::LessSafeKey>,
}

impl TransportKey {
    /// Takes `key`; with `ring`, builds ring's key here, once.
    pub(crate) fn new(key: [u8; 32]) -> Self {
        let raw = Zeroizing::new(key);
        #[cfg(feature = "ring")]
        {
            use ring::aead::{LessSafeKey, UnboundKey, CHACHA20_POLY1305};
            let ring = UnboundKey::new(&CHACHA20_POLY1305, &*raw)
                .ok()
                .map(LessSafeKey::new);
            TransportKey { raw, ring }
        }
        #[cfg(not(feature = "ring"))]
        TransportKey { raw }
    }

    /// Encrypts `buf` in place with the nonce of message number `counter` (see
    /// [`counter_nonce`]); returns the tag.
    #[inline]
    pub(crate) fn seal_in_place(&self, counter: u64, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        // Each branch builds its own nonce: one array shared by both made the compiler copy
        // it with a load wider than the stores that wrote it, which stalls store forwarding
        // on every packet (seen in `perf annotate`).
        #[cfg(feature = "ring")]
        if let Some(k) = &self.ring {
            use ring::aead::{Aad, Nonce};
            let n = Nonce::assume_unique_for_key(counter_nonce(counter));
            return match k.seal_in_place_separate_tag(n, Aad::from(aad), buf) {
                Ok(tag) => tag.as_ref().try_into().unwrap_or([0u8; TAG_LEN]),
                // Only reachable for messages beyond 256 GiB.
                Err(_) => [0u8; TAG_LEN],
            };
        }
        rustcrypto_seal(&self.raw, &counter_nonce(counter), aad, buf)
    }

    /// Decrypts `buf` in place after checking `tag`, with the nonce of message number
    /// `counter`. With the `ring` feature the contents of `buf` are unspecified on failure.
    #[inline]
    pub(crate) fn open_in_place(
        &self,
        counter: u64,
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError> {
        #[cfg(feature = "ring")]
        if let Some(k) = &self.ring {
            use ring::aead::{Aad, Nonce, Tag};
            let n = Nonce::assume_unique_for_key(counter_nonce(counter));
            return k
                .open_in_place_separate_tag(n, Aad::from(aad), Tag::from(*tag), buf, 0..)
                .map(|_| ())
                .map_err(|_| AeadError);
        }
        rustcrypto_open(&self.raw, &counter_nonce(counter), aad, buf, tag)
    }
}

impl core::fmt::Debug for TransportKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("TransportKey([redacted])")
    }
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
            assert_eq!(rustcrypto_seal(&raw, &n, b"ad", &mut rc), tag);
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
