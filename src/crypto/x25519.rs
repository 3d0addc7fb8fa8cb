//! X25519 keys for the WireGuard-compatible tunnel, over `x25519-dalek`.

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

/// The 32 bytes of a `wg genkey` / `wg pubkey` key (decoded in constant time).
fn decode_key(s: &str) -> Result<zeroize::Zeroizing<[u8; 32]>, KeyFormatError> {
    super::base64::decode_array::<32>(s.trim()).map_err(|_| KeyFormatError)
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
        decode_key(s).map(|k| StaticSecret(*k))
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

// Needed where a handshake is tried on a copy and the original kept on failure (chat); every
// copy is wiped on drop like the original.
impl Clone for StaticSecret {
    fn clone(&self) -> Self {
        self.clone_secret()
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
        decode_key(s).map(|k| PublicKey(*k))
    }

    /// The `wg pubkey` spelling of the key.
    pub fn to_base64(&self) -> String {
        super::base64::encode(&self.0)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", crate::crypto::hex::encode(&self.0[..4]))
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
        // Strictness itself is the codec's (crypto::base64); keys inherit it.
        assert_eq!(
            PublicKey::from_base64("hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmp="),
            Err(KeyFormatError)
        );
        assert!(StaticSecret::from_base64("AQEB").is_err());
    }

    #[test]
    fn low_order_point_is_rejected() {
        let sk = StaticSecret::from_bytes([5u8; 32]);
        assert!(sk.dh(&PublicKey::from_bytes([0u8; 32])).is_none());
    }
}
