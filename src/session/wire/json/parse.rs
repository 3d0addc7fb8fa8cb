//! The parsing side of the wire's JSON: a borrowed, type-tagged view ([`Field`], [`Obj`]) that
//! serde_json fills without building a `serde_json::Value`, and the exact-size unescaping of
//! secret strings ([`secret_str`]).

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
