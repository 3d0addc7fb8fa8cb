//! Ed25519 identity keys (RFC 8032), used to sign the per-epoch Noise static key of a chat.

use core::fmt;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// A long-term Ed25519 identity (private) key. Wiped on drop, `[redacted]` in `Debug`.
///
/// The expanded key is kept (224 bytes) so a handshake signs without re-deriving the public
/// key.
///
/// ```
/// use sealwire::crypto::ed25519::IdentityKey;
/// let id = IdentityKey::from_seed([7u8; 32]);
/// assert_eq!(format!("{id:?}"), "IdentityKey([redacted])");
/// let sig = id.sign(b"msg");
/// assert!(id.public().verify(b"msg", &sig));
/// assert!(!id.public().verify(b"msh", &sig));
/// ```
// Fuzz targets clone established machines (cargo-fuzz builds, `--cfg fuzzing`, only).
#[cfg_attr(fuzzing, derive(Clone))]
pub struct IdentityKey(SigningKey);

impl IdentityKey {
    /// The identity whose RFC 8032 secret seed is `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let seed = Zeroizing::new(seed);
        // `SigningKey` wipes its secret on drop (ed25519-dalek's `zeroize` feature).
        IdentityKey(SigningKey::from_bytes(&seed))
    }

    /// A fresh identity drawn from `rng`.
    ///
    /// ```
    /// # use sealwire::crypto::ed25519::IdentityKey;
    /// let mut rng = rand_chacha::ChaCha20Rng::from_seed([1u8; 32]);
    /// # use rand_chacha::rand_core::SeedableRng;
    /// let a = IdentityKey::generate(&mut rng);
    /// let b = IdentityKey::generate(&mut rng);
    /// assert_ne!(a.public(), b.public());
    /// ```
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_seed(super::random_array::<32, R>(rng))
    }

    /// The RFC 8032 secret seed, to persist the identity (e.g. in a file only its owner can
    /// read, or sealed with [`crate::seal`]); [`IdentityKey::from_seed`] restores it. The copy
    /// is wiped when dropped.
    ///
    /// ```
    /// # use sealwire::crypto::ed25519::IdentityKey;
    /// let mut rng = rand_chacha::ChaCha20Rng::from_seed([1u8; 32]);
    /// # use rand_chacha::rand_core::SeedableRng;
    /// let id = IdentityKey::generate(&mut rng);
    /// let seed = id.to_seed(); // Zeroizing<[u8; 32]>
    /// assert_eq!(IdentityKey::from_seed(*seed).public(), id.public());
    /// ```
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> IdentityPublic {
        IdentityPublic(self.0.verifying_key().to_bytes())
    }

    /// Signs `msg` (deterministic RFC 8032 signature).
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.0.sign(msg).to_bytes()
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityKey([redacted])")
    }
}

/// A public Ed25519 identity (32 bytes, compressed Edwards point).
///
/// ```
/// use sealwire::crypto::ed25519::{IdentityKey, IdentityPublic};
/// let pk = IdentityKey::from_seed([1u8; 32]).public();
/// assert_eq!(IdentityPublic::from_bytes(*pk.as_bytes()), Some(pk));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityPublic([u8; 32]);

impl IdentityPublic {
    /// Parses a public key; `None` if the bytes are not a valid point encoding.
    pub fn from_bytes(bytes: [u8; 32]) -> Option<Self> {
        VerifyingKey::from_bytes(&bytes).ok()?;
        Some(IdentityPublic(bytes))
    }

    /// The 32 encoded bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses `bytes` and verifies `sig` over `msg` in one step (one point decompression).
    pub(crate) fn parse_verified(
        bytes: [u8; 32],
        msg: &[u8],
        sig: &[u8; SIGNATURE_LEN],
    ) -> Option<Self> {
        let vk = VerifyingKey::from_bytes(&bytes).ok()?;
        vk.verify_strict(msg, &Signature::from_bytes(sig)).ok()?;
        Some(IdentityPublic(bytes))
    }

    /// Verifies `sig` over `msg` with the strict RFC 8032 rules (no malleable signatures, no
    /// small-order keys).
    pub fn verify(&self, msg: &[u8], sig: &[u8; SIGNATURE_LEN]) -> bool {
        let Ok(vk) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        vk.verify_strict(msg, &Signature::from_bytes(sig)).is_ok()
    }
}

impl fmt::Debug for IdentityPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityPublic({})", super::hex::encode(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::hex;

    #[test]
    fn a_seed_round_trips_and_verify_refuses_what_was_not_signed() {
        let id = IdentityKey::from_seed([0x5a; 32]);
        assert_eq!(*id.to_seed(), [0x5a; 32]);
        let sig = id.sign(b"message");
        assert!(id.public().verify(b"message", &sig));
        assert!(!id.public().verify(b"messagE", &sig));
        let mut bad = sig;
        bad[0] ^= 1;
        assert!(!id.public().verify(b"message", &bad));
        let other = IdentityKey::from_seed([0x5b; 32]);
        assert!(!other.public().verify(b"message", &sig));
        assert_eq!(alloc::format!("{id:?}"), "IdentityKey([redacted])");
    }

    // RFC 8032 §7.1 TEST 1 (independent known answer).
    #[test]
    fn rfc8032_test1() {
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let id = IdentityKey::from_seed(seed);
        assert_eq!(
            hex::encode(id.public().as_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = id.sign(b"");
        assert_eq!(
            hex::encode(&sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
             5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        assert!(id.public().verify(b"", &sig));
    }
}
