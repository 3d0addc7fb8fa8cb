//! The `ring` AEAD backend (the `ring` feature): ChaCha20-Poly1305 on `ring`, about three times
//! faster than RustCrypto's on x86-64 for packet-sized messages.
//!
//! Secrets: `ring` offers no zeroize, and its key types cannot be wiped through their API. A
//! [`TransportKey`] keeps one prepared `ring::aead::LessSafeKey` for the life of a tunnel
//! session, inline; the tunnel keeps every keypair in a heap block it zeroes whole when the
//! keypair goes, so that copy is wiped, but the stack copy made while building it is not. Each
//! one-shot call (chat messages) builds a `LessSafeKey` on the stack and drops it unwiped: one
//! copy of that message key may stay in the stack until it is overwritten. Our own copy of
//! every key is zeroized. This is the trade-off of opting into `ring`; the default build wipes
//! every copy it makes (docs/SECURITY.md, §4).

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};
use zeroize::Zeroizing;

use super::{counter_nonce, AeadError, TAG_LEN};

/// Encrypts `buf` in place with ChaCha20-Poly1305 (IETF, 12-byte nonce); returns the tag.
pub(crate) fn chacha_seal_in_place(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
) -> [u8; TAG_LEN] {
    match UnboundKey::new(&CHACHA20_POLY1305, key) {
        Ok(unbound) => seal(&LessSafeKey::new(unbound), *nonce, aad, buf),
        // ring accepts every 32-byte key; were it ever to refuse one, RustCrypto seals.
        Err(_) => super::rustcrypto::chacha_seal_in_place(key, nonce, aad, buf),
    }
}

/// Decrypts `buf` in place with ChaCha20-Poly1305 after checking `tag`. On failure `ring`
/// zeroes `buf` (never left as unauthenticated plaintext).
pub(crate) fn chacha_open_in_place(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), AeadError> {
    match UnboundKey::new(&CHACHA20_POLY1305, key) {
        Ok(unbound) => open(&LessSafeKey::new(unbound), *nonce, aad, buf, tag),
        Err(_) => super::rustcrypto::chacha_open_in_place(key, nonce, aad, buf, tag),
    }
}

fn seal(key: &LessSafeKey, nonce: [u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
    let n = Nonce::assume_unique_for_key(nonce);
    match key.seal_in_place_separate_tag(n, Aad::from(aad), buf) {
        Ok(tag) => tag.as_ref().try_into().unwrap_or([0u8; TAG_LEN]),
        // Only reachable for messages beyond 256 GiB, which no caller can build in memory.
        Err(_) => [0u8; TAG_LEN],
    }
}

fn open(
    key: &LessSafeKey,
    nonce: [u8; 12],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), AeadError> {
    let n = Nonce::assume_unique_for_key(nonce);
    key.open_in_place_separate_tag(n, Aad::from(aad), Tag::from(*tag), buf, 0..)
        .map(|_| ())
        .map_err(|_| AeadError)
}

/// A ChaCha20-Poly1305 key that seals or opens many messages (one direction of a tunnel
/// transport session): ring's per-key setup runs once, in [`TransportKey::new`], instead of
/// once per packet. See the module docs for what `ring` leaves unwiped.
// The large variant is the one every session uses; boxing it would add a pointer chase to
// every packet.
#[allow(clippy::large_enum_variant)]
pub(crate) enum TransportKey {
    /// Always this in practice: ring accepts every 32-byte key.
    Ring(LessSafeKey),
    /// Were ring ever to refuse a key, RustCrypto seals rather than fail.
    RustCrypto(super::rustcrypto::TransportKey),
}

impl TransportKey {
    /// Takes `key` and builds ring's key, once; our copy of `key` is wiped.
    pub(crate) fn new(key: [u8; 32]) -> Self {
        let key = Zeroizing::new(key);
        match UnboundKey::new(&CHACHA20_POLY1305, &*key) {
            Ok(unbound) => TransportKey::Ring(LessSafeKey::new(unbound)),
            Err(_) => TransportKey::RustCrypto(super::rustcrypto::TransportKey::new(*key)),
        }
    }

    /// Encrypts `buf` in place with the nonce of message number `counter`; returns the tag.
    #[inline]
    pub(crate) fn seal_in_place(&self, counter: u64, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        // The nonce is built in each branch: one array shared by both made the compiler copy
        // it with a load wider than the stores that wrote it, which stalls store forwarding
        // on every packet (seen in `perf annotate`).
        match self {
            TransportKey::Ring(k) => seal(k, counter_nonce(counter), aad, buf),
            TransportKey::RustCrypto(k) => k.seal_in_place(counter, aad, buf),
        }
    }

    /// Decrypts `buf` in place after checking `tag`, with the nonce of message number
    /// `counter`. On failure `ring` zeroes `buf`.
    #[inline]
    pub(crate) fn open_in_place(
        &self,
        counter: u64,
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError> {
        match self {
            TransportKey::Ring(k) => open(k, counter_nonce(counter), aad, buf, tag),
            TransportKey::RustCrypto(k) => k.open_in_place(counter, aad, buf, tag),
        }
    }
}

impl core::fmt::Debug for TransportKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("TransportKey([redacted])")
    }
}
