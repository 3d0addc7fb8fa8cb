//! Standard base64 with padding (RFC 4648 §4), as WireGuard writes keys: the crate's one base64
//! codec, over `base64ct`, whose decoder runs in constant time (keys are secrets) and is strict
//! (one accepted spelling per value: canonical padding, zero unused bits, no whitespace).

use alloc::string::String;
use base64ct::{Base64, Encoding};
use zeroize::Zeroizing;

/// A string is not the canonical standard base64 of exactly the expected number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Base64Error;

impl core::fmt::Display for Base64Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("not canonical base64 of the expected length")
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Base64Error {}

/// Standard base64 with padding of `bytes`.
///
/// ```
/// assert_eq!(sealwire::crypto::base64::encode(b"foobar"), "Zm9vYmFy");
/// ```
pub fn encode(bytes: &[u8]) -> String {
    Base64::encode_string(bytes)
}

/// Decodes `s` into exactly `N` bytes, in constant time; the result is wiped on drop.
///
/// ```
/// let k = sealwire::crypto::base64::decode_array::<32>("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=").unwrap();
/// assert_eq!(*k, [1u8; 32]);
/// assert!(sealwire::crypto::base64::decode_array::<32>("AQEB").is_err());
/// ```
pub fn decode_array<const N: usize>(s: &str) -> Result<Zeroizing<[u8; N]>, Base64Error> {
    let mut out = Zeroizing::new([0u8; N]);
    match Base64::decode(s.as_bytes(), &mut out[..]) {
        Ok(decoded) if decoded.len() == N => Ok(out),
        _ => Err(Base64Error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4648 §10 test vectors.
    #[test]
    fn rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(i.as_bytes()), o);
        }
        assert_eq!(*decode_array::<6>("Zm9vYmFy").unwrap(), *b"foobar");
        assert_eq!(*decode_array::<4>("Zm9vYg==").unwrap(), *b"foob");
    }

    #[test]
    fn only_the_canonical_spelling_of_the_exact_length_decodes() {
        // RFC 7748 §6.1 Alice public key, as `wg pubkey` prints it.
        let good = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";
        assert!(decode_array::<32>(good).is_ok());
        for bad in [
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmp=", // non-zero unused bits
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo",  // no padding
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTm==", // too short
            "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo=", // url alphabet
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo==",
            " hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=",
        ] {
            assert_eq!(decode_array::<32>(bad), Err(Base64Error), "{bad}");
        }
        assert!(decode_array::<31>(good).is_err());
    }
}
