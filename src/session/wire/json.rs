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
use core::fmt;
use core::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use zeroize::Zeroizing;

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

/// The text of a raw JSON string token (`"…"` with its escapes) in wiped storage of exactly
/// its size; `None` when the token is not a valid JSON string.
///
/// Why not let serde_json unescape it: serde_json writes an escaped string into a scratch
/// buffer that grows and is freed unwiped, so a prompt with a quote or a newline would leave
/// copies of itself in freed memory. A [`RawValue`](serde_json::value::RawValue) field only
/// borrows the token from the (wiped) plaintext; this unescapes it, measuring first.
pub(crate) fn secret_str(raw: &serde_json::value::RawValue) -> Option<Zeroizing<String>> {
    let inner = raw.get().strip_prefix('"')?.strip_suffix('"')?;
    // No escape (the usual case): the token is the text (serde_json checked it has no
    // control character while skipping it).
    if memchr::memchr(b'\\', inner.as_bytes()).is_none() {
        let mut text = Zeroizing::new(String::with_capacity(inner.len()));
        text.push_str(inner);
        return Some(text);
    }
    let mut len = 0usize;
    unescape(inner, |piece| len = len.saturating_add(piece.len()))?;
    let mut text = Zeroizing::new(String::with_capacity(len));
    unescape(inner, |piece| text.push_str(piece))?;
    Some(text)
}

/// Walks the inside of a JSON string token, handing `emit` the unescaped text piece by piece;
/// `None` on anything a JSON string may not hold (a raw control character or quote, a bad
/// escape, a lone surrogate).
fn unescape(inner: &str, mut emit: impl FnMut(&str)) -> Option<()> {
    let bytes = inner.as_bytes();
    let hex4 = |at: usize| -> Option<u32> {
        let digits = bytes.get(at..at.checked_add(4)?)?;
        // from_str_radix alone would also take a sign.
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u32::from_str_radix(core::str::from_utf8(digits).ok()?, 16).ok()
    };
    let (mut i, mut run) = (0usize, 0usize);
    while let Some(&b) = bytes.get(i) {
        if b != b'\\' {
            if b < 0x20 || b == b'"' {
                return None;
            }
            i = i.checked_add(1)?;
            continue;
        }
        emit(inner.get(run..i)?);
        let mut utf8 = [0u8; 4];
        // `used`: bytes of the escape, backslash included.
        let (c, used) = match *bytes.get(i.checked_add(1)?)? {
            b'"' => ('"', 2),
            b'\\' => ('\\', 2),
            b'/' => ('/', 2),
            b'b' => ('\u{8}', 2),
            b'f' => ('\u{c}', 2),
            b'n' => ('\n', 2),
            b'r' => ('\r', 2),
            b't' => ('\t', 2),
            b'u' => {
                let hi = hex4(i.checked_add(2)?)?;
                if (0xd800..0xdc00).contains(&hi) {
                    // A high surrogate must be followed by an escaped low one.
                    if bytes.get(i.checked_add(6)?..i.checked_add(8)?)? != b"\\u" {
                        return None;
                    }
                    let lo = hex4(i.checked_add(8)?)?;
                    if !(0xdc00..0xe000).contains(&lo) {
                        return None;
                    }
                    let high = hi.checked_sub(0xd800)?.checked_mul(0x400)?;
                    let code = high.checked_add(lo.checked_sub(0xdc00)?)?;
                    (char::from_u32(code.checked_add(0x10000)?)?, 12)
                } else {
                    // A lone low surrogate is not a char: refused here.
                    (char::from_u32(hi)?, 6)
                }
            }
            _ => return None,
        };
        emit(c.encode_utf8(&mut utf8));
        i = i.checked_add(used)?;
        run = i;
    }
    emit(inner.get(run..)?);
    Some(())
}

/// The string in `f`, if it is one.
pub(crate) fn str_of<'x>(f: &'x Option<Field<'_>>) -> Option<&'x str> {
    f.as_ref().and_then(Field::as_str)
}

/// The unsigned integer in `f`, if it is one.
pub(crate) fn u64_of(f: &Option<Field<'_>>) -> Option<u64> {
    f.as_ref().and_then(Field::as_u64)
}

/// Where emitted JSON goes: a `String`, or a [`Measure`] that only counts the bytes.
///
/// Why two: a buffer that will hold a secret or a plaintext (the init's `sessionKey`, a
/// prompt) must never reallocate, since `String` frees its old buffer unwiped. Such text is
/// written twice by the same code ([`WriteJson`]): once into a `Measure`, then into a
/// wiped string of exactly that size ([`exact`]).
pub(crate) trait JsonOut {
    /// Appends text.
    fn push_str(&mut self, s: &str);
    /// Appends the lower-case hex of public bytes (a table encoder).
    fn push_hex(&mut self, bytes: &[u8]);
}

impl JsonOut for String {
    #[inline(always)]
    fn push_str(&mut self, s: &str) {
        String::push_str(self, s);
    }
    #[inline]
    fn push_hex(&mut self, bytes: &[u8]) {
        crate::crypto::hex::encode_to(bytes, self);
    }
}

/// Counts the bytes a [`WriteJson`] would write.
#[derive(Default)]
pub(crate) struct Measure(pub(crate) usize);

impl JsonOut for Measure {
    fn push_str(&mut self, s: &str) {
        self.0 = self.0.saturating_add(s.len());
    }
    fn push_hex(&mut self, bytes: &[u8]) {
        self.0 = self.0.saturating_add(bytes.len().saturating_mul(2));
    }
}

/// JSON text that can be written to any [`JsonOut`].
pub(crate) trait WriteJson {
    /// Writes the text to `out`.
    fn write_json<O: JsonOut + ?Sized>(&self, out: &mut O);
}

/// `t`'s text in a wiped string of exactly its length (measured first, so it never grows).
pub(crate) fn exact<T: WriteJson + ?Sized>(t: &T) -> Zeroizing<String> {
    let mut size = Measure::default();
    t.write_json(&mut size);
    let mut out = Zeroizing::new(String::with_capacity(size.0));
    t.write_json(&mut *out);
    debug_assert_eq!((out.len(), out.capacity()), (size.0, size.0));
    out
}

/// `t`'s text in a string of exactly its length (public text: a frame for the wire).
pub(crate) fn exact_frame<T: WriteJson + ?Sized>(t: &T) -> String {
    let mut size = Measure::default();
    t.write_json(&mut size);
    let mut out = String::with_capacity(size.0);
    t.write_json(&mut out);
    out
}

/// Writes one compact JSON object, keys in call order. Keys are literals of the protocol
/// (plain ASCII, never escaped); values go through the escaping of [`push_json_str`].
///
/// Every object is closed with [`JsonObject::close`]; nested objects and arrays borrow their
/// parent until they are closed.
pub(crate) struct JsonObject<'o, O: JsonOut + ?Sized = String> {
    out: &'o mut O,
    empty: bool,
}

impl<'o, O: JsonOut + ?Sized> JsonObject<'o, O> {
    /// Starts an object at the end of `out`.
    #[inline]
    pub(crate) fn open(out: &'o mut O) -> Self {
        out.push_str("{");
        JsonObject { out, empty: true }
    }

    // Inlined so that a literal key is copied with a constant length (no memcpy call): the
    // answer path writes a dozen keys per chunk.
    #[inline(always)]
    fn key(&mut self, key: &str) -> &mut O {
        if !self.empty {
            self.out.push_str(",");
        }
        self.empty = false;
        self.out.push_str("\"");
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

    /// `"key":"value"` for a literal of the protocol (a frame type, a code) that needs no
    /// escape: written as is, without scanning it.
    #[inline]
    pub(crate) fn lit(&mut self, key: &str, value: &'static str) -> &mut Self {
        // (Fuzzing builds keep debug assertions but skip this one: it would scan each literal.)
        #[cfg(not(fuzzing))]
        debug_assert!(first_escaped(value.as_bytes()).is_none(), "{value}");
        let out = self.key(key);
        out.push_str("\"");
        out.push_str(value);
        out.push_str("\"");
        self
    }

    /// `"key":"value"` with `value` the concatenation of `parts`, escaped.
    #[inline]
    pub(crate) fn strs(&mut self, key: &str, parts: &[&str]) -> &mut Self {
        let out = self.key(key);
        out.push_str("\"");
        for part in parts {
            push_escaped(out, part);
        }
        out.push_str("\"");
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
        out.push_str("\"");
        out.push_str(prefix);
        out.push_hex(bytes);
        out.push_str("\"");
        self
    }

    /// `"key":"<lower-case hex of secret>"`, encoded in constant time (no table lookup
    /// indexed by a secret digit), through a wiped stack buffer.
    #[inline]
    pub(crate) fn secret_hex(&mut self, key: &str, secret: &[u8]) -> &mut Self {
        let out = self.key(key);
        out.push_str("\"");
        let mut digits = zeroize::Zeroizing::new([0u8; 64]);
        for chunk in secret.chunks(32) {
            if let Ok(text) = base16ct::lower::encode_str(chunk, &mut digits[..]) {
                out.push_str(text);
            }
        }
        out.push_str("\"");
        self
    }

    /// `"key":<t's JSON>`.
    #[inline]
    pub(crate) fn nested<T: WriteJson + ?Sized>(&mut self, key: &str, t: &T) -> &mut Self {
        t.write_json(self.key(key));
        self
    }

    /// `"key":{…}`, a JSON object written compactly as serde_json writes it (a
    /// `serde_json::Map` keeps its keys sorted).
    #[inline]
    pub(crate) fn map(
        &mut self,
        key: &str,
        map: &serde_json::Map<String, serde_json::Value>,
    ) -> &mut Self {
        push_json_map(self.key(key), map);
        self
    }

    /// `"key":{…}`: the nested object, to be closed before this one continues.
    #[inline]
    pub(crate) fn object(&mut self, key: &str) -> JsonObject<'_, O> {
        JsonObject::open(self.key(key))
    }

    /// `"key":[…]`: the nested array, to be closed before this one continues.
    #[inline]
    pub(crate) fn array(&mut self, key: &str) -> JsonArray<'_, O> {
        let out = self.key(key);
        out.push_str("[");
        JsonArray { out, empty: true }
    }

    /// Ends the object.
    #[inline]
    pub(crate) fn close(self) {
        self.out.push_str("}");
    }
}

/// A JSON array being written (see [`JsonObject::array`]).
pub(crate) struct JsonArray<'o, O: JsonOut + ?Sized = String> {
    out: &'o mut O,
    empty: bool,
}

impl<'o, O: JsonOut + ?Sized> JsonArray<'o, O> {
    /// Starts an array at the end of `out`.
    #[inline]
    pub(crate) fn open(out: &'o mut O) -> Self {
        out.push_str("[");
        JsonArray { out, empty: true }
    }

    #[inline]
    fn next(&mut self) -> &mut O {
        if !self.empty {
            self.out.push_str(",");
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
    pub(crate) fn object(&mut self) -> JsonObject<'_, O> {
        JsonObject::open(self.next())
    }

    /// Ends the array.
    #[inline]
    pub(crate) fn close(self) {
        self.out.push_str("]");
    }
}

/// Which bytes a JSON string escapes: control characters, `"` and `\`.
// Evaluated at compile time: an index out of range fails the build; nothing can panic when
// it runs.
#[allow(clippy::indexing_slicing)]
const ESCAPED: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// The position of the first byte a JSON string escapes, eight bytes at a time (one word test
/// per clean word, a table lookup per byte only in a word that has one).
fn first_escaped(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Whether a byte of `w` is zero (exact as to whether, not as to which).
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS != 0;
    let by_byte = |chunk: &[u8]| {
        chunk
            .iter()
            .position(|&b| ESCAPED.get(usize::from(b)).copied().unwrap_or(true))
    };
    let mut words = bytes.chunks_exact(8);
    let mut offset = 0usize;
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let w = u64::from_le_bytes(w);
        // A byte below 0x20 (0x20 ≤ 128: the test is exact), a `"`, a `\`.
        let control = w.wrapping_sub(ONES.wrapping_mul(0x20)) & !w & HIGHS != 0;
        if control
            || has_zero(w ^ ONES.wrapping_mul(u64::from(b'"')))
            || has_zero(w ^ ONES.wrapping_mul(u64::from(b'\\')))
        {
            if let Some(p) = by_byte(word) {
                return offset.checked_add(p);
            }
        }
        offset = offset.saturating_add(8);
    }
    by_byte(words.remainder()).and_then(|p| offset.checked_add(p))
}

/// Appends `s` as a JSON string literal exactly as `JSON.stringify` (and serde_json) write it.
pub(crate) fn push_json_str<O: JsonOut + ?Sized>(out: &mut O, s: &str) {
    out.push_str("\"");
    push_escaped(out, s);
    out.push_str("\"");
}

/// Appends the inside of a JSON string literal for `s` (its escapes, no quotes).
fn push_escaped<O: JsonOut + ?Sized>(out: &mut O, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut rest = s;
    // Copy the runs that need no escape in one piece each.
    while let Some(at) = first_escaped(rest.as_bytes()) {
        let (run, tail) = rest.split_at(at);
        out.push_str(run);
        let mut bytes = tail.bytes();
        let b = bytes.next().unwrap_or(0);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ => {
                // `\u00xx`, lower-case (b < 0x20, so its high nibble is 0 or 1).
                let lo = HEX.get(usize::from(b & 0x0f)).copied().unwrap_or(b'0');
                let hi = if b >= 0x10 { b'1' } else { b'0' };
                let esc = [b'\\', b'u', b'0', b'0', hi, lo];
                out.push_str(core::str::from_utf8(&esc).unwrap_or(""));
            }
        }
        // The escaped byte is ASCII: the rest starts on a char boundary.
        rest = tail.get(1..).unwrap_or("");
    }
    out.push_str(rest);
}

/// Appends a `u64` in decimal.
pub(crate) fn push_u64<O: JsonOut + ?Sized>(out: &mut O, n: u64) {
    let mut buf = [0u8; super::LABEL_LEN];
    let label = super::indexed_label(&mut buf, b"", n);
    // Digits are ASCII.
    out.push_str(core::str::from_utf8(label).unwrap_or("0"));
}

/// Appends a finite `f64` as JavaScript's `Number.prototype.toString` would for the values a
/// prompt carries (integers without `.0`, decimals in shortest round-trip form).
pub(crate) fn push_js_number<O: JsonOut + ?Sized>(out: &mut O, x: f64) {
    const SAFE: f64 = 9.007_199_254_740_992e15; // 2^53
    if x.is_finite() && x > -SAFE && x < SAFE && (x as i64) as f64 == x {
        let n = x as i64;
        if n < 0 {
            out.push_str("-");
        }
        push_u64(out, n.unsigned_abs());
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

/// Appends a JSON value compactly, exactly as `serde_json::to_string` writes it (objects in
/// the map's order: sorted, without serde_json's `preserve_order`).
pub(crate) fn push_json_value<O: JsonOut + ?Sized>(out: &mut O, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // Numbers are the caller's metadata, not secrets: their text is built by serde_json.
        Value::Number(n) => match serde_json::to_string(n) {
            Ok(text) => out.push_str(&text),
            Err(_) => out.push_str("null"),
        },
        Value::String(s) => push_json_str(out, s),
        Value::Array(items) => {
            let mut list = JsonArray::open(out);
            for item in items {
                push_json_value(list.next(), item);
            }
            list.close();
        }
        Value::Object(map) => push_json_map(out, map),
    }
}

/// Appends a JSON object compactly, in the map's order (as `serde_json::to_string`).
pub(crate) fn push_json_map<O: JsonOut + ?Sized>(
    out: &mut O,
    map: &serde_json::Map<String, serde_json::Value>,
) {
    let mut o = JsonObject::open(out);
    for (k, item) in map {
        // Keys of user maps may need escaping, unlike the protocol's literal keys.
        let slot = o.key_escaped(k);
        push_json_value(slot, item);
    }
    o.close();
}

impl<O: JsonOut + ?Sized> JsonObject<'_, O> {
    /// Starts a member whose key is arbitrary text (escaped).
    fn key_escaped(&mut self, key: &str) -> &mut O {
        if !self.empty {
            self.out.push_str(",");
        }
        self.empty = false;
        push_json_str(self.out, key);
        self.out.push_str(":");
        self.out
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

    fn ours(token: &str) -> Option<String> {
        let raw: &serde_json::value::RawValue = serde_json::from_str(token).ok()?;
        secret_str(raw).map(|t| {
            assert_eq!(t.capacity(), t.len(), "exact size: {token}");
            String::from(t.as_str())
        })
    }

    #[test]
    fn secret_strings_unescape_as_serde_json_does() {
        for (token, want) in [
            (r#""plain""#, Some("plain")),
            (
                r#""a\"b\\c\/d\b\f\n\r\t""#,
                Some("a\"b\\c/d\u{8}\u{c}\n\r\t"),
            ),
            (r#""\u00e9\u2192\ud83d\ude00""#, Some("é→😀")),
            (r#""\ud800""#, None),
            (r#""\udc00x""#, None),
            (r#""\ud800\u0041""#, None),
            (r#""\u+123""#, None),
            (r#""\x""#, None),
            ("7", None),
        ] {
            assert_eq!(ours(token).as_deref(), want, "{token}");
            let theirs = serde_json::from_str::<String>(token).ok();
            assert_eq!(ours(token), theirs, "{token}");
        }
    }

    proptest! {
        /// Whatever a JSON string holds and however it is escaped, the wiped unescaping
        /// agrees with serde_json's.
        #[test]
        fn any_string_unescapes_as_serde_json_does(text in any::<String>(), ascii in any::<bool>()) {
            let token = serde_json::to_string(&text).unwrap();
            // JSON.stringify-style tokens, and ones with every non-ASCII char as \u escapes.
            let token = if ascii {
                let mut t = String::new();
                for c in token.chars() {
                    if c.is_ascii() { t.push(c) } else {
                        let mut units = [0u16; 2];
                        for u in c.encode_utf16(&mut units) { t.push_str(&alloc::format!("\\u{u:04x}")) }
                    }
                }
                t
            } else { token };
            prop_assert_eq!(ours(&token), Some(text));
        }

        #[test]
        fn arbitrary_tokens_are_accepted_exactly_when_serde_json_accepts_them(body in "[a-z\\\\\"u0-9d+/]{0,12}") {
            let token = alloc::format!("\"{body}\"");
            let theirs = serde_json::from_str::<String>(&token).ok();
            if serde_json::from_str::<&serde_json::value::RawValue>(&token).is_ok() {
                prop_assert_eq!(ours(&token), theirs);
            }
        }
    }

    /// The escape search goes eight bytes at a time: every ASCII byte at every position of a
    /// few words, and two of them, escape as serde_json escapes them.
    #[test]
    fn escapes_are_found_at_every_position_of_a_word() {
        for at in 0..20 {
            for c in 0u8..0x80 {
                let mut text = "x".repeat(20);
                text.replace_range(at..=at, char::from(c).encode_utf8(&mut [0; 4]));
                text.push('é');
                let mut ours = String::new();
                push_json_str(&mut ours, &text);
                assert_eq!(
                    ours,
                    serde_json::to_string(&text).unwrap(),
                    "{c:#x} at {at}"
                );
                let twice = alloc::format!("{text}{text}");
                let mut ours = String::new();
                push_json_str(&mut ours, &twice);
                assert_eq!(ours, serde_json::to_string(&twice).unwrap());
            }
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

    struct Raw(&'static str);
    impl WriteJson for Raw {
        fn write_json<O: JsonOut + ?Sized>(&self, out: &mut O) {
            out.push_str(self.0);
        }
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
        o.js_number("t", 0.5).nested("r", &Raw("[1]"));
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
