//! BLAKE2s as WireGuard uses it: `HASH`, keyed `MAC` (16-byte output), `HMAC` and the HKDF-style
//! `KDF1/2/3` of the WireGuard paper §5.4. All are one call into the `blake2`/`hmac` crates.

use blake2::digest::consts::U16;
use blake2::digest::{Digest, KeyInit, Mac};
use blake2::{Blake2s256, Blake2sMac};
use hmac::SimpleHmac;
use zeroize::Zeroizing;

type HmacBlake2s = SimpleHmac<Blake2s256>;

/// `HASH(parts...)`: unkeyed BLAKE2s-256 over the concatenation of `parts`.
pub(crate) fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `MAC(key, parts...)`: keyed BLAKE2s with a 16-byte output (mac1, mac2, cookies).
pub(crate) fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    // Keys are 32 bytes or shorter; the error branch is unreachable for our callers.
    let Ok(mut m) = <Blake2sMac<U16> as KeyInit>::new_from_slice(key) else {
        return [0u8; 16];
    };
    for p in parts {
        Mac::update(&mut m, p);
    }
    m.finalize().into_bytes().into()
}

/// `HMAC(key, parts...)`: HMAC (RFC 2104) over BLAKE2s-256.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let Ok(mut m) = <HmacBlake2s as KeyInit>::new_from_slice(key) else {
        return Zeroizing::new([0u8; 32]);
    };
    for p in parts {
        Mac::update(&mut m, p);
    }
    Zeroizing::new(m.finalize().into_bytes().into())
}

/// `KDF_n(key, input)` of the WireGuard paper: `τ0 = HMAC(key, input)`, `τ1 = HMAC(τ0, 0x1)`,
/// `τi = HMAC(τ0, τ(i-1) ‖ i)`. Returns `τ1..τN`.
pub(crate) fn kdf<const N: usize>(key: &[u8], input: &[u8]) -> [Zeroizing<[u8; 32]>; N] {
    let t0 = hmac(key, &[input]);
    let mut prev: Zeroizing<[u8; 32]> = Zeroizing::new([0u8; 32]);
    const { assert!(N < 256, "the KDF counter is one byte") };
    core::array::from_fn(|i| {
        // `i < N < 256`, so the cast is exact and the increment cannot wrap.
        let counter = [(i as u8).wrapping_add(1)];
        let next = if i == 0 {
            hmac(&*t0, &[&counter])
        } else {
            hmac(&*t0, &[&*prev, &counter])
        };
        *prev = *next;
        next
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::hex;

    // RFC 7693 Appendix B: BLAKE2s-256("abc").
    #[test]
    fn blake2s_rfc7693_abc() {
        assert_eq!(
            hex::encode(&hash(&[b"a", b"bc"])),
            "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"
        );
    }

    // The KDF chain as the WireGuard paper §5.4 writes it (the byte-level check is interop).
    #[test]
    fn kdf_outputs_chain() {
        let [a, b] = kdf::<2>(b"key", b"input");
        let t0 = hmac(b"key", &[b"input"]);
        assert_eq!(*a, *hmac(&*t0, &[&[1u8]]));
        assert_eq!(*b, *hmac(&*t0, &[&*a, &[2u8]]));
    }
}
