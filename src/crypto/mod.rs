//! Thin, safe wrappers over the RustCrypto primitives sealwire is built on.
//!
//! Nothing here is a new primitive: each function is one call into `k256`, `x25519-dalek`,
//! `ed25519-dalek`, `chacha20poly1305`, `hkdf`/`hmac`/`sha2`/`sha3`/`blake2`, with the
//! project's rules applied once: secrets live in types that zeroize on drop and print
//! `[redacted]`, comparisons of secret or authenticator bytes are constant time, and parsing
//! of keys and signatures is strict.
//!
//! The public items are the key types an embedder configures a machine with
//! ([`secp256k1::SecretKey`], [`secp256k1::PublicKey`], [`secp256k1::Address`], ...); the
//! AEAD and KDF helpers are crate-internal.

pub(crate) mod aead;
pub mod base64;
pub(crate) mod blake2s;
pub mod ed25519;
pub mod hex;
pub(crate) mod kdf;
pub mod secp256k1;
mod secret;
pub mod x25519;

pub use secret::SecretBytes;

/// Compares two byte strings in constant time (for equal lengths).
///
/// ```
/// assert!(sealwire::crypto::ct_eq(b"tag", b"tag"));
/// assert!(!sealwire::crypto::ct_eq(b"tag", b"tab"));
/// assert!(!sealwire::crypto::ct_eq(b"tag", b"tags"));
/// ```
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Draws `N` random bytes from the machine's RNG.
pub(crate) fn random_array<const N: usize, R: rand_core::CryptoRng + ?Sized>(
    rng: &mut R,
) -> [u8; N] {
    let mut out = [0u8; N];
    rng.fill_bytes(&mut out);
    out
}
