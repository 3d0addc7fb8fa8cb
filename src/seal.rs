//! Sealing of persisted state under a passphrase or a key.
//!
//! A sealed record is a versioned, authenticated envelope:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0      | 4    | magic (chosen by the state's owner, e.g. `SWCH` for chat state) |
//! | 4      | 1    | format version = 1 |
//! | 5      | 1    | key derivation: 0 = raw 32-byte key, 1 = Argon2id passphrase |
//! | 6      | 4    | Argon2id memory cost in KiB, u32 BE (0 for a raw key) |
//! | 10     | 4    | Argon2id time cost (iterations), u32 BE |
//! | 14     | 4    | Argon2id parallelism, u32 BE |
//! | 18     | 16   | Argon2id salt (zero for a raw key) |
//! | 34     | 2    | context length `c`, u16 BE |
//! | 36     | c    | context (owner-defined, e.g. chat id, epoch, seal sequence) |
//! | 36+c   | 24   | XChaCha20-Poly1305 nonce (random) |
//! | 60+c   | ..   | ciphertext ‖ 16-byte tag |
//!
//! Everything before the ciphertext is the AEAD's associated data, so the key-derivation
//! parameters and the context cannot be changed without the tag failing.
//! Why Argon2id with parameters in the header: a passphrase needs a memory-hard KDF, and
//! storing the parameters lets them be raised later without breaking old records. Why a bound
//! on accepted parameters ([`KdfLimits`]): a forged header must not make the reader allocate
//! gigabytes.
//!
//! ```
//! use sealwire::seal::{self, KdfLimits, SealKey, UnsealWith};
//! let key = SealKey::from_bytes([7u8; 32]);
//! let mut rng = <rand_chacha::ChaCha20Rng as rand_chacha::rand_core::SeedableRng>::from_seed([1; 32]);
//! let record = seal::seal(&key, *b"TEST", b"ctx", b"state", &mut rng);
//! let opened = seal::unseal(UnsealWith::Key(&key), *b"TEST", &record, &KdfLimits::default()).unwrap();
//! assert_eq!(opened.context, b"ctx");
//! assert_eq!(&opened.plaintext[..], b"state");
//! ```

use alloc::vec::Vec;
use core::fmt;

use crate::crypto::aead::{xchacha_open, xchacha_seal, TAG_LEN};
use crate::crypto::SecretBytes;
use zeroize::Zeroizing;

/// Current record format version.
pub const FORMAT_VERSION: u8 = 1;
const KDF_RAW: u8 = 0;
const KDF_ARGON2ID: u8 = 1;
const FIXED_HEADER_LEN: usize = 36;
const NONCE_LEN: usize = 24;

/// Why a sealed record was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealError {
    /// The record is shorter than its header says, or its fields are inconsistent.
    Truncated,
    /// The record's magic is not the expected one: it is not this kind of state.
    WrongMagic,
    /// The record uses a format version this build does not read.
    UnsupportedVersion,
    /// The record's key-derivation parameters are invalid, below the minimum
    /// ([`KdfParams::MIN_MEMORY_KIB`], [`KdfParams::MIN_ITERATIONS`]) or above the caller's
    /// limits; or the Argon2 memory could not be allocated.
    KdfRejected,
    /// The tag did not verify: wrong passphrase or key, or the record was modified.
    AuthenticationFailed,
    /// The record was sealed under a passphrase but a raw key was given, or the reverse.
    WrongSecretKind,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SealError::Truncated => "the sealed record is truncated or malformed",
            SealError::WrongMagic => "the sealed record is not of the expected kind",
            SealError::UnsupportedVersion => "the sealed record has an unsupported version",
            SealError::KdfRejected => "the sealed record's key-derivation parameters are rejected",
            SealError::AuthenticationFailed => {
                "the sealed record did not authenticate (wrong secret or modified record)"
            }
            SealError::WrongSecretKind => {
                "the sealed record needs the other kind of secret (passphrase or key)"
            }
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SealError {}

/// Argon2id cost parameters.
///
/// ```
/// let p = sealwire::seal::KdfParams::default();
/// assert!(p.memory_kib >= 64 * 1024 && p.iterations >= 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory cost in KiB (default 65 536 = 64 MiB).
    pub memory_kib: u32,
    /// Time cost (iterations, default 3).
    pub iterations: u32,
    /// Parallelism (lanes, default 1).
    pub parallelism: u32,
}

impl KdfParams {
    /// The least memory cost accepted, in KiB (19 MiB: OWASP's floor for Argon2id with 2
    /// iterations). Sealing and unsealing refuse less, tests included.
    pub const MIN_MEMORY_KIB: u32 = 19 * 1024;
    /// The least time cost accepted (2 iterations).
    pub const MIN_ITERATIONS: u32 = 2;
    /// The cheapest parameters accepted (19 MiB, 2 iterations, 1 lane): for tests and slow
    /// devices; the default costs more.
    ///
    /// ```
    /// use sealwire::seal::KdfParams;
    /// let p = KdfParams::MINIMUM;
    /// assert_eq!((p.memory_kib, p.iterations, p.parallelism), (19 * 1024, 2, 1));
    /// ```
    pub const MINIMUM: KdfParams = KdfParams {
        memory_kib: Self::MIN_MEMORY_KIB,
        iterations: Self::MIN_ITERATIONS,
        parallelism: 1,
    };

    fn at_least_minimum(&self) -> bool {
        self.memory_kib >= Self::MIN_MEMORY_KIB
            && self.iterations >= Self::MIN_ITERATIONS
            && self.parallelism >= 1
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

/// Upper bounds on the parameters an unsealer accepts from a record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfLimits {
    /// Largest accepted memory cost in KiB (default 1 GiB).
    pub max_memory_kib: u32,
    /// Largest accepted time cost (default 16).
    pub max_iterations: u32,
    /// Largest accepted parallelism (default 8).
    pub max_parallelism: u32,
}

impl Default for KdfLimits {
    fn default() -> Self {
        KdfLimits {
            max_memory_kib: 1024 * 1024,
            max_iterations: 16,
            max_parallelism: 8,
        }
    }
}

/// A 32-byte sealing key, either raw or derived from a passphrase (then it remembers the salt
/// and parameters, which go into every record's header). Wiped on drop.
pub struct SealKey {
    key: SecretBytes<32>,
    kdf: u8,
    params: KdfParams,
    salt: [u8; 16],
}

impl SealKey {
    /// A raw key (e.g. from the platform keystore).
    ///
    /// ```
    /// let k = sealwire::seal::SealKey::from_bytes([1u8; 32]);
    /// assert_eq!(format!("{k:?}"), "SealKey([redacted])");
    /// ```
    pub fn from_bytes(key: [u8; 32]) -> Self {
        SealKey {
            key: SecretBytes::new(key),
            kdf: KDF_RAW,
            params: KdfParams {
                memory_kib: 0,
                iterations: 0,
                parallelism: 0,
            },
            salt: [0u8; 16],
        }
    }

    /// Derives a key from `passphrase` with Argon2id, a fresh random salt and `params`. Derive
    /// once and seal many times: the derivation is deliberately slow. Parameters below
    /// [`KdfParams::MINIMUM`] are refused ([`SealError::KdfRejected`]).
    ///
    /// ```
    /// use sealwire::seal::{KdfParams, SealError, SealKey};
    /// let mut rng = <rand_chacha::ChaCha20Rng as rand_chacha::rand_core::SeedableRng>::from_seed([1; 32]);
    /// assert!(SealKey::from_passphrase(b"pw", KdfParams::MINIMUM, &mut rng).is_ok());
    /// let weak = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };
    /// assert_eq!(SealKey::from_passphrase(b"pw", weak, &mut rng).err(), Some(SealError::KdfRejected));
    /// ```
    pub fn from_passphrase<R: rand_core::CryptoRng + ?Sized>(
        passphrase: &[u8],
        params: KdfParams,
        rng: &mut R,
    ) -> Result<Self, SealError> {
        let salt = crate::crypto::random_array::<16, R>(rng);
        let key = derive(passphrase, &salt, &params)?;
        Ok(SealKey {
            key,
            kdf: KDF_ARGON2ID,
            params,
            salt,
        })
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey([redacted])")
    }
}

/// The secret an unsealer brings.
#[derive(Clone, Copy, Debug)]
pub enum UnsealWith<'a> {
    /// The passphrase: the key is derived with the salt and parameters in the record header.
    Passphrase(&'a [u8]),
    /// A key from [`SealKey::from_bytes`] or [`SealKey::from_passphrase`].
    Key(&'a SealKey),
}

/// An opened record.
#[derive(Debug)]
pub struct Unsealed<'r> {
    /// The authenticated context bytes from the header.
    pub context: &'r [u8],
    /// The plaintext; wiped when dropped.
    pub plaintext: Zeroizing<Vec<u8>>,
}

fn derive(passphrase: &[u8], salt: &[u8; 16], p: &KdfParams) -> Result<SecretBytes<32>, SealError> {
    if !p.at_least_minimum() {
        return Err(SealError::KdfRejected);
    }
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|_| SealError::KdfRejected)?;
    // Argon2's working memory holds passphrase-derived blocks: ours, zeroed when dropped
    // (`hash_password_into` would free its own unwiped). Allocated exactly, fallibly.
    let mut blocks: Zeroizing<Vec<argon2::Block>> = Zeroizing::new(Vec::new());
    blocks
        .try_reserve_exact(params.block_count())
        .map_err(|_| SealError::KdfRejected)?;
    blocks.resize(params.block_count(), argon2::Block::new());
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into_with_memory(passphrase, salt, &mut out[..], &mut blocks[..])
        .map_err(|_| SealError::KdfRejected)?;
    Ok(SecretBytes::new(*out))
}

/// Seals `plaintext` with `key`, binding `magic` and `context` (at most 65 535 bytes; longer
/// contexts are truncated, so keep them short) into the authenticated header.
pub fn seal<R: rand_core::CryptoRng + ?Sized>(
    key: &SealKey,
    magic: [u8; 4],
    context: &[u8],
    plaintext: &[u8],
    rng: &mut R,
) -> Vec<u8> {
    let ctx_len = context.len().min(u16::MAX as usize);
    let context = context.get(..ctx_len).unwrap_or_default();
    let nonce = crate::crypto::random_array::<NONCE_LEN, R>(rng);
    let mut header = Vec::with_capacity(
        (FIXED_HEADER_LEN + NONCE_LEN)
            .saturating_add(ctx_len)
            .saturating_add(plaintext.len())
            .saturating_add(TAG_LEN),
    );
    header.extend_from_slice(&magic);
    header.push(FORMAT_VERSION);
    header.push(key.kdf);
    header.extend_from_slice(&key.params.memory_kib.to_be_bytes());
    header.extend_from_slice(&key.params.iterations.to_be_bytes());
    header.extend_from_slice(&key.params.parallelism.to_be_bytes());
    header.extend_from_slice(&key.salt);
    header.extend_from_slice(&(ctx_len as u16).to_be_bytes());
    header.extend_from_slice(context);
    header.extend_from_slice(&nonce);
    let body = xchacha_seal(key.key.expose(), &nonce, &header, plaintext);
    header.extend_from_slice(&body);
    header
}

fn take<'a, const N: usize>(input: &mut &'a [u8]) -> Result<&'a [u8; N], SealError> {
    let (head, rest) = input.split_first_chunk::<N>().ok_or(SealError::Truncated)?;
    *input = rest;
    Ok(head)
}

/// Opens a record sealed by [`seal`] with the same `magic`.
pub fn unseal<'r>(
    with: UnsealWith<'_>,
    magic: [u8; 4],
    record: &'r [u8],
    limits: &KdfLimits,
) -> Result<Unsealed<'r>, SealError> {
    let mut rest = record;
    let m = take::<4>(&mut rest)?;
    if *m != magic {
        return Err(SealError::WrongMagic);
    }
    let [version] = *take::<1>(&mut rest)?;
    if version != FORMAT_VERSION {
        return Err(SealError::UnsupportedVersion);
    }
    let [kdf] = *take::<1>(&mut rest)?;
    let params = KdfParams {
        memory_kib: u32::from_be_bytes(*take::<4>(&mut rest)?),
        iterations: u32::from_be_bytes(*take::<4>(&mut rest)?),
        parallelism: u32::from_be_bytes(*take::<4>(&mut rest)?),
    };
    let salt = *take::<16>(&mut rest)?;
    let ctx_len = usize::from(u16::from_be_bytes(*take::<2>(&mut rest)?));
    let (context, mut rest) = rest.split_at_checked(ctx_len).ok_or(SealError::Truncated)?;
    let nonce = *take::<NONCE_LEN>(&mut rest)?;
    if rest.len() < TAG_LEN {
        return Err(SealError::Truncated);
    }
    // `rest` is a suffix of `record`.
    let header_len = record.len().saturating_sub(rest.len());
    let header = record.get(..header_len).ok_or(SealError::Truncated)?;
    let derived;
    let key = match (kdf, with) {
        (KDF_ARGON2ID, UnsealWith::Passphrase(p)) => {
            // Before anything is allocated: a forged header asks for nothing we would not give.
            if params.memory_kib > limits.max_memory_kib
                || params.iterations > limits.max_iterations
                || params.parallelism > limits.max_parallelism
                || !params.at_least_minimum()
            {
                return Err(SealError::KdfRejected);
            }
            derived = derive(p, &salt, &params)?;
            &derived
        }
        (KDF_ARGON2ID | KDF_RAW, UnsealWith::Key(k)) if k.kdf == kdf => &k.key,
        (KDF_RAW | KDF_ARGON2ID, _) => return Err(SealError::WrongSecretKind),
        _ => return Err(SealError::KdfRejected),
    };
    let plaintext = xchacha_open(key.expose(), &nonce, header, rest)
        .map_err(|_| SealError::AuthenticationFailed)?;
    Ok(Unsealed { context, plaintext })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    fn small() -> KdfParams {
        KdfParams::MINIMUM
    }

    #[test]
    fn passphrase_record_opens_with_passphrase_and_rejects_wrong_one() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([5; 32]);
        let key = SealKey::from_passphrase(b"correct horse", small(), &mut rng).unwrap();
        let rec = seal(&key, *b"TEST", b"c", b"secret state", &mut rng);
        let l = KdfLimits::default();
        let o = unseal(UnsealWith::Passphrase(b"correct horse"), *b"TEST", &rec, &l).unwrap();
        assert_eq!(&o.plaintext[..], b"secret state");
        let o = unseal(UnsealWith::Key(&key), *b"TEST", &rec, &l).unwrap();
        assert_eq!(&o.plaintext[..], b"secret state");
        assert_eq!(
            unseal(UnsealWith::Passphrase(b"wrong"), *b"TEST", &rec, &l).unwrap_err(),
            SealError::AuthenticationFailed
        );
    }

    #[test]
    fn tampered_truncated_and_foreign_records_are_rejected() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([6; 32]);
        let key = SealKey::from_bytes([9; 32]);
        let rec = seal(&key, *b"TEST", b"ctx", b"state", &mut rng);
        let l = KdfLimits::default();
        for i in 0..rec.len() {
            let mut bad = rec.clone();
            bad[i] ^= 0x40;
            assert!(
                unseal(UnsealWith::Key(&key), *b"TEST", &bad, &l).is_err(),
                "byte {i}"
            );
        }
        for n in 0..rec.len() {
            assert!(unseal(UnsealWith::Key(&key), *b"TEST", &rec[..n], &l).is_err());
        }
        assert_eq!(
            unseal(UnsealWith::Key(&key), *b"OTHR", &rec, &l).unwrap_err(),
            SealError::WrongMagic
        );
        assert_eq!(
            unseal(UnsealWith::Passphrase(b"x"), *b"TEST", &rec, &l).unwrap_err(),
            SealError::WrongSecretKind
        );
    }

    #[test]
    fn kdf_parameters_above_limits_are_refused_before_deriving() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([7; 32]);
        let key = SealKey::from_passphrase(b"pw", small(), &mut rng).unwrap();
        let rec = seal(&key, *b"TEST", b"", b"s", &mut rng);
        let tight = KdfLimits {
            max_memory_kib: KdfParams::MIN_MEMORY_KIB - 1,
            ..KdfLimits::default()
        };
        assert_eq!(
            unseal(UnsealWith::Passphrase(b"pw"), *b"TEST", &rec, &tight).unwrap_err(),
            SealError::KdfRejected
        );
    }

    /// Below the minimum nothing is derived: not when sealing, and not for a header that asks
    /// for less (memory at bytes 6..10, iterations at 10..14, lanes at 14..18).
    #[test]
    fn kdf_parameters_below_the_minimum_are_refused() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([8; 32]);
        for weak in [
            KdfParams {
                memory_kib: KdfParams::MIN_MEMORY_KIB - 1,
                ..KdfParams::MINIMUM
            },
            KdfParams {
                iterations: 1,
                ..KdfParams::MINIMUM
            },
            KdfParams {
                parallelism: 0,
                ..KdfParams::MINIMUM
            },
        ] {
            assert_eq!(
                SealKey::from_passphrase(b"pw", weak, &mut rng).err(),
                Some(SealError::KdfRejected),
                "{weak:?}"
            );
        }
        let key = SealKey::from_passphrase(b"pw", small(), &mut rng).unwrap();
        let rec = seal(&key, *b"TEST", b"", b"s", &mut rng);
        let l = KdfLimits::default();
        for (at, value) in [(6, KdfParams::MIN_MEMORY_KIB - 1), (10, 1), (14, 0)] {
            let mut forged = rec.clone();
            forged[at..at + 4].copy_from_slice(&value.to_be_bytes());
            assert_eq!(
                unseal(UnsealWith::Passphrase(b"pw"), *b"TEST", &forged, &l).unwrap_err(),
                SealError::KdfRejected
            );
        }
    }
}
