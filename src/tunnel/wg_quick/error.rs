//! The errors of the wg-quick parser: [`WgQuickError`] (where) and [`WgQuickErrorKind`] (what).

use core::fmt;

/// A wg-quick file error: the line it was found on and what is wrong.
///
/// `Display` reads `line 7: PublicKey: invalid base64 key`. No text from the file is ever
/// part of an error, neither a value nor a key name (a mistyped or line-wrapped secret can
/// land in either place): only line numbers and the parser's own names.
///
/// ```
/// use sealwire::tunnel::wg_quick::{WgQuick, WgQuickErrorKind};
/// let err = WgQuick::parse("[Interface]\nMTU = 9\n").unwrap_err();
/// assert_eq!((err.line(), err.key(), err.kind()), (2, Some("MTU"), &WgQuickErrorKind::InvalidMtu));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgQuickError {
    line: usize,
    key: Option<&'static str>,
    kind: WgQuickErrorKind,
}

impl WgQuickError {
    /// The 1-based line number; 0 for a problem with the file as a whole.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The canonical name of the key (or section) the problem is about, if any.
    pub fn key(&self) -> Option<&'static str> {
        self.key
    }

    /// What is wrong.
    pub fn kind(&self) -> &WgQuickErrorKind {
        &self.kind
    }
}

impl fmt::Display for WgQuickError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str("config: ")?;
        } else {
            write!(f, "line {}: ", self.line)?;
        }
        if let Some(key) = self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for WgQuickError {}

/// What is wrong on a line of the file.
///
/// ```
/// use sealwire::tunnel::wg_quick::WgQuickErrorKind;
/// assert_eq!(WgQuickErrorKind::InvalidPort.to_string(), "invalid port");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WgQuickErrorKind {
    /// The line is neither a comment, a `[Section]` header nor `Key = Value`.
    Syntax,
    /// A `[Section]` other than `[Interface]` and `[Peer]`.
    UnknownSection,
    /// A second `[Interface]` section.
    DuplicateInterface,
    /// A `Key = Value` line before the first section header.
    OutsideSection,
    /// A key this section does not know. When the key is one of the *other* section (say
    /// `ListenPort` in a `[Peer]`), its canonical name from the parser's own table; never the
    /// text of the file, which could be a pasted or line-wrapped secret.
    UnknownKey(Option<&'static str>),
    /// A scalar key given twice in one section.
    Duplicate,
    /// A key is not 44 characters of canonical base64 encoding 32 bytes.
    InvalidKey,
    /// A port is not a decimal number in 0..=65535 (1..=65535 for an endpoint).
    InvalidPort,
    /// The MTU is not a decimal number in 576..=65535.
    InvalidMtu,
    /// `PersistentKeepalive` is not `off` or a number in 0..=65535.
    InvalidKeepalive,
    /// An address or prefix is malformed (or the prefix is too long for the family).
    InvalidAddress,
    /// An empty item in a comma list (`a,,b` or a trailing comma).
    EmptyListItem,
    /// The endpoint is not `host:port`, `[ipv6]:port` or `name:port`.
    InvalidEndpoint,
    /// A required key is missing from the section that starts on this line.
    Missing,
    /// No `[Interface]` section in the file.
    NoInterface,
    /// Two `[Peer]` sections have the same public key (the line of the first is given).
    DuplicatePeer {
        /// Line of the first `PublicKey` with this value.
        first_line: usize,
    },
}

impl fmt::Display for WgQuickErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WgQuickErrorKind::Syntax => f.write_str("expected `[Section]` or `Key = Value`"),
            WgQuickErrorKind::UnknownSection => {
                f.write_str("unknown section (expected [Interface] or [Peer])")
            }
            WgQuickErrorKind::DuplicateInterface => f.write_str("a second [Interface] section"),
            WgQuickErrorKind::OutsideSection => {
                f.write_str("key outside a section (start with [Interface])")
            }
            WgQuickErrorKind::UnknownKey(Some(name)) => {
                write!(f, "`{name}` is not a key of this section")
            }
            WgQuickErrorKind::UnknownKey(None) => f.write_str("unknown key"),
            WgQuickErrorKind::Duplicate => f.write_str("given twice in this section"),
            WgQuickErrorKind::InvalidKey => f.write_str("invalid base64 key"),
            WgQuickErrorKind::InvalidPort => f.write_str("invalid port"),
            WgQuickErrorKind::InvalidMtu => f.write_str("invalid MTU (576..=65535)"),
            WgQuickErrorKind::InvalidKeepalive => {
                f.write_str("invalid interval (`off` or 0..=65535 seconds)")
            }
            WgQuickErrorKind::InvalidAddress => f.write_str("invalid address or prefix"),
            WgQuickErrorKind::EmptyListItem => f.write_str("empty item in the comma list"),
            WgQuickErrorKind::InvalidEndpoint => {
                f.write_str("invalid endpoint (expected host:port or [ipv6]:port)")
            }
            WgQuickErrorKind::Missing => f.write_str("required key is missing in this section"),
            WgQuickErrorKind::NoInterface => f.write_str("no [Interface] section"),
            WgQuickErrorKind::DuplicatePeer { first_line } => {
                write!(f, "the same peer is already defined on line {first_line}")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for WgQuickErrorKind {}

impl WgQuickError {
    pub(super) fn new(line: usize, key: Option<&'static str>, kind: WgQuickErrorKind) -> Self {
        WgQuickError { line, key, kind }
    }
}
