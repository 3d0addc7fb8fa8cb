//! The secrets a flow handles, named, and derived independently of sealwire: the key
//! schedules are written here from the specifications over the primitive crates (x25519-dalek,
//! k256, hmac, sha2, blake2, hkdf), so the test looks for the bytes the protocols *must*
//! produce, not for whatever sealwire happens to compute.

use hmac::{Hmac, KeyInit, Mac, SimpleHmac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::watch::{self, NEEDLE};

/// The named secrets of one test; their needles go to the allocator with [`Secrets::install`].
#[derive(Default)]
pub struct Secrets {
    names: Vec<String>,
    needles: Zeroizing<Vec<u8>>,
    owners: Vec<u32>,
    /// Secrets this build is documented to leave (found ones are reported, not failures).
    exempt: Vec<bool>,
}

impl Secrets {
    /// Registers `bytes` (at least 16) under `name`: needles cover all of it, 16 bytes each,
    /// the last one aligned to its end.
    pub fn add(&mut self, name: impl Into<String>, bytes: &[u8]) {
        self.add_exempt_if(false, name, bytes);
    }

    /// Like [`Secrets::add`]; when `exempt`, a hit is reported but is not a failure.
    pub fn add_exempt_if(&mut self, exempt: bool, name: impl Into<String>, bytes: &[u8]) {
        self.exempt.push(exempt);
        assert!(bytes.len() >= NEEDLE, "a secret of at least {NEEDLE} bytes");
        let id = u32::try_from(self.names.len()).unwrap();
        self.names.push(name.into());
        let mut starts: Vec<usize> = (0..=bytes.len() - NEEDLE).step_by(NEEDLE).collect();
        if !bytes.len().is_multiple_of(NEEDLE) {
            starts.push(bytes.len() - NEEDLE);
        }
        for s in starts {
            let n = &bytes[s..s + NEEDLE];
            // A needle of one repeated byte would match padding and fills, not a secret.
            assert!(
                n.iter().any(|&b| b != n[0]),
                "low-entropy secret {:?}",
                self.names.last()
            );
            self.needles.extend_from_slice(n);
            self.owners.push(id);
        }
    }

    /// Registers `bytes` and its lower- and upper-case hex (how keys travel in JSON and files).
    pub fn add_with_hex(&mut self, name: &str, bytes: &[u8]) {
        self.add(name, bytes);
        let lower = Zeroizing::new(hex::encode(bytes));
        self.add(format!("{name} (hex)"), lower.as_bytes());
        let upper = Zeroizing::new(lower.to_uppercase());
        self.add(format!("{name} (HEX)"), upper.as_bytes());
    }

    /// Hands the needles to the allocator (on the disarmed test thread).
    pub fn install(&self) {
        let mut v: Vec<([u8; NEEDLE], u32)> = self
            .needles
            .chunks_exact(NEEDLE)
            .zip(&self.owners)
            .map(|(n, &o)| (n.try_into().unwrap(), o))
            .collect();
        watch::install(&mut v);
        zeroize::Zeroize::zeroize(&mut v);
    }

    /// One line per secret found in freed memory: (failures, exempt ones).
    pub fn report(&self) -> (Vec<String>, Vec<String>) {
        let (mut failures, mut exempt) = (Vec::new(), Vec::new());
        for (s, n, size, offset) in watch::hits(self.names.len()) {
            let line = format!(
                "{}: in {n} freed block(s), the first of {size} bytes at offset {offset}",
                self.names[s]
            );
            if self.exempt[s] {
                exempt.push(line);
            } else {
                failures.push(line);
            }
        }
        (failures, exempt)
    }
}

// ------------------------------------------------------------------ primitives

pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

pub fn hmac_blake2s(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <SimpleHmac<blake2::Blake2s256> as KeyInit>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// X25519 public key of a private scalar.
pub fn x25519_pub(private: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::x25519(*private, x25519_dalek::X25519_BASEPOINT_BYTES)
}

pub fn x25519(private: &[u8; 32], public: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::x25519(*private, *public)
}

// ------------------------------------------------------------------ chat: Noise XX, ratchet

/// Noise's `HKDF(ck, ikm)` with two outputs (Noise rev. 34 §4.3), and the temporary key.
fn noise_hkdf2(ck: &[u8; 32], ikm: &[u8]) -> ([u8; 32], [u8; 32], [u8; 32]) {
    let temp = hmac_sha256(ck, &[ikm]);
    let o1 = hmac_sha256(&temp, &[&[1]]);
    let o2 = hmac_sha256(&temp, &[&o1, &[2]]);
    (temp, o1, o2)
}

/// `Noise_XX_25519_ChaChaPoly_SHA256` between an initiator with statics/ephemerals
/// `(s_i, e_i)` and a responder with public keys `(s_r, e_r)`: every intermediate secret
/// (named after `label`) into `out`, and the two `Split()` chain keys (i→r, r→i).
///
/// Only the chaining key matters for the keys: `ck` starts as the protocol name (32 bytes) and
/// absorbs `ee`, `es`, `se` in turn; the handshake hash `h` never feeds it.
pub fn noise_xx(
    label: &str,
    s_i: &[u8; 32],
    e_i: &[u8; 32],
    s_r_pub: &[u8; 32],
    e_r_pub: &[u8; 32],
    out: &mut Secrets,
) -> ([u8; 32], [u8; 32]) {
    let mut ck = *b"Noise_XX_25519_ChaChaPoly_SHA256";
    for (token, dh) in [
        ("ee", x25519(e_i, e_r_pub)),
        ("es", x25519(e_i, s_r_pub)),
        ("se", x25519(s_i, e_r_pub)),
    ] {
        let (temp, next, k) = noise_hkdf2(&ck, &dh);
        out.add(format!("{label} DH {token}"), &dh);
        out.add(format!("{label} HKDF temp after {token}"), &temp);
        out.add(format!("{label} ck after {token}"), &next);
        out.add(format!("{label} handshake key after {token}"), &k);
        ck = next;
    }
    let (temp, i2r, r2i) = noise_hkdf2(&ck, &[]);
    out.add(format!("{label} Split temp"), &temp);
    (i2r, r2i)
}

/// Signal's symmetric ratchet: `(CK_n, MK_n)` for `n` in `0..count`.
pub fn ratchet(ck0: &[u8; 32], count: u64) -> Vec<([u8; 32], [u8; 32])> {
    let mut ck = *ck0;
    (0..count)
        .map(|_| {
            let mk = hmac_sha256(&ck, &[&[1]]);
            let here = ck;
            ck = hmac_sha256(&ck, &[&[2]]);
            (here, mk)
        })
        .collect()
}

// ------------------------------------------------------------------ tunnel: WireGuard IKpsk2

fn wg_kdf<const N: usize>(key: &[u8; 32], input: &[u8]) -> ([u8; 32], [[u8; 32]; N]) {
    let t0 = hmac_blake2s(key, &[input]);
    let mut prev: Vec<u8> = Vec::new();
    let outs = std::array::from_fn(|i| {
        let t = hmac_blake2s(&t0, &[&prev, &[i as u8 + 1]]);
        prev = t.to_vec();
        t
    });
    (t0, outs)
}

/// The WireGuard handshake (whitepaper §5.4.2–§5.4.4) of an initiator with static `s_i` and
/// ephemeral `e_i` and a responder with static public `s_r_pub` and ephemeral `e_r`, under
/// `psk`: every intermediate secret into `out`, and the transport keys
/// `(initiator→responder, responder→initiator)`.
pub fn wireguard(
    label: &str,
    s_i: &[u8; 32],
    e_i: &[u8; 32],
    s_r_pub: &[u8; 32],
    e_r: &[u8; 32],
    psk: &[u8; 32],
    out: &mut Secrets,
) -> ([u8; 32], [u8; 32]) {
    let mut c: [u8; 32] =
        blake2::Blake2s256::digest(b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s").into();
    let e_i_pub = x25519_pub(e_i);
    let s_i_pub = x25519_pub(s_i);
    let e_r_pub = x25519_pub(e_r);
    let mut step = |what: &str, input: &[u8], out: &mut Secrets| -> [u8; 32] {
        let (t0, [next, k]) = wg_kdf::<2>(&c, input);
        out.add(format!("{label} KDF temp {what}"), &t0);
        out.add(format!("{label} ck after {what}"), &next);
        out.add(format!("{label} key after {what}"), &k);
        c = next;
        k
    };
    step("e_i", &e_i_pub, out);
    for (what, dh) in [("es", x25519(e_i, s_r_pub)), ("ss", x25519(s_i, s_r_pub))] {
        out.add(format!("{label} DH {what}"), &dh);
        step(what, &dh, out);
    }
    step("e_r", &e_r_pub, out);
    for (what, dh) in [("ee", x25519(e_r, &e_i_pub)), ("se", x25519(e_r, &s_i_pub))] {
        out.add(format!("{label} DH {what}"), &dh);
        step(what, &dh, out);
    }
    let (t0, [next, tau, k]) = wg_kdf::<3>(&c, psk);
    out.add(format!("{label} KDF temp psk"), &t0);
    out.add(format!("{label} ck after psk"), &next);
    out.add(format!("{label} tau"), &tau);
    out.add(format!("{label} key after psk"), &k);
    let (t0, [i2r, r2i]) = wg_kdf::<2>(&next, &[]);
    out.add(format!("{label} transport KDF temp"), &t0);
    (i2r, r2i)
}

// ------------------------------------------------------------------ session: Fabstir init

/// The client's ephemeral secp256k1 key from its 48 random bytes, as noble's
/// `randomPrivateKey` does: `seed mod (n − 1) + 1` (big-endian).
pub fn ephemeral_from_seed48(seed: &[u8; 48]) -> [u8; 32] {
    use k256::elliptic_curve::bigint::{NonZero, U256, U384};
    let n_minus_1 = NonZero::<U256>::from_be_hex(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364140",
    );
    let r: U256 = U384::from_be_slice(seed)
        .rem(&n_minus_1)
        .wrapping_add(&U256::ONE);
    r.to_be_bytes().into()
}

/// ECDH x-coordinate of `secret · public` (both SEC1 / 32-byte big-endian).
pub fn secp256k1_ecdh_x(secret: &[u8; 32], public_sec1: &[u8]) -> [u8; 32] {
    let sk = k256::SecretKey::from_slice(secret).unwrap();
    let pk = k256::PublicKey::from_sec1_bytes(public_sec1).unwrap();
    let shared = k256::ecdh::diffie_hellman(sk.to_nonzero_scalar(), pk.as_affine());
    (*shared.raw_secret_bytes()).into()
}

/// Compressed SEC1 public key of a secp256k1 secret.
pub fn secp256k1_pub(secret: &[u8; 32]) -> Vec<u8> {
    use k256::elliptic_curve::sec1::ToSec1Point;
    let sk = k256::SecretKey::from_slice(secret).unwrap();
    sk.public_key().to_sec1_point(true).as_bytes().to_vec()
}

/// HKDF-SHA256 with a zero salt and empty info, 32 bytes (the Fabstir init key).
pub fn fabstir_init_key(x: &[u8; 32]) -> [u8; 32] {
    let mut okm = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(Some(&[0u8; 32]), x)
        .expand(b"", &mut okm)
        .unwrap();
    okm
}
