//! JSON as the Fabstir wire writes it: a borrowed, type-tagged view for parsing ([`Field`],
//! [`Obj`]) and the one emitter every frame goes through ([`JsonObject`]).
//!
//! Parsing goes through serde_json into borrowed structs whose fields are [`Field`]s: one JSON
//! value that borrows strings from the frame and skips nested containers without building a
//! `serde_json::Value`. Emission writes compact JSON exactly as `JSON.stringify` does (keys in
//! call order, non-ASCII raw, `"`, `\` and control characters escaped with lower-case `\u00xx`),
//! which is also exactly what serde_json writes for the same strings (tested below).
//!
//! Why an emitter of our own rather than `serde_json::to_string`: without `std`, serde_json
//! can only serialise into a buffer it allocates and grows itself, while the chunk path writes
//! into the caller's buffer without allocating, and plaintexts holding a session key or a
//! prompt are written into wiped, pre-sized storage (a growing buffer would leave copies in
//! freed memory).

use alloc::borrow::Cow;
use alloc::string::String;
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

/// The string in `f`, if it is one.
pub(crate) fn str_of<'x>(f: &'x Option<Field<'_>>) -> Option<&'x str> {
    f.as_ref().and_then(Field::as_str)
}

/// The unsigned integer in `f`, if it is one.
pub(crate) fn u64_of(f: &Option<Field<'_>>) -> Option<u64> {
    f.as_ref().and_then(Field::as_u64)
}

/// Writes one compact JSON object, keys in call order. Keys are literals of the protocol
/// (plain ASCII, never escaped); values go through the escaping of [`push_json_str`].
///
/// Every object is closed with [`JsonObject::close`]; nested objects and arrays borrow their
/// parent until they are closed.
pub(crate) struct JsonObject<'o> {
    out: &'o mut String,
    empty: bool,
}

impl<'o> JsonObject<'o> {
    /// Starts an object at the end of `out`.
    #[inline]
    pub(crate) fn open(out: &'o mut String) -> Self {
        out.push('{');
        JsonObject { out, empty: true }
    }

    // Inlined so that a literal key is copied with a constant length (no memcpy call): the
    // answer path writes a dozen keys per chunk.
    #[inline(always)]
    fn key(&mut self, key: &str) -> &mut String {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
        self.out
    }

    /// `"key":"value"` with `value` escaped.
    #[inline]
    pub(crate) fn str(&mut self, key: &str, value: &str) -> &mut Self {
        push_json_str(self.key(key), value);
        self
    }

    /// `"key":n`.
    #[inline]
    pub(crate) fn u64(&mut self, key: &str, n: u64) -> &mut Self {
        push_u64(self.key(key), n);
        self
    }

    /// `"key":true` / `false`.
    #[inline]
    pub(crate) fn bool(&mut self, key: &str, b: bool) -> &mut Self {
        self.key(key).push_str(if b { "true" } else { "false" });
        self
    }

    /// `"key":null`.
    #[inline]
    pub(crate) fn null(&mut self, key: &str) -> &mut Self {
        self.key(key).push_str("null");
        self
    }

    /// `"key":x` as JavaScript prints the number (see [`push_js_number`]).
    #[inline]
    pub(crate) fn js_number(&mut self, key: &str, x: f64) -> &mut Self {
        push_js_number(self.key(key), x);
        self
    }

    /// `"key":"<prefix><lower-case hex of bytes>"` (public bytes: table encoder).
    #[inline]
    pub(crate) fn hex(&mut self, key: &str, prefix: &str, bytes: &[u8]) -> &mut Self {
        let out = self.key(key);
        out.push('"');
        out.push_str(prefix);
        crate::crypto::hex::encode_to(bytes, out);
        out.push('"');
        self
    }

    /// `"key":"<lower-case hex of secret>"`, encoded in constant time (no table lookup
    /// indexed by a secret digit), through a wiped stack buffer.
    #[inline]
    pub(crate) fn secret_hex(&mut self, key: &str, secret: &[u8]) -> &mut Self {
        let out = self.key(key);
        out.push('"');
        let mut digits = zeroize::Zeroizing::new([0u8; 64]);
        for chunk in secret.chunks(32) {
            if let Ok(text) = base16ct::lower::encode_str(chunk, &mut digits[..]) {
                out.push_str(text);
            }
        }
        out.push('"');
        self
    }

    /// `"key":<json>` where `json` is already serialised JSON.
    #[inline]
    pub(crate) fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key).push_str(json);
        self
    }

    /// `"key":{…}`: the nested object, to be closed before this one continues.
    #[inline]
    pub(crate) fn object(&mut self, key: &str) -> JsonObject<'_> {
        JsonObject::open(self.key(key))
    }

    /// `"key":[…]`: the nested array, to be closed before this one continues.
    #[inline]
    pub(crate) fn array(&mut self, key: &str) -> JsonArray<'_> {
        let out = self.key(key);
        out.push('[');
        JsonArray { out, empty: true }
    }

    /// Ends the object.
    #[inline]
    pub(crate) fn close(self) {
        self.out.push('}');
    }
}

/// A JSON array being written (see [`JsonObject::array`]).
pub(crate) struct JsonArray<'o> {
    out: &'o mut String,
    empty: bool,
}

impl JsonArray<'_> {
    #[inline]
    fn next(&mut self) -> &mut String {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out
    }

    /// Appends an escaped string.
    #[inline]
    pub(crate) fn str(&mut self, value: &str) -> &mut Self {
        push_json_str(self.next(), value);
        self
    }

    /// Appends an object, to be closed before the array continues.
    #[inline]
    pub(crate) fn object(&mut self) -> JsonObject<'_> {
        JsonObject::open(self.next())
    }

    /// Ends the array.
    #[inline]
    pub(crate) fn close(self) {
        self.out.push(']');
    }
}

/// Appends `s` as a JSON string literal exactly as `JSON.stringify` (and serde_json) write it.
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
    let mut buf = [0u8; super::LABEL_LEN];
    let label = super::indexed_label(&mut buf, b"", n);
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
    use proptest::prelude::*;

    #[test]
    fn json_strings_are_escaped_like_json_stringify() {
        let mut s = String::new();
        push_json_str(&mut s, "mistral \"q\" \\ back\nslash\t\u{1}é→");
        assert_eq!(s, "\"mistral \\\"q\\\" \\\\ back\\nslash\\t\\u0001é→\"");
    }

    #[test]
    fn every_control_character_and_ascii_byte_escapes_as_serde_json_does() {
        for c in (0u32..0x80).chain([0x7f, 0xe9, 0x2028, 0x2029, 0x1f600]) {
            let text: String = ['a', char::from_u32(c).unwrap_or('?'), 'b']
                .iter()
                .collect();
            let mut ours = String::new();
            push_json_str(&mut ours, &text);
            assert_eq!(ours, serde_json::to_string(&text).unwrap(), "U+{c:04X}");
        }
    }

    #[test]
    fn js_numbers() {
        let mut s = String::new();
        push_js_number(&mut s, 0.7);
        s.push(' ');
        push_js_number(&mut s, 1.0);
        s.push(' ');
        push_js_number(&mut s, f64::NAN);
        assert_eq!(s, "0.7 1 null");
    }

    #[test]
    fn nested_objects_and_arrays_close_in_order() {
        let mut out = String::new();
        let mut o = JsonObject::open(&mut out);
        o.str("a", "x\"").u64("n", 7).bool("b", false).null("z");
        let mut inner = o.object("in");
        inner.hex("h", "0x", &[0xab]).secret_hex("k", &[0x01, 0xfe]);
        inner.close();
        let mut list = o.array("l");
        list.str("q");
        list.object().close();
        list.close();
        o.js_number("t", 0.5).raw("r", "[1]");
        o.close();
        assert_eq!(
            out,
            r#"{"a":"x\"","n":7,"b":false,"z":null,"in":{"h":"0xab","k":"01fe"},"l":["q",{}],"t":0.5,"r":[1]}"#
        );
    }

    proptest! {
        /// The escaping of every string a frame can carry equals serde_json's.
        #[test]
        fn any_string_escapes_as_serde_json_does(text in any::<String>()) {
            let mut ours = String::new();
            push_json_str(&mut ours, &text);
            prop_assert_eq!(ours, serde_json::to_string(&text).unwrap());
        }

        #[test]
        fn secret_hex_equals_the_table_encoder(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let (mut a, mut b) = (String::new(), String::new());
            let mut o = JsonObject::open(&mut a);
            o.secret_hex("k", &bytes);
            o.close();
            let mut o = JsonObject::open(&mut b);
            o.hex("k", "", &bytes);
            o.close();
            prop_assert_eq!(a, b);
        }
    }
}
