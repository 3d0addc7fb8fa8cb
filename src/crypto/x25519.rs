//! X25519 keys: the tunnel's WireGuard keys and Noise's `DH()` for chat, over `x25519-dalek`.

use alloc::string::String;
use core::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A key string is not 44 characters of canonical standard base64 for 32 bytes (the
/// `wg genkey` / `wg pubkey` format).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyFormatError;

impl fmt::Display for KeyFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the key is not 44 characters of canonical base64 for 32 bytes")
    }
}

#[cfg(feature = "std")]
impl std::error::Error for KeyFormatError {}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Standard base64 with padding (RFC 4648 §4).
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = ((n >> (18 - 6 * i)) & 63) as usize;
                out.push(char::from(B64.get(idx).copied().unwrap_or(b'A')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Strict decoding of exactly 32 bytes: 43 symbols, one `=`, and zero unused bits (so each
/// key has exactly one accepted spelling).
pub(crate) fn base64_decode_32(s: &str) -> Result<[u8; 32], KeyFormatError> {
    let s = s.as_bytes();
    let (body, pad) = s.split_at_checked(43).ok_or(KeyFormatError)?;
    if pad != b"=" {
        return Err(KeyFormatError);
    }
    let mut out = [0u8; 32];
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut n = 0usize;
    for &c in body {
        acc = (acc << 6) | b64_value(c).ok_or(KeyFormatError)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            let byte = ((acc >> bits) & 0xff) as u8;
            *out.get_mut(n).ok_or(KeyFormatError)? = byte;
            n += 1;
            acc &= (1 << bits) - 1;
        }
    }
    if n != 32 || acc != 0 {
        return Err(KeyFormatError);
    }
    Ok(out)
}

/// An X25519 private key (WireGuard `PrivateKey`): wiped on drop, `[redacted]` in `Debug`.
///
/// ```
/// use sealwire::crypto::x25519::StaticSecret;
/// let sk = StaticSecret::from_bytes([7u8; 32]);
/// assert_eq!(format!("{sk:?}"), "StaticSecret([redacted])");
/// let pk = sk.public_key();
/// assert_eq!(pk, StaticSecret::from_bytes([7u8; 32]).public_key());
/// ```
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct StaticSecret([u8; 32]);

/// An X25519 public key (WireGuard `PublicKey`), 32 bytes.
///
/// ```
/// use sealwire::crypto::x25519::PublicKey;
/// let pk = PublicKey::from_bytes([9u8; 32]);
/// assert_eq!(pk.as_bytes(), &[9u8; 32]);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; 32]);

impl StaticSecret {
    /// Wraps 32 secret bytes (clamping happens inside each scalar multiplication).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        StaticSecret(bytes)
    }

    /// Draws a fresh key from `rng`.
    ///
    /// ```
    /// # use sealwire::crypto::x25519::StaticSecret;
    /// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
    /// let a = StaticSecret::random(&mut ChaCha20Rng::seed_from_u64(1));
    /// let b = StaticSecret::random(&mut ChaCha20Rng::seed_from_u64(2));
    /// assert_ne!(a.public_key(), b.public_key());
    /// ```
    pub fn random<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        StaticSecret(crate::crypto::random_array(rng))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        let sk = x25519_dalek::StaticSecret::from(self.0);
        PublicKey(x25519_dalek::PublicKey::from(&sk).to_bytes())
    }

    /// Parses a `wg genkey` private key (44 characters of base64).
    ///
    /// ```
    /// # use sealwire::crypto::x25519::StaticSecret;
    /// let sk = StaticSecret::from_base64("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=").unwrap();
    /// assert_eq!(sk.to_bytes(), [1u8; 32]);
    /// assert!(StaticSecret::from_base64("AQEB").is_err());
    /// ```
    pub fn from_base64(s: &str) -> Result<Self, KeyFormatError> {
        base64_decode_32(s.trim()).map(StaticSecret)
    }

    /// The raw secret bytes (for writing a config file; handle with care).
    ///
    /// ```
    /// # use sealwire::crypto::x25519::StaticSecret;
    /// assert_eq!(StaticSecret::from_bytes([3u8; 32]).to_bytes(), [3u8; 32]);
    /// ```
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// `DH(self, public)`; `None` when the result is all zeros (a low-order public key), which
    /// WireGuard rejects.
    pub(crate) fn dh(&self, public: &PublicKey) -> Option<zeroize::Zeroizing<[u8; 32]>> {
        let sk = x25519_dalek::StaticSecret::from(self.0);
        let shared = sk.diffie_hellman(&x25519_dalek::PublicKey::from(public.0));
        let out = zeroize::Zeroizing::new(shared.to_bytes());
        if crate::crypto::ct_eq(&*out, &[0u8; 32]) {
            None
        } else {
            Some(out)
        }
    }

    pub(crate) fn clone_secret(&self) -> Self {
        StaticSecret(self.0)
    }
}

impl fmt::Debug for StaticSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticSecret([redacted])")
    }
}

impl PublicKey {
    /// Wraps 32 public-key bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        PublicKey(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses a `wg pubkey` public key (44 characters of base64).
    ///
    /// ```
    /// # use sealwire::crypto::x25519::PublicKey;
    /// let pk = PublicKey::from_base64("CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=").unwrap();
    /// assert_eq!(pk.as_bytes(), &[9u8; 32]);
    /// assert_eq!(pk.to_base64(), "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=");
    /// ```
    pub fn from_base64(s: &str) -> Result<Self, KeyFormatError> {
        base64_decode_32(s.trim()).map(PublicKey)
    }

    /// The `wg pubkey` spelling of the key.
    pub fn to_base64(&self) -> String {
        base64_encode(&self.0)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", crate::crypto::hex::encode(&self.0[..4]))
    }
}

// Noise `DH()` for the chat handshake.

/// Length of an X25519 public key and of a shared secret.
pub(crate) const X25519_LEN: usize = 32;

/// An X25519 private key; wiped on drop (`StaticSecret` zeroizes itself).
#[derive(Clone)]
pub(crate) struct X25519Secret(x25519_dalek::StaticSecret);

impl X25519Secret {
    /// Draws a fresh private key from the machine's RNG.
    pub(crate) fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let bytes = zeroize::Zeroizing::new(super::random_array::<32, R>(rng));
        X25519Secret(x25519_dalek::StaticSecret::from(*bytes))
    }

    /// The matching public key.
    pub(crate) fn public(&self) -> [u8; X25519_LEN] {
        x25519_dalek::PublicKey::from(&self.0).to_bytes()
    }

    /// `DH(self, their_public)`; `None` when the result is all zero (a low-order point), which
    /// a genuine peer never sends.
    pub(crate) fn dh(
        &self,
        their_public: &[u8; X25519_LEN],
    ) -> Option<zeroize::Zeroizing<[u8; 32]>> {
        let shared = self
            .0
            .diffie_hellman(&x25519_dalek::PublicKey::from(*their_public));
        if !shared.was_contributory() {
            return None;
        }
        Some(zeroize::Zeroizing::new(shared.to_bytes()))
    }
}

impl core::fmt::Debug for X25519Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("X25519Secret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7748 §6.1 Diffie-Hellman vector.
    #[test]
    fn rfc7748_dh_vector() {
        let a = crate::crypto::hex::decode(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        )
        .unwrap();
        let b_pub = crate::crypto::hex::decode(
            "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
        )
        .unwrap();
        let sk = StaticSecret::from_bytes(a.try_into().unwrap());
        assert_eq!(
            crate::crypto::hex::encode(sk.public_key().as_bytes()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let shared = sk
            .dh(&PublicKey::from_bytes(b_pub.try_into().unwrap()))
            .unwrap();
        assert_eq!(
            crate::crypto::hex::encode(&*shared),
            "4a5d9d5b a4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742".replace(' ', "")
        );
    }

    // RFC 4648 §10 test vectors for the encoder.
    #[test]
    fn base64_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(i.as_bytes()), o);
        }
    }

    #[test]
    fn key_base64_is_strict() {
        // RFC 7748 §6.1 Alice public key, as `wg pubkey` prints it.
        let pk = PublicKey::from_base64("hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=").unwrap();
        assert_eq!(
            crate::crypto::hex::encode(pk.as_bytes()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        assert_eq!(
            pk.to_base64(),
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="
        );
        for bad in [
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmp=", // non-zero unused bits
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo",  // no padding
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTm==", // too short
            "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo=", // url alphabet
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo==",
        ] {
            assert!(PublicKey::from_base64(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn low_order_point_is_rejected() {
        let sk = StaticSecret::from_bytes([5u8; 32]);
        assert!(sk.dh(&PublicKey::from_bytes([0u8; 32])).is_none());
    }
}

#[cfg(test)]
mod noise_tests {
    use super::*;
    use crate::crypto::hex;

    // RFC 7748 §6.1 (independent known answer).
    #[test]
    fn rfc7748_diffie_hellman_vector() {
        let a: [u8; 32] =
            hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap()
                .try_into()
                .unwrap();
        let b_pub: [u8; 32] =
            hex::decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
                .unwrap()
                .try_into()
                .unwrap();
        let sk = X25519Secret(x25519_dalek::StaticSecret::from(a));
        assert_eq!(
            hex::encode(&sk.public()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        assert_eq!(
            hex::encode(&sk.dh(&b_pub).unwrap()[..]),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
        assert!(sk.dh(&[0u8; 32]).is_none());
    }
}
