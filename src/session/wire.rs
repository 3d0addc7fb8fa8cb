//! Frame parsing and emission helpers (no crypto state).
//!
//! Parsing goes through serde_json into borrowed structs whose fields are [`Field`]s: a
//! type-tagged view of one JSON value that borrows strings from the frame and skips nested
//! containers without building a `serde_json::Value`. Emission writes compact JSON exactly as
//! `JSON.stringify` does (keys in the SDK's order, non-ASCII raw, lower-case `\u00xx` escapes).

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};
use core::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One JSON value, with strings borrowed where possible and containers skipped.
#[derive(Debug)]
pub(crate) enum Field<'a> {
    Str(Cow<'a, str>),
    U64(u64),
    I64(#[allow(dead_code)] i64),
    F64(f64),
    Bool(bool),
    Null,
    Array,
    Object,
}

impl<'a> Field<'a> {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Field::Str(s) => Some(s),
            _ => None,
        }
    }
    pub(crate) fn as_u64(&self) -> Option<u64> {
        match self {
            Field::U64(n) => Some(*n),
            _ => None,
        }
    }
    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self {
            Field::U64(n) => Some(*n as f64),
            Field::I64(n) => Some(*n as f64),
            Field::F64(x) => Some(*x),
            _ => None,
        }
    }
    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self {
            Field::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

struct FieldVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for FieldVisitor<'a> {
    type Value = Field<'a>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(String::from(v))))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Field::U64(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Field::I64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Field::F64(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Field::Bool(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::Object)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldVisitor(PhantomData))
    }
}

/// A value that should be an object of shape `T`; anything else is `Not`.
#[derive(Debug)]
pub(crate) enum Obj<T> {
    Obj(T),
    Not,
}

struct ObjVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
    type Value = Obj<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Obj::Obj)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Obj::Not)
    }
    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
        Ok(Obj::Not)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Obj::Not)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Obj::Not)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Obj::Not)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Obj::Not)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Obj::Not)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Obj::Not)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Obj::Not)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ObjVisitor(PhantomData))
    }
}

impl<T> Obj<T> {
    pub(crate) fn get(&self) -> Option<&T> {
        match self {
            Obj::Obj(t) => Some(t),
            Obj::Not => None,
        }
    }
}

/// Every field any client→node frame can carry (unknown fields are skipped).
#[derive(serde::Deserialize, Debug)]
pub(crate) struct InFrame<'a> {
    #[serde(rename = "type", borrow)]
    pub(crate) ty: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) payload: Option<Obj<InPayload<'a>>>,
    #[serde(borrow)]
    pub(crate) session_id: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) job_id: Option<Field<'a>>,
    #[serde(rename = "jobId", borrow)]
    pub(crate) job_id_camel: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) chain_id: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) id: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) user_address: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) vector_database: Option<Obj<PlainVectorDb<'a>>>,
    #[serde(borrow)]
    pub(crate) prompt: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) request: Option<Obj<PlainRequest<'a>>>,
    #[serde(borrow)]
    pub(crate) reason: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) web_search: Option<Field<'a>>,
    // `search_queries` in the envelope is deliberately not read: it repeats the prompt in
    // clear (spec §7.6); the node uses the copy inside the ciphertext.
}

/// Payload of `encrypted_session_init` / `encrypted_message` (and node→client frames).
#[derive(serde::Deserialize, Debug)]
#[allow(non_snake_case)]
pub(crate) struct InPayload<'a> {
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

/// `vector_database` of the plaintext `session_init`.
#[derive(serde::Deserialize, Debug)]
pub(crate) struct PlainVectorDb<'a> {
    #[serde(borrow)]
    pub(crate) manifest_path: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) user_address: Option<Field<'a>>,
}

/// `request` of the plaintext `prompt`.
#[derive(serde::Deserialize, Debug)]
pub(crate) struct PlainRequest<'a> {
    #[serde(borrow)]
    pub(crate) model: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) prompt: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) max_tokens: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) temperature: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) thinking: Option<Field<'a>>,
}

/// Decrypted `encrypted_session_init` plaintext (§2.3).
#[derive(serde::Deserialize)]
#[allow(non_snake_case)]
pub(crate) struct InitPlain<'a> {
    #[serde(borrow)]
    pub(crate) sessionKey: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) jobId: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) modelName: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) pricePerToken: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) recoveryPublicKey: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) vectorDatabase: Option<Obj<InitVectorDb<'a>>>,
}

/// `vectorDatabase` inside the init plaintext.
#[derive(serde::Deserialize)]
#[allow(non_snake_case)]
pub(crate) struct InitVectorDb<'a> {
    #[serde(borrow)]
    pub(crate) manifestPath: Option<Field<'a>>,
    #[serde(borrow)]
    pub(crate) userAddress: Option<Field<'a>>,
}

/// Decrypted `encrypted_message` plaintext (§3).
#[derive(serde::Deserialize)]
pub(crate) struct PromptPlain<'a> {
    #[serde(borrow)]
    pub(crate) prompt: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(crate) model: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(crate) max_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) temperature: Option<f64>,
    #[serde(borrow, default)]
    pub(crate) thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) images: Option<Vec<ImagePlain<'a>>>,
    #[serde(borrow, default)]
    pub(crate) search_queries: Option<Vec<Cow<'a, str>>>,
}

/// One image of a prompt.
#[derive(serde::Deserialize)]
pub(crate) struct ImagePlain<'a> {
    #[serde(borrow)]
    pub(crate) data: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) format: Cow<'a, str>,
}

/// Parses a frame that must be a JSON object (serde would also take an array for a struct).
pub(crate) fn parse_object<'a, T: Deserialize<'a>>(text: &'a str) -> Option<T> {
    let first = text
        .bytes()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(b'{') {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// Same for bytes (decrypted plaintexts); also rejects invalid UTF-8.
pub(crate) fn parse_object_bytes<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    let text = core::str::from_utf8(bytes).ok()?;
    parse_object(text)
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
pub(crate) fn parse_canonical_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 || (b.len() > 1 && b.first() == Some(&b'0')) {
        return None;
    }
    let mut n: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

/// `message_<n>` → n (canonical decimal only, so one index has exactly one AAD).
pub(crate) fn parse_message_aad(aad: &[u8]) -> Option<u64> {
    parse_canonical_u64(aad.strip_prefix(b"message_")?)
}

/// Writes `prefix` followed by the decimal `n` into `buf`, returning the used part.
pub(crate) fn indexed_label<'b>(buf: &'b mut [u8; 32], prefix: &[u8], n: u64) -> &'b [u8] {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    let digits = digits.get(i..).unwrap_or(&[]);
    let total = prefix.len() + digits.len();
    if let Some(dst) = buf.get_mut(..prefix.len()) {
        dst.copy_from_slice(prefix);
    }
    if let Some(dst) = buf.get_mut(prefix.len()..total) {
        dst.copy_from_slice(digits);
    }
    buf.get(..total).unwrap_or(&[])
}

/// Appends `s` as a JSON string literal exactly as `JSON.stringify` writes it.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0..=0x1f => Some(""),
            _ => None,
        };
        if let Some(e) = esc {
            out.push_str(s.get(start..i).unwrap_or(""));
            if e.is_empty() {
                let _ = write!(out, "\\u{:04x}", b);
            } else {
                out.push_str(e);
            }
            start = i + 1;
        }
    }
    out.push_str(s.get(start..).unwrap_or(""));
    out.push('"');
}

/// Appends a `u64` in decimal.
pub(crate) fn push_u64(out: &mut String, n: u64) {
    let mut buf = [0u8; 32];
    let label = indexed_label(&mut buf, b"", n);
    // Digits are ASCII.
    out.push_str(core::str::from_utf8(label).unwrap_or("0"));
}

/// Appends a finite `f64` as JavaScript's `Number.prototype.toString` would for the values a
/// prompt carries (integers without `.0`, decimals in shortest round-trip form).
pub(crate) fn push_js_number(out: &mut String, x: f64) {
    const SAFE: f64 = 9.007_199_254_740_992e15; // 2^53
    if x.is_finite() && x > -SAFE && x < SAFE && (x as i64) as f64 == x {
        let _ = write!(out, "{}", x as i64);
    } else if x.is_finite() {
        // serde_json uses the shortest round-trip representation (ryu), as JS does.
        match serde_json::to_string(&x) {
            Ok(s) => out.push_str(&s),
            Err(_) => out.push_str("null"),
        }
    } else {
        out.push_str("null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped_like_json_stringify() {
        let mut s = String::new();
        push_json_str(&mut s, "mistral \"q\" \\ back\nslash\t\u{1}é→");
        assert_eq!(s, "\"mistral \\\"q\\\" \\\\ back\\nslash\\t\\u0001é→\"");
    }

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
        let mut b = [0u8; 32];
        assert_eq!(indexed_label(&mut b, b"chunk_", 0), b"chunk_0");
        assert_eq!(
            indexed_label(&mut b, b"chunk_", u64::MAX),
            b"chunk_18446744073709551615"
        );
        let mut s = String::new();
        push_js_number(&mut s, 0.7);
        s.push(' ');
        push_js_number(&mut s, 1.0);
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
}
