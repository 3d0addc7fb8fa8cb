//! X25519 (RFC 7748) key agreement, as Noise's `DH()` function uses it.

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// Length of an X25519 public key and of a shared secret.
pub(crate) const X25519_LEN: usize = 32;

/// An X25519 private key; wiped on drop (`StaticSecret` zeroizes itself).
#[derive(Clone)]
pub(crate) struct X25519Secret(StaticSecret);

impl X25519Secret {
    /// Draws a fresh private key from the machine's RNG.
    pub(crate) fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let bytes = Zeroizing::new(super::random_array::<32, R>(rng));
        X25519Secret(StaticSecret::from(*bytes))
    }

    /// The matching public key.
    pub(crate) fn public(&self) -> [u8; X25519_LEN] {
        PublicKey::from(&self.0).to_bytes()
    }

    /// `DH(self, their_public)`; `None` when the result is all zero (a low-order point), which
    /// a genuine peer never sends.
    pub(crate) fn dh(&self, their_public: &[u8; X25519_LEN]) -> Option<Zeroizing<[u8; 32]>> {
        let shared = self.0.diffie_hellman(&PublicKey::from(*their_public));
        if !shared.was_contributory() {
            return None;
        }
        Some(Zeroizing::new(shared.to_bytes()))
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
        let sk = X25519Secret(StaticSecret::from(a));
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
