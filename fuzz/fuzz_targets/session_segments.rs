//! The input format the session fuzz targets share (not a target itself): the input is split
//! into segments at 0xff (which never occurs in UTF-8). A segment starting with 0xfe stands for
//! one of the target's valid frames built at start, optionally with one byte flipped
//! (`0xfe k pos_hi pos_lo xor`), so the fuzzer reaches the states behind the cryptography; one
//! starting with 0xfd moves the clock (`0xfd hi lo`, what a unit means is the target's); any
//! other segment is a frame as is.

/// Segments read per input (the rest is ignored).
pub const MAX_SEGMENTS: usize = 32;

/// What one segment asks for.
pub enum Segment {
    /// Hand this frame to the machine.
    Frame(String),
    /// Move the clock by this many units.
    Wait(u16),
}

impl Segment {
    pub fn parse(segment: &[u8], templates: &[String]) -> Segment {
        match segment {
            [0xfd, hi, lo, ..] => Segment::Wait(u16::from_be_bytes([*hi, *lo])),
            [0xfe, k, rest @ ..] => {
                let mut bytes = templates[usize::from(*k) % templates.len()]
                    .as_bytes()
                    .to_vec();
                if let [hi, lo, xor, ..] = rest {
                    let at = usize::from(u16::from_be_bytes([*hi, *lo])) % bytes.len();
                    bytes[at] ^= xor;
                }
                Segment::Frame(String::from_utf8_lossy(&bytes).into_owned())
            }
            _ => Segment::Frame(String::from_utf8_lossy(segment).into_owned()),
        }
    }
}
