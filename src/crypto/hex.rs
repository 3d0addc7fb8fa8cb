//! Strict hexadecimal, as the Fabstir wire needs it: the crate's one hex codec.
//!
//! The Fabstir SDK's own decoder maps non-hex pairs to wrong bytes (`"zz"` → `00`); sealwire
//! never does: a non-hex character or an odd length is an error. One leading `0x`/`0X` may be
//! stripped; both cases are accepted. Encoding is lower case without prefix.
//!
//! Two decoders, one rule: [`decode_secret`] (keys: `sessionKey`, `HOST_PRIVATE_KEY`, seeds)
//! runs in constant time over `base16ct`, so neither the timing nor the cache lines it touches
//! depend on the digits; the others use a 256-byte table, which is faster and is used only for
//! public bytes (ciphertexts, nonces, AADs, addresses, public keys).

use alloc::string::String;
use alloc::vec::Vec;

/// Why a hex string was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HexError {
    /// The number of digits is odd.
    OddLength,
    /// A character is not `0-9a-fA-F`.
    InvalidChar,
    /// The decoded length is not the one required.
    WrongLength,
}

impl core::fmt::Display for HexError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            HexError::OddLength => "hex string has an odd number of digits",
            HexError::InvalidChar => "hex string contains a non-hex character",
            HexError::WrongLength => "hex string decodes to the wrong length",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for HexError {}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The lower-case digit of a nibble (masked to `0..16`, so `get` never misses).
#[inline(always)]
fn digit(n: u8) -> u8 {
    DIGITS.get(usize::from(n & 0x0f)).copied().unwrap_or(b'0')
}

/// Value of each byte as a hex digit, or `0xff` when it is not one.
const NIBBLE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut c = 0usize;
    while c < 256 {
        // Runs at compile time, where an out-of-bounds index is a build error, never a
        // panic (and `c < 256` keeps it in bounds and the cast exact).
        #[allow(clippy::indexing_slicing)]
        {
            t[c] = digit_value(c as u8);
        }
        c += 1;
    }
    t
};

/// The value of one hex digit, or `0xff` (builds [`NIBBLE`] at compile time).
const fn digit_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c.wrapping_sub(b'0'),
        b'a'..=b'f' => c.wrapping_sub(b'a').wrapping_add(10),
        b'A'..=b'F' => c.wrapping_sub(b'A').wrapping_add(10),
        _ => 0xff,
    }
}

/// Table lookup of one digit, for public bytes only (the table index is the character). A
/// `u8` index into 256 entries is always in bounds: `get` compiles to the bare load.
#[inline(always)]
fn nibble(c: u8) -> u8 {
    NIBBLE.get(usize::from(c)).copied().unwrap_or(0xff)
}

/// Decodes one pair of digits; `None` when either is not a hex digit.
#[inline(always)]
fn pair(hi: u8, lo: u8) -> Option<u8> {
    let h = nibble(hi);
    let l = nibble(lo);
    if (h | l) & 0xf0 != 0 {
        None
    } else {
        Some((h << 4) | l)
    }
}

/// Strips one leading `0x` / `0X` without branching on the characters: where a secret has no
/// prefix, its first digit takes the place of the `0` and must not decide a branch (a `match`
/// on `[b'0', b'x' | b'X', ..]` looks at the second character only when the first digit is `0`,
/// which `benches/timing.rs` measures). Whether there is a prefix is public; the digits are not.
fn strip_secret(s: &str) -> &[u8] {
    use subtle::ConstantTimeEq;
    let b = s.as_bytes();
    let [first, second, ..] = *b else {
        return b;
    };
    let prefixed = first.ct_eq(&b'0') & (second | 0x20).ct_eq(&b'x');
    if bool::from(prefixed) {
        b.get(2..).unwrap_or_default()
    } else {
        b
    }
}

/// Strips one leading `0x` / `0X` (public strings).
fn strip(s: &str) -> &[u8] {
    let b = s.as_bytes();
    match b {
        [b'0', b'x' | b'X', rest @ ..] => rest,
        _ => b,
    }
}

/// Appends the lower-case hex of `bytes` to `out`.
///
/// ```
/// let mut s = String::from("0x");
/// sealwire::crypto::hex::encode_to(&[0xde, 0xad], &mut s);
/// assert_eq!(s, "0xdead");
/// ```
pub fn encode_to(bytes: &[u8], out: &mut String) {
    // A capacity hint: saturating is right (a string that long cannot be allocated anyway).
    out.reserve(bytes.len().saturating_mul(2));
    let mut block = [0u8; 128];
    for chunk in bytes.chunks(64) {
        let mut used = 0usize;
        for (dst, &b) in block.chunks_exact_mut(2).zip(chunk) {
            if let [hi, lo] = dst {
                *hi = digit(b >> 4);
                *lo = digit(b & 0x0f);
            }
            used = used.saturating_add(2); // at most 128: the block's size
        }
        // Only ASCII digits were written, so this never fails.
        if let Some(Ok(text)) = block.get(..used).map(core::str::from_utf8) {
            out.push_str(text);
        }
    }
}

/// Lower-case hex of `bytes`, no prefix.
///
/// ```
/// assert_eq!(sealwire::crypto::hex::encode(&[0, 255]), "00ff");
/// ```
pub fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len().saturating_mul(2));
    encode_to(bytes, &mut s);
    s
}

/// Length in bytes that `s` decodes to (after an optional `0x`), or an error for odd length.
///
/// ```
/// assert_eq!(sealwire::crypto::hex::decoded_len("0xabcd"), Ok(2));
/// ```
pub fn decoded_len(s: &str) -> Result<usize, HexError> {
    let b = strip(s);
    if !b.len().is_multiple_of(2) {
        return Err(HexError::OddLength);
    }
    Ok(b.len() / 2)
}

/// Decodes `s` into `out`, which must be exactly [`decoded_len`] bytes long.
///
/// ```
/// let mut out = [0u8; 2];
/// sealwire::crypto::hex::decode_to_slice("BEef", &mut out).unwrap();
/// assert_eq!(out, [0xbe, 0xef]);
/// assert!(sealwire::crypto::hex::decode_to_slice("zz00", &mut out).is_err());
/// ```
pub fn decode_to_slice(s: &str, out: &mut [u8]) -> Result<(), HexError> {
    let b = strip(s);
    if !b.len().is_multiple_of(2) {
        return Err(HexError::OddLength);
    }
    if b.len() / 2 != out.len() {
        return Err(HexError::WrongLength);
    }
    let mut bad = false;
    for (o, digits) in out.iter_mut().zip(b.chunks_exact(2)) {
        let &[hi, lo] = digits else { continue };
        match pair(hi, lo) {
            Some(v) => *o = v,
            None => bad = true,
        }
    }
    if bad {
        return Err(HexError::InvalidChar);
    }
    Ok(())
}

/// Decodes `s` (any length) into a new vector.
///
/// ```
/// assert_eq!(sealwire::crypto::hex::decode("0x0102").unwrap(), vec![1, 2]);
/// assert_eq!(sealwire::crypto::hex::decode("123"), Err(sealwire::crypto::hex::HexError::OddLength));
/// ```
pub fn decode(s: &str) -> Result<Vec<u8>, HexError> {
    let n = decoded_len(s)?;
    let mut v = alloc::vec![0u8; n];
    decode_to_slice(s, &mut v)?;
    Ok(v)
}

/// Decodes `s` into an array of exactly `N` bytes.
///
/// Checks the characters before the length, so a malformed string of the wrong length is
/// reported as malformed.
///
/// ```
/// let a: [u8; 2] = sealwire::crypto::hex::decode_array("0a0b").unwrap();
/// assert_eq!(a, [10, 11]);
/// assert_eq!(sealwire::crypto::hex::decode_array::<3>("0a0b"), Err(sealwire::crypto::hex::HexError::WrongLength));
/// ```
pub fn decode_array<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    check(s)?;
    let mut out = [0u8; N];
    decode_to_slice(s, &mut out)?;
    Ok(out)
}

/// Validates `s` as hex (even length, hex digits only) without decoding.
///
/// ```
/// assert!(sealwire::crypto::hex::check("0XAB").is_ok());
/// assert!(sealwire::crypto::hex::check("a-").is_err());
/// ```
pub fn check(s: &str) -> Result<(), HexError> {
    let b = strip(s);
    if !b.len().is_multiple_of(2) {
        return Err(HexError::OddLength);
    }
    if b.iter().all(|&c| nibble(c) != 0xff) {
        Ok(())
    } else {
        Err(HexError::InvalidChar)
    }
}

/// Decodes a secret: `s` (after an optional `0x`) must be exactly `2 * N` hex digits. Runs in
/// constant time for a given length (no table, no branch on a digit) and returns the bytes in
/// storage that is wiped on drop.
///
/// ```
/// let k = sealwire::crypto::hex::decode_secret::<2>("0xBEef").unwrap();
/// assert_eq!(*k, [0xbe, 0xef]);
/// assert!(sealwire::crypto::hex::decode_secret::<2>("beeg").is_err());
/// assert_eq!(sealwire::crypto::hex::decode_secret::<2>("bee"),
///            Err(sealwire::crypto::hex::HexError::OddLength));
/// ```
pub fn decode_secret<const N: usize>(s: &str) -> Result<zeroize::Zeroizing<[u8; N]>, HexError> {
    let b = strip_secret(s);
    if !b.len().is_multiple_of(2) {
        return Err(HexError::OddLength);
    }
    if b.len() / 2 != N {
        return Err(HexError::WrongLength);
    }
    let mut out = zeroize::Zeroizing::new([0u8; N]);
    base16ct::mixed::decode(b, &mut out[..]).map_err(|_| HexError::InvalidChar)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pair is refused when either digit is not hex, also when both are not (mutation
    /// testing found `|` vs `^` in the check untested: two bad digits would cancel out).
    #[test]
    fn a_pair_with_any_non_hex_digit_is_refused() {
        for bad in [
            "zz",
            "gg",
            "zg",
            "0g",
            "g0",
            "  ",
            "::",
            "@@",
            "GG",
            "\u{7f}\u{7f}",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
            assert!(decode_array::<1>(bad).is_err(), "{bad:?}");
            assert!(decode_secret::<1>(bad).is_err(), "{bad:?}");
        }
        assert_eq!(decode("0aFf").unwrap(), [0x0a, 0xff]);
    }

    #[test]
    fn the_secret_decoder_agrees_with_the_table_on_every_pair() {
        for hi in 0..=255u8 {
            for lo in 0..=255u8 {
                let s = [hi, lo];
                let Ok(text) = core::str::from_utf8(&s) else {
                    continue;
                };
                let table = decode_array::<1>(text);
                let secret = decode_secret::<1>(text).map(|k| *k);
                assert_eq!(table, secret, "{text:?}");
            }
        }
    }

    #[test]
    fn both_strippers_agree() {
        for s in [
            "", "0", "0x", "0X", "0x0", "0xab", "00ab", "x0ab", "0y12", "ab", "0xx1",
        ] {
            assert_eq!(strip(s), strip_secret(s), "{s:?}");
        }
    }

    #[test]
    fn sdk_lenient_pairs_are_rejected() {
        for bad in ["zz", " 1", "1g", "-1", "0x0x00", "0"] {
            assert!(decode(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn round_trip_all_bytes() {
        let all: Vec<u8> = (0..=255u8).collect();
        let s = encode(&all);
        assert_eq!(decode(&s).unwrap(), all);
        assert_eq!(decode(&s.to_uppercase()).unwrap(), all);
    }
}
