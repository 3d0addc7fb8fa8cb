//! secp256k1 keys, Ethereum addresses, ECDH and recoverable ECDSA (the Fabstir identity layer).
//!
//! Signatures are produced with RFC 6979 deterministic nonces and normalised to low S, so they
//! are byte-reproducible; recovery is strict (1 ≤ r < n, 1 ≤ s ≤ n/2, recovery id 0 or 1).

use core::fmt;
use core::str::FromStr;
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use k256::elliptic_curve::bigint::{NonZero, U256, U384};
use zeroize::Zeroizing;

use super::{hex, kdf, SecretBytes};

/// Why a key, address or signature was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The secret scalar is zero or not below the group order.
    InvalidSecretKey,
    /// The bytes are not a valid SEC1 encoding of a point on the curve.
    InvalidPublicKey,
    /// The text is not `0x` followed by 40 hex digits.
    InvalidAddress,
    /// The signature is malformed, out of range, high-S, has a bad recovery id, or recovers
    /// no key.
    InvalidSignature,
    /// Hex decoding failed.
    Hex(hex::HexError),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::InvalidSecretKey => f.write_str("invalid secp256k1 secret key"),
            KeyError::InvalidPublicKey => f.write_str("invalid secp256k1 public key"),
            KeyError::InvalidAddress => f.write_str("invalid Ethereum address"),
            KeyError::InvalidSignature => f.write_str("invalid secp256k1 signature"),
            KeyError::Hex(e) => write!(f, "invalid hex: {e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for KeyError {}

impl From<hex::HexError> for KeyError {
    fn from(e: hex::HexError) -> Self {
        KeyError::Hex(e)
    }
}

/// A secp256k1 secret key (a node's `HOST_PRIVATE_KEY`, a client's identity key).
///
/// Zeroized on drop; `Debug` prints only the address.
///
/// ```
/// use sealwire::crypto::secp256k1::SecretKey;
/// let key = SecretKey::from_hex("0x0000000000000000000000000000000000000000000000000000000000000001").unwrap();
/// assert_eq!(key.public_key().address().to_string(), "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf");
/// assert!(!format!("{key:?}").contains("0001"));
/// ```
// Fuzz targets clone established machines per input (cargo-fuzz builds with `--cfg fuzzing`);
// no other build can copy a key.
#[cfg_attr(fuzzing, derive(Clone))]
pub struct SecretKey(SigningKey);

/// n − 1 of secp256k1 (noble's `randomPrivateKey` reduces modulo it, then adds 1).
const N_MINUS_1: NonZero<U256> = NonZero::<U256>::from_be_hex(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364140",
);

/// Noble's `randomPrivateKey`: 48 random bytes, `mod (n − 1)`, `+ 1` — a scalar in `1..n`.
fn scalar_from_seed48(seed: &[u8; 48]) -> Zeroizing<[u8; 32]> {
    let wide = U384::from_be_slice(seed);
    let reduced: U256 = wide.rem(&N_MINUS_1).wrapping_add(&U256::ONE);
    let bytes: [u8; 32] = reduced.to_be_bytes().into();
    Zeroizing::new(bytes)
}

impl SecretKey {
    /// The key noble's `randomPrivateKey` makes from 48 random bytes (the SDK's ephemeral
    /// keys): the seed `mod (n − 1)`, `+ 1`, so every seed gives a valid key.
    pub(crate) fn from_seed48(seed: &[u8; 48]) -> Result<Self, KeyError> {
        Self::from_bytes(&scalar_from_seed48(seed))
    }

    /// From a 32-byte big-endian scalar in `1..n`.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        SigningKey::from_slice(bytes)
            .map(SecretKey)
            .map_err(|_| KeyError::InvalidSecretKey)
    }

    /// From 64 hex digits, with or without `0x` (decoded in constant time).
    ///
    /// ```
    /// # use sealwire::crypto::secp256k1::SecretKey;
    /// assert!(SecretKey::from_hex("00").is_err());
    /// let k = SecretKey::from_hex(&"07".repeat(32)).unwrap();
    /// assert_eq!(k.public_key(), SecretKey::from_bytes(&[7; 32]).unwrap().public_key());
    /// ```
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode_secret::<32>(s.trim())?;
        Self::from_bytes(&bytes)
    }

    /// A fresh random key.
    ///
    /// ```
    /// # use sealwire::crypto::secp256k1::SecretKey;
    /// let mut rng = rand_chacha::ChaCha20Rng::from_seed([1; 32]);
    /// # use rand_chacha::rand_core::SeedableRng;
    /// let k = SecretKey::generate(&mut rng);
    /// assert_eq!(k.public_key().to_compressed().len(), 33);
    /// ```
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        loop {
            let bytes = Zeroizing::new(super::random_array::<32, R>(rng));
            if let Ok(k) = Self::from_bytes(&bytes) {
                return k;
            }
        }
    }

    /// The secret scalar, big-endian (for persisting it; handle with care).
    ///
    /// ```
    /// # use sealwire::crypto::secp256k1::SecretKey;
    /// let k = SecretKey::from_bytes(&[3; 32]).unwrap();
    /// assert_eq!(k.to_bytes().expose(), &[3; 32]);
    /// ```
    pub fn to_bytes(&self) -> SecretBytes<32> {
        SecretBytes::new(self.0.to_bytes().into())
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.0.verifying_key())
    }

    /// The x-coordinate of `self · peer` (raw ECDH output, not hashed).
    pub(crate) fn ecdh_x(&self, peer: &PublicKey) -> Zeroizing<[u8; 32]> {
        let shared = k256::ecdh::diffie_hellman(self.0.as_nonzero_scalar(), peer.0.as_affine());
        Zeroizing::new((*shared.raw_secret_bytes()).into())
    }

    /// Recoverable ECDSA over a 32-byte prehash: `r ‖ s ‖ recid` with low S (RFC 6979).
    pub(crate) fn sign_prehash_recoverable(&self, prehash: &[u8; 32]) -> [u8; 65] {
        let (sig, recid) = self.0.sign_prehash_recoverable(prehash);
        let (sig, recid) = normalize(sig, recid);
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = recid.to_byte();
        out
    }
}

/// Brings S into the lower half, flipping the parity bit of the recovery id when it moves.
fn normalize(sig: Signature, recid: RecoveryId) -> (Signature, RecoveryId) {
    let low = sig.normalize_s();
    if low == sig {
        (sig, recid)
    } else {
        (
            low,
            RecoveryId::new(!recid.is_y_odd(), recid.is_x_reduced()),
        )
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}, [redacted])", self.public_key().address())
    }
}

/// A secp256k1 public key (a point on the curve, never the identity).
///
/// ```
/// use sealwire::crypto::secp256k1::PublicKey;
/// let g = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
/// let pk = PublicKey::from_hex(g).unwrap();
/// assert_eq!(sealwire::crypto::hex::encode(&pk.to_compressed()), g);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// From SEC1 bytes: 33-byte compressed or 65-byte uncompressed.
    pub fn from_sec1_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        VerifyingKey::from_sec1_bytes(bytes)
            .map(PublicKey)
            .map_err(|_| KeyError::InvalidPublicKey)
    }

    /// From exactly 33 compressed bytes (prefix 02/03, x < p, on the curve) — the strict form
    /// the Fabstir wire uses.
    pub fn from_compressed(bytes: &[u8]) -> Result<Self, KeyError> {
        match bytes {
            [0x02 | 0x03, ..] if bytes.len() == 33 => Self::from_sec1_bytes(bytes),
            _ => Err(KeyError::InvalidPublicKey),
        }
    }

    /// From hex of a compressed or uncompressed key, with or without `0x`.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode(s.trim())?;
        Self::from_sec1_bytes(&bytes)
    }

    /// The 33-byte compressed encoding.
    pub fn to_compressed(&self) -> [u8; 33] {
        let point = self.0.to_sec1_point(true);
        let mut out = [0u8; 33];
        if let Ok(arr) = <[u8; 33]>::try_from(point.as_bytes()) {
            out = arr;
        }
        out
    }

    /// The 65-byte uncompressed encoding (`04 ‖ X ‖ Y`).
    pub fn to_uncompressed(&self) -> [u8; 65] {
        let point = self.0.to_sec1_point(false);
        let mut out = [0u8; 65];
        if let Ok(arr) = <[u8; 65]>::try_from(point.as_bytes()) {
            out = arr;
        }
        out
    }

    /// The Ethereum address: last 20 bytes of keccak-256(X ‖ Y).
    pub fn address(&self) -> Address {
        let unc = self.to_uncompressed();
        let h = kdf::keccak256(&unc[1..]);
        let mut a = [0u8; 20];
        a.copy_from_slice(&h[12..]);
        Address(a)
    }

    /// Recovers the signer of a 32-byte prehash from `r ‖ s` and a recovery id (0 or 1).
    ///
    /// Strict: rejects r or s out of range, high S, recovery ids other than 0/1.
    pub fn recover_from_prehash(
        prehash: &[u8; 32],
        rs: &[u8; 64],
        recid: u8,
    ) -> Result<Self, KeyError> {
        let sig = Signature::from_slice(rs).map_err(|_| KeyError::InvalidSignature)?;
        if sig.normalize_s() != sig {
            return Err(KeyError::InvalidSignature);
        }
        let recid = match recid {
            0 | 1 => RecoveryId::from_byte(recid).ok_or(KeyError::InvalidSignature)?,
            _ => return Err(KeyError::InvalidSignature),
        };
        VerifyingKey::recover_from_prehash(prehash, &sig, recid)
            .map(PublicKey)
            .map_err(|_| KeyError::InvalidSignature)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(&self.to_compressed()))
    }
}

/// An Ethereum address (20 bytes). `Display` is EIP-55 mixed case; parsing accepts any case.
///
/// ```
/// use sealwire::crypto::secp256k1::Address;
/// let a: Address = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed".parse().unwrap();
/// assert_eq!(a.to_string(), "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(pub [u8; 20]);

impl Address {
    /// The 20 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lower = hex::encode(&self.0);
        let h = kdf::keccak256(lower.as_bytes());
        f.write_str("0x")?;
        for (i, c) in lower.chars().enumerate() {
            // `i < 40` digits of 20 bytes, so the hash byte `i / 2 < 32` always exists.
            let byte = h.get(i / 2).copied().unwrap_or(0);
            let nib = (byte >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
            if c.is_ascii_alphabetic() && nib >= 8 {
                write!(f, "{}", c.to_ascii_uppercase())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl FromStr for Address {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let s = s.trim();
        if !(s.starts_with("0x") || s.starts_with("0X")) || s.len() != 42 {
            return Err(KeyError::InvalidAddress);
        }
        hex::decode_array::<20>(s)
            .map(Address)
            .map_err(|_| KeyError::InvalidAddress)
    }
}

/// EIP-191 `personal_sign` digest: keccak-256("\x19Ethereum Signed Message:\n" ‖ len ‖ msg).
pub(crate) fn eip191_digest(msg: &[u8]) -> [u8; 32] {
    let mut len = alloc::string::String::new();
    let _ = fmt::write(&mut len, format_args!("{}", msg.len()));
    let mut h = sha3::Keccak256::default();
    sha3::Digest::update(&mut h, b"\x19Ethereum Signed Message:\n");
    sha3::Digest::update(&mut h, len.as_bytes());
    sha3::Digest::update(&mut h, msg);
    sha3::Digest::finalize(h).into()
}

#[cfg(test)]
mod tests {

    #[test]
    fn noble_random_private_key_reduction_matches_the_sdk_vector() {
        // session_init.json / init_basic: seed48 → ephemeral_private_key.
        let seed: [u8; 48] = hex::decode_array("9989c93175818614646978a4b1a2dfd8702b108d8c78e57470df356ed88aa1a92f55b4be51e37db9226a7b582e72071c").unwrap();
        assert_eq!(
            hex::encode(&scalar_from_seed48(&seed)[..]),
            "3347a69f04abf55b0c8070ff0bffafa6378850f5b07e03ef83129a29e31df7dd"
        );
    }

    use super::*;

    #[test]
    fn compressed_keys_are_exactly_33_bytes_and_addresses_need_their_prefix() {
        let k = SecretKey::from_bytes(&[7; 32]).unwrap();
        let c = k.public_key().to_compressed();
        assert!(PublicKey::from_compressed(&c).is_ok());
        let mut long = c.to_vec();
        long.push(0);
        assert_eq!(
            PublicKey::from_compressed(&long).err(),
            Some(KeyError::InvalidPublicKey)
        );
        assert_eq!(
            PublicKey::from_compressed(&c[..32]).err(),
            Some(KeyError::InvalidPublicKey)
        );
        let a = "0x08A1090077F29020Ace612919E26DD7c6aEff414";
        assert!(a.parse::<Address>().is_ok());
        assert!(a.to_uppercase().parse::<Address>().is_ok()); // 0X…
                                                              // Without the prefix, or with it but the wrong length: refused.
        assert!(a[2..].parse::<Address>().is_err());
        assert!(alloc::format!("{a}00").parse::<Address>().is_err());
        assert!("0x".parse::<Address>().is_err());
    }

    #[test]
    fn sign_then_recover_round_trips_and_is_low_s() {
        for i in 1..20u8 {
            let k = SecretKey::from_bytes(&[i; 32]).unwrap();
            let digest = kdf::sha256(&[&[i]]);
            let sig = k.sign_prehash_recoverable(&digest);
            let rs: [u8; 64] = sig[..64].try_into().unwrap();
            let pk = PublicKey::recover_from_prehash(&digest, &rs, sig[64]).unwrap();
            assert_eq!(pk, k.public_key());
            // The malleated (r, n - s, recid ^ 1) form is refused as high-S.
            let s = Signature::from_slice(&rs).unwrap();
            let (r_b, s_b) = s.split_scalars();
            use k256::elliptic_curve::ff::PrimeField;
            let high = Signature::from_scalars(r_b.to_repr(), (-*s_b).to_repr()).unwrap();
            let high_rs: [u8; 64] = high.to_bytes().into();
            assert_eq!(
                PublicKey::recover_from_prehash(&digest, &high_rs, sig[64] ^ 1),
                Err(KeyError::InvalidSignature)
            );
        }
    }

    #[test]
    fn recovery_id_above_one_is_refused() {
        let k = SecretKey::from_bytes(&[9; 32]).unwrap();
        let d = [5u8; 32];
        let sig = k.sign_prehash_recoverable(&d);
        let rs: [u8; 64] = sig[..64].try_into().unwrap();
        for bad in [2u8, 3, 27, 28] {
            assert!(PublicKey::recover_from_prehash(&d, &rs, bad).is_err());
        }
    }

    #[test]
    fn uncompressed_and_compressed_parse_to_the_same_key() {
        let k = SecretKey::from_bytes(&[4; 32]).unwrap().public_key();
        assert_eq!(PublicKey::from_sec1_bytes(&k.to_uncompressed()).unwrap(), k);
        assert!(PublicKey::from_compressed(&k.to_uncompressed()).is_err());
    }
}
