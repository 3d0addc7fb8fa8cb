//! The default AEAD backend: RustCrypto's `chacha20poly1305` (pure Rust, `no_std`). Every key
//! it is given stays in zeroizing storage and nothing else keeps a copy.

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use zeroize::Zeroizing;

use super::{counter_nonce, AeadError, TAG_LEN};

/// Encrypts `buf` in place with ChaCha20-Poly1305 (IETF, 12-byte nonce); returns the tag.
pub(crate) fn chacha_seal_in_place(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
) -> [u8; TAG_LEN] {
    let cipher = ChaCha20Poly1305::new(key.into());
    match cipher.encrypt_inout_detached(nonce.into(), aad, buf.into()) {
        Ok(tag) => tag.into(),
        // Only reachable for messages beyond 256 GiB, which no caller can build in memory.
        Err(_) => [0u8; TAG_LEN],
    }
}

/// Decrypts `buf` in place with ChaCha20-Poly1305 after checking `tag`; `buf` is unchanged on
/// failure.
pub(crate) fn chacha_open_in_place(
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

/// A ChaCha20-Poly1305 key that seals or opens many messages (one direction of a tunnel
/// transport session), with the nonce of message number `counter` (see [`counter_nonce`]).
/// The raw key is wiped on drop; RustCrypto's per-message key setup is cheap, so nothing else
/// is kept.
pub(crate) struct TransportKey {
    raw: Zeroizing<[u8; 32]>,
}

impl TransportKey {
    /// Takes `key`.
    pub(crate) fn new(key: [u8; 32]) -> Self {
        TransportKey {
            raw: Zeroizing::new(key),
        }
    }

    /// Encrypts `buf` in place with the nonce of message number `counter`; returns the tag.
    #[inline]
    pub(crate) fn seal_in_place(&self, counter: u64, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        chacha_seal_in_place(&self.raw, &counter_nonce(counter), aad, buf)
    }

    /// Decrypts `buf` in place after checking `tag`, with the nonce of message number
    /// `counter`; `buf` is unchanged on failure.
    #[inline]
    pub(crate) fn open_in_place(
        &self,
        counter: u64,
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError> {
        chacha_open_in_place(&self.raw, &counter_nonce(counter), aad, buf, tag)
    }
}

impl core::fmt::Debug for TransportKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("TransportKey([redacted])")
    }
}
