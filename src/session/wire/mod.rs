//! The Fabstir wire: every frame of [docs/fabstir-wire.md], parsed and emitted in one place,
//! for both directions, with no crypto state.
//!
//! | file | frames | emitted by | parsed by |
//! |---|---|---|---|
//! | [`client_frames`] | the view every client frame is parsed into; `stream_cancel`, `ping` | [`Client`](super::Client) | [`Node`](super::Node) |
//! | [`init`] | `encrypted_session_init` and its plaintext | client | node |
//! | [`message`] | `encrypted_message` and its plaintext (the prompt) | client | node |
//! | [`plaintext`] | the legacy `session_init` and `prompt` | client | node |
//! | [`node_frames`] | `session_init_ack`, `error`, `encrypted_chunk`, `encrypted_response`, `stream_chunk`, `stream_end`, `pong` | [`Node`](super::Node) | [`Client`](super::Client) |
//! | [`side`] | host-key challenge body and response, checkpoint delta and its published object | node | client |
//! | [`json`] | the borrowed JSON view parsers read and the one emitter every frame is written with | | |
//!
//! Each frame is written in the SDK's key order, byte for byte as `JSON.stringify` writes it
//! (the client's init frames reproduce the SDK's vectors exactly). Each parser reads the
//! fields in the order the checks must happen ([docs/fabstir-wire.md §2.5, §3]) and names the
//! first failure; where a check of the machine (a key lookup) has to come between two fields,
//! the parser stops before it and offers the rest as a second step.
//!
//! This module also owns the AEAD labels of the wire (`message_<n>`, `chunk_<i>`,
//! `encrypted_response_final`) and the shape of ids (canonical decimals).

pub(crate) mod client_frames;
pub(crate) mod init;
pub(crate) mod json;
pub(crate) mod message;
pub(crate) mod node_frames;
pub(crate) mod plaintext;
pub(crate) mod side;

use alloc::vec::Vec;

use serde::Deserialize;
use zeroize::Zeroizing;

use self::json::{str_of, Field, JsonObject, JsonOut, Obj};
use super::error::NodeError;
use super::VectorDatabase;
use crate::crypto::hex;

pub(crate) use self::client_frames::{ClientFrame, ClientFrameKind, StreamCancel, PING};
pub(crate) use self::init::{EncryptedSessionInit, InitPlaintext};
pub(crate) use self::message::{EncryptedMessage, PromptBody};
pub(crate) use self::node_frames::{
    EncryptedChunk, EncryptedResponse, ErrorFrame, InitAck, NodeFrame, NodeFrameKind, StreamChunk,
    StreamEndFrame, TokenLimit, PONG,
};
pub(crate) use self::plaintext::{PlainPrompt, PlainSessionInit};

/// `alg` of the init payload, byte for byte (U+2192 raw).
pub(crate) const ALG: &str =
    "secp256k1-ecdh(ephemeral\u{2192}static)+hkdf(sha256)+xchacha20-poly1305";
/// AAD prefix of a client message: `message_<n>`.
pub(crate) const MESSAGE_AAD: &[u8] = b"message_";
/// AAD prefix of an answer chunk: `chunk_<i>`.
pub(crate) const CHUNK_AAD: &[u8] = b"chunk_";
/// AAD of the encrypted finish reason as the reference node seals it: it says the answer is
/// over but not how long it was, so a [`Client`](super::Client) does not take it as the end.
pub(crate) const RESPONSE_FINAL_AAD: &[u8] = b"encrypted_response_final";
/// AAD prefix of sealwire's authenticated end of answer, `encrypted_response_final_<n>` with
/// `n` the number of chunks of the answer (the SDK decrypts under whatever `aadHex` says and
/// discards the frame, so it is unaffected).
pub(crate) const RESPONSE_END_AAD: &[u8] = b"encrypted_response_final_";
/// Room for the longest label: `encrypted_response_final_` and 20 digits.
pub(crate) const LABEL_LEN: usize = 48;
/// Longest request id / reason text echoed back.
pub(crate) const MAX_ECHO_LEN: usize = 256;
/// Longest `message` of an error frame.
pub(crate) const MAX_ERROR_MESSAGE_LEN: usize = 1024;

/// The payload fields of any sealed frame, in both directions (the init's, a message's, a
/// chunk's, a response's); unknown fields are skipped.
#[derive(Deserialize, Debug)]
#[allow(non_snake_case)]
pub(crate) struct PayloadFields<'a> {
    #[serde(borrow)]
    pub(crate) ephPubHex: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) saltHex: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) nonceHex: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) ciphertextHex: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) signatureHex: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) recid: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) info: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) aadHex: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) index: Option<Field<'a>>,
}

/// A sealed payload to emit: `{"ciphertextHex":…,"nonceHex":…,"aadHex":…}` (a chunk adds its
/// `index`).
pub(crate) struct Sealed<'a> {
    /// Ciphertext ‖ tag.
    pub(crate) sealed: &'a [u8],
    pub(crate) nonce: &'a [u8; 24],
    pub(crate) aad: &'a [u8],
}

impl Sealed<'_> {
    fn write<O: JsonOut + ?Sized>(&self, payload: &mut JsonObject<'_, O>) {
        payload
            .hex("ciphertextHex", "", self.sealed)
            .hex("nonceHex", "", self.nonce)
            .hex("aadHex", "", self.aad);
    }
}

/// A received sealed payload, strictly decoded (node side).
pub(crate) struct SealedIn {
    /// Ciphertext ‖ tag, wiped on drop (it is opened in place).
    pub(crate) sealed: Zeroizing<Vec<u8>>,
    pub(crate) nonce: [u8; 24],
    pub(crate) aad: Aad,
}

/// A decoded AAD: on the stack when short (every AAD the SDK sends is), else on the heap.
pub(crate) enum Aad {
    Inline([u8; 64], usize),
    Heap(Vec<u8>),
}

impl Aad {
    /// Strictly decodes `aad_hex` (already checked as hex).
    fn decode(aad_hex: &str) -> Result<Self, NodeError> {
        let bad_hex = |_| NodeError::InvalidHex("payload");
        let len = hex::decoded_len(aad_hex).map_err(bad_hex)?;
        let mut inline = [0u8; 64];
        match inline.get_mut(..len) {
            Some(dst) => {
                hex::decode_to_slice(aad_hex, dst).map_err(bad_hex)?;
                Ok(Aad::Inline(inline, len))
            }
            None => Ok(Aad::Heap(hex::decode(aad_hex).map_err(bad_hex)?)),
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Aad::Inline(bytes, len) => bytes.get(..*len).unwrap_or(&[]),
            Aad::Heap(v) => v,
        }
    }
}

/// Strictly decodes `ciphertextHex` straight into a (wiped-on-drop) buffer.
#[inline]
fn decode_sealed(ct_hex: &str) -> Result<Zeroizing<Vec<u8>>, NodeError> {
    let bad = |_| NodeError::InvalidHex("ciphertextHex");
    let len = hex::decoded_len(ct_hex).map_err(bad)?;
    let mut buf = Zeroizing::new(alloc::vec![0u8; len]);
    hex::decode_to_slice(ct_hex, &mut buf).map_err(bad)?;
    Ok(buf)
}

/// `vectorDatabase` inside the init plaintext ([docs/fabstir-wire.md §2.3]).
#[derive(Deserialize)]
pub(crate) struct CamelVectorDatabase<'a> {
    #[serde(rename = "manifestPath", borrow)]
    manifest_path: Option<Field<'a>>,
    #[serde(rename = "userAddress", borrow)]
    user_address: Option<Field<'a>>,
}

/// `vector_database` of the plaintext `session_init` ([docs/fabstir-wire.md §5.3]).
#[derive(Deserialize)]
pub(crate) struct SnakeVectorDatabase<'a> {
    #[serde(borrow)]
    manifest_path: Option<Field<'a>>,
    #[serde(borrow)]
    user_address: Option<Field<'a>>,
}

/// The two fields of either spelling.
pub(crate) trait VectorDatabaseFields {
    /// `(manifest path, user address)` when they are strings.
    fn strings(&self) -> (Option<&str>, Option<&str>);
}

impl VectorDatabaseFields for CamelVectorDatabase<'_> {
    fn strings(&self) -> (Option<&str>, Option<&str>) {
        (str_of(&self.manifest_path), str_of(&self.user_address))
    }
}

impl VectorDatabaseFields for SnakeVectorDatabase<'_> {
    fn strings(&self) -> (Option<&str>, Option<&str>) {
        (str_of(&self.manifest_path), str_of(&self.user_address))
    }
}

/// One reader for both spellings: absent is `None`; present, it must be an object with both
/// fields as strings, else `err`.
fn read_vector_database<T: VectorDatabaseFields>(
    value: &Option<Obj<T>>,
    err: NodeError,
) -> Result<Option<VectorDatabase>, NodeError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let (manifest_path, user_address) = value.get().ok_or(err)?.strings();
    Ok(Some(VectorDatabase {
        manifest_path: manifest_path.ok_or(err)?.into(),
        user_address: user_address.ok_or(err)?.into(),
    }))
}

/// One writer for both spellings (`camel`: the init plaintext's `vectorDatabase`, else the
/// plaintext `session_init`'s `vector_database`); nothing when `v` is `None`.
fn write_vector_database<O: JsonOut + ?Sized>(
    o: &mut JsonObject<'_, O>,
    v: Option<&VectorDatabase>,
    camel: bool,
) {
    let Some(v) = v else {
        return;
    };
    let (key, manifest, user) = if camel {
        ("vectorDatabase", "manifestPath", "userAddress")
    } else {
        ("vector_database", "manifest_path", "user_address")
    };
    let mut d = o.object(key);
    d.str(manifest, &v.manifest_path).str(user, &v.user_address);
    d.close();
}

/// Canonical unsigned decimal (BigInt `toString()`): digits only, no leading zero, ≤ 78 digits
/// (uint256).
pub(crate) fn is_decimal(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 78
        && b.iter().all(u8::is_ascii_digit)
        && !(b.len() > 1 && b.first() == Some(&b'0'))
}

/// Parses a canonical decimal `u64` (no sign, no leading zero).
fn parse_canonical_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 || (b.len() > 1 && b.first() == Some(&b'0')) {
        return None;
    }
    let mut n: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n
            .checked_mul(10)?
            .checked_add(u64::from(char::from(c).to_digit(10)?))?;
    }
    Some(n)
}

/// `message_<n>` → n (canonical decimal only, so one index has exactly one AAD).
pub(crate) fn parse_message_aad(aad: &[u8]) -> Option<u64> {
    parse_canonical_u64(aad.strip_prefix(MESSAGE_AAD)?)
}

/// `encrypted_response_final_<n>` → n, the chunk count the node sealed (canonical decimal).
pub(crate) fn parse_response_end_aad(aad: &[u8]) -> Option<u64> {
    parse_canonical_u64(aad.strip_prefix(RESPONSE_END_AAD)?)
}

/// Writes `prefix` followed by the decimal `n` into `buf`, returning the used part (empty if
/// `buf` is too short: every caller passes a [`LABEL_LEN`] buffer, which always fits).
pub(crate) fn indexed_label<'b>(buf: &'b mut [u8; LABEL_LEN], prefix: &[u8], n: u64) -> &'b [u8] {
    const DIGITS: &[u8; 10] = b"0123456789";
    let mut digits = [0u8; 20]; // u64::MAX has 20 digits
    let mut start = digits.len();
    let mut v = n;
    for slot in digits.iter_mut().rev() {
        *slot = DIGITS.get((v % 10) as usize).copied().unwrap_or(b'0');
        start = start.saturating_sub(1);
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let digits = digits.get(start..).unwrap_or(&[]);
    let total = prefix.len().saturating_add(digits.len());
    let Some((head, tail)) = buf
        .get_mut(..total)
        .and_then(|used| used.split_at_mut_checked(prefix.len()))
    else {
        return &[];
    };
    head.copy_from_slice(prefix);
    tail.copy_from_slice(digits);
    buf.get(..total).unwrap_or(&[])
}

/// `s` cut to at most `max` bytes at a character boundary.
pub(crate) fn truncate_chars(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    // The last char boundary at or below `max` (0 is always one).
    let end = (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    s.get(..end).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_aad_is_canonical_only() {
        assert_eq!(parse_message_aad(b"message_0"), Some(0));
        assert_eq!(parse_message_aad(b"message_42"), Some(42));
        assert_eq!(parse_message_aad(b"message_01"), None);
        assert_eq!(parse_message_aad(b"message_"), None);
        assert_eq!(parse_message_aad(b"message_+1"), None);
        assert_eq!(parse_message_aad(b"chunk_0"), None);
        assert_eq!(parse_message_aad(b"message_99999999999999999999"), None);
    }

    #[test]
    fn labels_and_numbers() {
        let mut b = [0u8; LABEL_LEN];
        assert_eq!(indexed_label(&mut b, CHUNK_AAD, 0), b"chunk_0");
        assert_eq!(
            indexed_label(&mut b, CHUNK_AAD, u64::MAX),
            b"chunk_18446744073709551615"
        );
        let mut s = alloc::string::String::new();
        json::push_js_number(&mut s, 0.7);
        s.push(' ');
        json::push_js_number(&mut s, 1.0);
        assert_eq!(s, "0.7 1");
    }

    #[test]
    fn decimal_ids() {
        assert!(is_decimal("0"));
        assert!(is_decimal("123"));
        assert!(!is_decimal("0x1"));
        assert!(!is_decimal("01"));
        assert!(!is_decimal(""));
        assert!(!is_decimal("-1"));
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate_chars("héllo", 2), "h");
        assert_eq!(truncate_chars("héllo", 3), "hé");
        assert_eq!(truncate_chars("hi", 10), "hi");
    }
}
