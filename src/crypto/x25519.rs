//! X25519 keys: the tunnel's WireGuard keys and Noise's `DH()` for chat, over `x25519-dalek`.

use core::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

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
