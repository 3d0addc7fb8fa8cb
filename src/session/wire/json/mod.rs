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

use alloc::string::String;

use zeroize::Zeroizing;

mod parse;
pub(crate) use parse::{parse_object, parse_object_bytes, secret_str, str_of, u64_of, Field, Obj};

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
