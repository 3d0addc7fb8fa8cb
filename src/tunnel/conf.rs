//! The wg-quick style configuration file that `tun_node` (and any embedder) reads.
//!
//! The format is the one `wg setconf` and `wg-quick` read, so an operator can take a file
//! written for WireGuard and run it here unchanged:
//!
//! ```text
//! [Interface]
//! PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
//! ListenPort = 51820
//! Address = 10.0.0.1/24, fd00::1/64
//! MTU = 1420                      # optional; tun_node uses 1420 when absent
//!
//! [Peer]
//! PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
//! PresharedKey = /UwcSPg38hW/D9Y3tcS1FOV0K1wuURMbS0sesJEP5ak=   # optional
//! AllowedIPs = 10.0.0.2/32, fd00::2/128
//! Endpoint = [2001:db8::1]:51820  # optional: without it this side only responds
//! PersistentKeepalive = 25        # optional; `off` or 0 disables
//! ```
//!
//! # Rules
//!
//! * One `[Interface]` section and any number of `[Peer]` sections, in any order. Section
//!   names and keys are case-insensitive, as in `wg`.
//! * `#` starts a comment anywhere on a line; blank lines are skipped; whitespace around keys,
//!   values and list items is ignored; `\r\n` line ends are accepted.
//! * Every other line is `Key = Value`. A key outside a section, an unknown key, or a scalar
//!   key given twice in one section is an error (`wg` silently keeps the last value; a
//!   duplicate in a file is almost always a mistake, so this parser refuses to guess).
//!   `Address` and `AllowedIPs` may be repeated: the lists are concatenated, as in wg-quick.
//! * Keys are 32 bytes in canonical base64 (44 characters ending in `=`, unused low bits
//!   zero), exactly what `wg genkey` / `wg pubkey` / `wg genpsk` print.
//! * `Address` and `AllowedIPs` are comma lists of IPv4 or IPv6 addresses with an optional
//!   `/prefix` (default: a single host). An empty value is an empty list; an empty item
//!   between commas is an error.
//! * `Endpoint` is `host:port`, where host is an IPv4 address, `[IPv6]` in brackets, or a DNS
//!   name (resolved by the caller, not here).
//! * wg-quick keys that only drive the host's shell or resolver — `DNS`, `Table`, `PreUp`,
//!   `PostUp`, `PreDown`, `PostDown`, `SaveConfig` — and `wg`'s `FwMark` are accepted in
//!   `[Interface]` and ignored; each one is listed in [`Config::ignored`] so a caller can warn.
//!
//! Why so strict: a tunnel that comes up with a mistyped key or a truncated AllowedIPs list
//! fails silently (no handshake, or traffic dropped by cryptokey routing). A parse error that
//! names the line and the key is found in seconds. Error messages never contain a value from
//! the file, so a private key on a malformed line cannot leak into a log.
//!
//! ```
//! use sealwire::tunnel::conf::Config;
//! let text = "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n\
//!             ListenPort = 51820\n\n[Peer]\nPublicKey = ???\n";
//! let err = Config::parse(text).unwrap_err();
//! assert_eq!(err.to_string(), "line 6: PublicKey: invalid base64 key");
//! assert_eq!(err.line(), 6);
//! ```

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::Cidr;
use crate::crypto::SecretBytes;

/// Length in bytes of every WireGuard key (private, public, preshared).
const KEY_LEN: usize = 32;
/// Length of such a key in padded base64.
const KEY_B64_LEN: usize = 44;

/// A parsed configuration file: one interface and its peers.
///
/// ```
/// use sealwire::tunnel::conf::{Config, Endpoint};
/// let cfg = Config::parse(
///     "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n\
///      ListenPort = 51820\nAddress = 10.0.0.1/24\n\
///      [Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n\
///      AllowedIPs = 10.0.0.2/32\nEndpoint = 192.0.2.7:51820\n",
/// ).unwrap();
/// assert_eq!(cfg.interface.listen_port, Some(51820));
/// assert_eq!(cfg.peers.len(), 1);
/// assert_eq!(cfg.peers[0].endpoint, Some(Endpoint::Addr("192.0.2.7:51820".parse().unwrap())));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Config {
    /// The `[Interface]` section.
    pub interface: InterfaceConf,
    /// The `[Peer]` sections, in file order.
    pub peers: Vec<PeerConf>,
    /// wg-quick keys that were accepted but have no effect here (see the module doc).
    pub ignored: Vec<IgnoredKey>,
}

/// The `[Interface]` section.
#[derive(Debug)]
#[non_exhaustive]
pub struct InterfaceConf {
    /// `PrivateKey`: this node's X25519 static private key.
    pub private_key: SecretBytes<KEY_LEN>,
    /// `ListenPort`: the UDP port to bind; `None` lets the caller pick one.
    pub listen_port: Option<u16>,
    /// `Address`: the addresses to assign to the TUN interface (host bits kept).
    pub addresses: Vec<InterfaceAddress>,
    /// `MTU`: the TUN interface MTU; `None` means the caller's default (1420 in `tun_node`).
    pub mtu: Option<u16>,
}

/// One `[Peer]` section.
#[derive(Debug)]
#[non_exhaustive]
pub struct PeerConf {
    /// `PublicKey`: the peer's X25519 static public key.
    pub public_key: [u8; KEY_LEN],
    /// `PresharedKey`: the optional symmetric key mixed into the handshake.
    pub preshared_key: Option<SecretBytes<KEY_LEN>>,
    /// `AllowedIPs`: the peer's inner source addresses and the routes through it (host bits
    /// cleared, as `wg` does).
    pub allowed_ips: Vec<Cidr>,
    /// `Endpoint`: where to send the first initiation; `None` makes this side a pure
    /// responder for the peer (the endpoint is learned from its authenticated packets).
    pub endpoint: Option<Endpoint>,
    /// `PersistentKeepalive` in seconds; `None` when absent, `off` or `0`.
    pub persistent_keepalive: Option<u16>,
}

/// A key that was accepted and ignored, with its line (for a warning).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IgnoredKey {
    /// 1-based line number.
    pub line: usize,
    /// The key in its canonical spelling (`DNS`, `PostUp`, ...).
    pub key: &'static str,
}

/// An `Address` entry: an interface address with its subnet prefix, `10.0.0.1/24`.
///
/// Unlike [`Cidr`] (an AllowedIPs prefix), the host bits are kept: they are the address.
///
/// ```
/// use sealwire::tunnel::conf::InterfaceAddress;
/// let a: InterfaceAddress = "10.1.2.3/8".parse().unwrap();
/// assert_eq!(a.to_string(), "10.1.2.3/8");
/// assert_eq!(a.network().unwrap().to_string(), "10.0.0.0/8");
/// assert_eq!("fd00::1".parse::<InterfaceAddress>().unwrap().prefix_len, 128);
/// assert!("10.0.0.0/33".parse::<InterfaceAddress>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InterfaceAddress {
    /// The address as written (host bits are kept: an interface address needs them).
    pub addr: IpAddr,
    /// Prefix length: at most 32 for IPv4, 128 for IPv6.
    pub prefix_len: u8,
}

impl InterfaceAddress {
    /// The subnet: the same prefix with the host bits cleared; `None` if `prefix_len` is
    /// longer than the address (impossible for a parsed value).
    pub fn network(&self) -> Option<Cidr> {
        Cidr::new(self.addr, self.prefix_len)
    }
}

impl fmt::Display for InterfaceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl core::str::FromStr for InterfaceAddress {
    type Err = ConfErrorKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix_len) = parse_prefix(s)?;
        Ok(InterfaceAddress { addr, prefix_len })
    }
}

/// A peer endpoint: a socket address, or a DNS name and port that the caller resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A literal `1.2.3.4:port` or `[v6]:port`.
    Addr(SocketAddr),
    /// `name:port` with a DNS name.
    Host {
        /// The DNS name (letters, digits, `-`, `.`, `_`).
        host: String,
        /// The UDP port (non-zero).
        port: u16,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Addr(a) => write!(f, "{a}"),
            Endpoint::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// A configuration error: the line it was found on and what is wrong.
///
/// `Display` reads `line 7: PublicKey: invalid base64 key`. No value from the file is ever
/// part of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError {
    line: usize,
    key: Option<&'static str>,
    kind: ConfErrorKind,
}

impl ConfError {
    /// The 1-based line number; 0 for a problem with the file as a whole.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The canonical name of the key (or section) the problem is about, if any.
    pub fn key(&self) -> Option<&'static str> {
        self.key
    }

    /// What is wrong.
    pub fn kind(&self) -> &ConfErrorKind {
        &self.kind
    }
}

impl fmt::Display for ConfError {
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
impl std::error::Error for ConfError {}

/// What is wrong on a line of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfErrorKind {
    /// The line is neither a comment, a `[Section]` header nor `Key = Value`.
    Syntax,
    /// A `[Section]` other than `[Interface]` and `[Peer]`.
    UnknownSection,
    /// A second `[Interface]` section.
    DuplicateInterface,
    /// A `Key = Value` line before the first section header.
    OutsideSection,
    /// A key this section does not know (its name, if it is short and printable).
    UnknownKey(Option<String>),
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

impl fmt::Display for ConfErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfErrorKind::Syntax => f.write_str("expected `[Section]` or `Key = Value`"),
            ConfErrorKind::UnknownSection => {
                f.write_str("unknown section (expected [Interface] or [Peer])")
            }
            ConfErrorKind::DuplicateInterface => f.write_str("a second [Interface] section"),
            ConfErrorKind::OutsideSection => {
                f.write_str("key outside a section (start with [Interface])")
            }
            ConfErrorKind::UnknownKey(Some(name)) => write!(f, "unknown key `{name}`"),
            ConfErrorKind::UnknownKey(None) => f.write_str("unknown key"),
            ConfErrorKind::Duplicate => f.write_str("given twice in this section"),
            ConfErrorKind::InvalidKey => f.write_str("invalid base64 key"),
            ConfErrorKind::InvalidPort => f.write_str("invalid port"),
            ConfErrorKind::InvalidMtu => f.write_str("invalid MTU (576..=65535)"),
            ConfErrorKind::InvalidKeepalive => {
                f.write_str("invalid interval (`off` or 0..=65535 seconds)")
            }
            ConfErrorKind::InvalidAddress => f.write_str("invalid address or prefix"),
            ConfErrorKind::EmptyListItem => f.write_str("empty item in the comma list"),
            ConfErrorKind::InvalidEndpoint => {
                f.write_str("invalid endpoint (expected host:port or [ipv6]:port)")
            }
            ConfErrorKind::Missing => f.write_str("required key is missing in this section"),
            ConfErrorKind::NoInterface => f.write_str("no [Interface] section"),
            ConfErrorKind::DuplicatePeer { first_line } => {
                write!(f, "the same peer is already defined on line {first_line}")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ConfErrorKind {}

impl core::str::FromStr for Config {
    type Err = ConfError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Config::parse(s)
    }
}

/// The keys a section knows, in canonical spelling.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    PrivateKey,
    ListenPort,
    Address,
    Mtu,
    PublicKey,
    PresharedKey,
    AllowedIps,
    Endpoint,
    PersistentKeepalive,
    Ignored(&'static str),
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::PrivateKey => "PrivateKey",
            Field::ListenPort => "ListenPort",
            Field::Address => "Address",
            Field::Mtu => "MTU",
            Field::PublicKey => "PublicKey",
            Field::PresharedKey => "PresharedKey",
            Field::AllowedIps => "AllowedIPs",
            Field::Endpoint => "Endpoint",
            Field::PersistentKeepalive => "PersistentKeepalive",
            Field::Ignored(name) => name,
        }
    }
}

const INTERFACE_KEYS: &[Field] = &[
    Field::PrivateKey,
    Field::ListenPort,
    Field::Address,
    Field::Mtu,
    Field::Ignored("DNS"),
    Field::Ignored("Table"),
    Field::Ignored("PreUp"),
    Field::Ignored("PostUp"),
    Field::Ignored("PreDown"),
    Field::Ignored("PostDown"),
    Field::Ignored("SaveConfig"),
    Field::Ignored("FwMark"),
];

const PEER_KEYS: &[Field] = &[
    Field::PublicKey,
    Field::PresharedKey,
    Field::AllowedIps,
    Field::Endpoint,
    Field::PersistentKeepalive,
];

/// A section being filled; scalars remember the line they were set on.
#[derive(Default)]
struct InterfaceDraft {
    header_line: usize,
    private_key: Option<SecretBytes<KEY_LEN>>,
    listen_port: Option<u16>,
    listen_port_seen: bool,
    addresses: Vec<InterfaceAddress>,
    mtu: Option<u16>,
}

#[derive(Default)]
struct PeerDraft {
    header_line: usize,
    public_key: Option<([u8; KEY_LEN], usize)>,
    preshared_key: Option<SecretBytes<KEY_LEN>>,
    allowed_ips: Vec<Cidr>,
    endpoint: Option<Endpoint>,
    keepalive: Option<u16>,
    keepalive_seen: bool,
}

enum Section {
    None,
    Interface,
    Peer(PeerDraft),
}

impl Config {
    /// Parses a whole configuration file.
    ///
    /// Returns the first problem found, with its line; see the module doc for the rules.
    ///
    /// ```
    /// use sealwire::tunnel::conf::{Config, ConfErrorKind};
    /// let err = Config::parse("[Interface]\nListenPort = 51820\n").unwrap_err();
    /// assert_eq!(err.line(), 1);
    /// assert_eq!(err.kind(), &ConfErrorKind::Missing);
    /// assert_eq!(err.to_string(), "line 1: PrivateKey: required key is missing in this section");
    /// ```
    pub fn parse(text: &str) -> Result<Config, ConfError> {
        let mut interface: Option<InterfaceDraft> = None;
        let mut peers: Vec<PeerConf> = Vec::new();
        // (public key, line) of every finished peer, to refuse the same peer twice.
        let mut peer_keys: Vec<([u8; KEY_LEN], usize)> = Vec::new();
        let mut ignored = Vec::new();
        let mut section = Section::None;

        for (idx, raw) in text.split('\n').enumerate() {
            let line = idx.saturating_add(1);
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            if let Some(rest) = content.strip_prefix('[') {
                let name = rest
                    .strip_suffix(']')
                    .ok_or(ConfError::new(line, None, ConfErrorKind::Syntax))?
                    .trim();
                let previous = core::mem::replace(&mut section, Section::None);
                finish_peer(previous, &mut peers, &mut peer_keys)?;
                if name.eq_ignore_ascii_case("Interface") {
                    if interface.is_some() {
                        return Err(ConfError::new(
                            line,
                            Some("[Interface]"),
                            ConfErrorKind::DuplicateInterface,
                        ));
                    }
                    interface = Some(InterfaceDraft {
                        header_line: line,
                        ..InterfaceDraft::default()
                    });
                    section = Section::Interface;
                } else if name.eq_ignore_ascii_case("Peer") {
                    section = Section::Peer(PeerDraft {
                        header_line: line,
                        ..PeerDraft::default()
                    });
                } else {
                    return Err(ConfError::new(line, None, ConfErrorKind::UnknownSection));
                }
                continue;
            }

            let (key_text, value) =
                content
                    .split_once('=')
                    .ok_or(ConfError::new(line, None, ConfErrorKind::Syntax))?;
            let key_text = key_text.trim();
            let value = value.trim();
            if key_text.is_empty() {
                return Err(ConfError::new(line, None, ConfErrorKind::Syntax));
            }
            match &mut section {
                Section::None => {
                    return Err(ConfError::new(line, None, ConfErrorKind::OutsideSection));
                }
                Section::Interface => {
                    let key = lookup(INTERFACE_KEYS, key_text, line)?;
                    // `interface` is always Some while in the Interface section.
                    let Some(draft) = interface.as_mut() else {
                        return Err(ConfError::new(line, None, ConfErrorKind::OutsideSection));
                    };
                    interface_key(draft, key, value, line, &mut ignored)?;
                }
                Section::Peer(draft) => {
                    let key = lookup(PEER_KEYS, key_text, line)?;
                    peer_key(draft, key, value, line)?;
                }
            }
        }
        finish_peer(section, &mut peers, &mut peer_keys)?;

        let draft = interface.ok_or(ConfError::new(0, None, ConfErrorKind::NoInterface))?;
        let private_key = draft.private_key.ok_or(ConfError::new(
            draft.header_line,
            Some("PrivateKey"),
            ConfErrorKind::Missing,
        ))?;
        Ok(Config {
            interface: InterfaceConf {
                private_key,
                listen_port: draft.listen_port,
                addresses: draft.addresses,
                mtu: draft.mtu,
            },
            peers,
            ignored,
        })
    }
}

impl ConfError {
    fn new(line: usize, key: Option<&'static str>, kind: ConfErrorKind) -> Self {
        ConfError { line, key, kind }
    }
}

fn lookup(keys: &[Field], text: &str, line: usize) -> Result<Field, ConfError> {
    keys.iter()
        .copied()
        .find(|k| k.name().eq_ignore_ascii_case(text))
        .ok_or_else(|| {
            // Echo the name only when it cannot be a pasted secret or control characters.
            let printable = text.len() <= 32 && text.bytes().all(|b| b.is_ascii_alphanumeric());
            let name = printable.then(|| String::from(text));
            ConfError::new(line, None, ConfErrorKind::UnknownKey(name))
        })
}

fn interface_key(
    draft: &mut InterfaceDraft,
    key: Field,
    value: &str,
    line: usize,
    ignored: &mut Vec<IgnoredKey>,
) -> Result<(), ConfError> {
    let err = |kind| ConfError::new(line, Some(key.name()), kind);
    match key {
        Field::PrivateKey => {
            if draft.private_key.is_some() {
                return Err(err(ConfErrorKind::Duplicate));
            }
            let bytes = decode_key(value).ok_or(err(ConfErrorKind::InvalidKey))?;
            draft.private_key = Some(bytes);
        }
        Field::ListenPort => {
            if draft.listen_port_seen {
                return Err(err(ConfErrorKind::Duplicate));
            }
            draft.listen_port_seen = true;
            draft.listen_port = Some(parse_u16(value).ok_or(err(ConfErrorKind::InvalidPort))?);
        }
        Field::Address => parse_list(value, &mut draft.addresses, |addr, prefix_len| {
            Some(InterfaceAddress { addr, prefix_len })
        })
        .map_err(err)?,
        Field::Mtu => {
            if draft.mtu.is_some() {
                return Err(err(ConfErrorKind::Duplicate));
            }
            // 576 is the smallest datagram every IPv4 host must accept (RFC 791).
            let mtu = parse_u16(value)
                .filter(|m| *m >= 576)
                .ok_or(err(ConfErrorKind::InvalidMtu))?;
            draft.mtu = Some(mtu);
        }
        Field::Ignored(name) => ignored.push(IgnoredKey { line, key: name }),
        _ => return Err(err(ConfErrorKind::UnknownKey(None))),
    }
    Ok(())
}

fn peer_key(draft: &mut PeerDraft, key: Field, value: &str, line: usize) -> Result<(), ConfError> {
    let err = |kind| ConfError::new(line, Some(key.name()), kind);
    match key {
        Field::PublicKey => {
            if draft.public_key.is_some() {
                return Err(err(ConfErrorKind::Duplicate));
            }
            let bytes = decode_key(value).ok_or(err(ConfErrorKind::InvalidKey))?;
            draft.public_key = Some((*bytes.expose(), line));
        }
        Field::PresharedKey => {
            if draft.preshared_key.is_some() {
                return Err(err(ConfErrorKind::Duplicate));
            }
            let bytes = decode_key(value).ok_or(err(ConfErrorKind::InvalidKey))?;
            draft.preshared_key = Some(bytes);
        }
        Field::AllowedIps => parse_list(value, &mut draft.allowed_ips, Cidr::new).map_err(err)?,
        Field::Endpoint => {
            if draft.endpoint.is_some() {
                return Err(err(ConfErrorKind::Duplicate));
            }
            draft.endpoint =
                Some(parse_endpoint(value).ok_or(err(ConfErrorKind::InvalidEndpoint))?);
        }
        Field::PersistentKeepalive => {
            if draft.keepalive_seen {
                return Err(err(ConfErrorKind::Duplicate));
            }
            draft.keepalive_seen = true;
            let secs = if value.eq_ignore_ascii_case("off") {
                0
            } else {
                parse_u16(value).ok_or(err(ConfErrorKind::InvalidKeepalive))?
            };
            draft.keepalive = (secs != 0).then_some(secs);
        }
        _ => return Err(err(ConfErrorKind::UnknownKey(None))),
    }
    Ok(())
}

fn finish_peer(
    section: Section,
    peers: &mut Vec<PeerConf>,
    peer_keys: &mut Vec<([u8; KEY_LEN], usize)>,
) -> Result<(), ConfError> {
    let Section::Peer(draft) = section else {
        return Ok(());
    };
    let (public_key, key_line) = draft.public_key.ok_or(ConfError::new(
        draft.header_line,
        Some("PublicKey"),
        ConfErrorKind::Missing,
    ))?;
    if let Some((_, first_line)) = peer_keys.iter().find(|(k, _)| *k == public_key) {
        return Err(ConfError::new(
            key_line,
            Some("PublicKey"),
            ConfErrorKind::DuplicatePeer {
                first_line: *first_line,
            },
        ));
    }
    peer_keys.push((public_key, key_line));
    peers.push(PeerConf {
        public_key,
        preshared_key: draft.preshared_key,
        allowed_ips: draft.allowed_ips,
        endpoint: draft.endpoint,
        persistent_keepalive: draft.keepalive,
    });
    Ok(())
}

/// Strict decimal u16: digits only (no sign, no spaces), at most 5 of them.
fn parse_u16(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a comma list of `address[/prefix]` items, each made into a `T` by `make`.
fn parse_list<T>(
    value: &str,
    out: &mut Vec<T>,
    make: impl Fn(IpAddr, u8) -> Option<T>,
) -> Result<(), ConfErrorKind> {
    if value.is_empty() {
        return Ok(());
    }
    for item in value.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(ConfErrorKind::EmptyListItem);
        }
        let (addr, prefix_len) = parse_prefix(item)?;
        out.push(make(addr, prefix_len).ok_or(ConfErrorKind::InvalidAddress)?);
    }
    Ok(())
}

/// `address[/prefix]`; without a prefix, a single host (/32 or /128).
fn parse_prefix(s: &str) -> Result<(IpAddr, u8), ConfErrorKind> {
    let (addr_text, prefix_text) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr_text
        .parse()
        .map_err(|_| ConfErrorKind::InvalidAddress)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len = match prefix_text {
        None => max,
        Some(p) => {
            // At most three digits: "/032" is refused like "/33" (strict, like the address).
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ConfErrorKind::InvalidAddress);
            }
            p.parse::<u8>().map_err(|_| ConfErrorKind::InvalidAddress)?
        }
    };
    if prefix_len > max {
        return Err(ConfErrorKind::InvalidAddress);
    }
    Ok((addr, prefix_len))
}

fn parse_endpoint(s: &str) -> Option<Endpoint> {
    let (host, port_text) = s.rsplit_once(':')?;
    let port = parse_u16(port_text).filter(|p| *p != 0)?;
    if let Some(inner) = host.strip_prefix('[') {
        let v6: Ipv6Addr = inner.strip_suffix(']')?.parse().ok()?;
        return Some(Endpoint::Addr(SocketAddr::new(IpAddr::V6(v6), port)));
    }
    if let Ok(v4) = host.parse::<Ipv4Addr>() {
        return Some(Endpoint::Addr(SocketAddr::new(IpAddr::V4(v4), port)));
    }
    // A DNS name: labels of letters, digits, '-' and '_', separated by single dots.
    // An unbracketed IPv6 address (more than one ':') is refused here.
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    name_ok.then(|| Endpoint::Host {
        host: String::from(host),
        port,
    })
}

/// Maps one base64 character to its 6-bit value, or `0x100` when it is not in the alphabet.
///
/// Branch-free on the character (it may be part of a private key): each range contributes
/// its value only when the character is inside it.
fn b64_value(c: u8) -> u32 {
    let c = u32::from(c);
    // `in_range(lo, hi)` is 0xFFFF_FFFF when lo <= c <= hi, else 0, without a branch.
    let in_range = |lo: u32, hi: u32| {
        let below = c.wrapping_sub(lo) >> 31; // 1 when c < lo
        let above = hi.wrapping_sub(c) >> 31; // 1 when c > hi
        ((below | above) ^ 1).wrapping_neg()
    };
    let upper = in_range(b'A'.into(), b'Z'.into());
    let lower = in_range(b'a'.into(), b'z'.into());
    let digit = in_range(b'0'.into(), b'9'.into());
    let plus = in_range(b'+'.into(), b'+'.into());
    let slash = in_range(b'/'.into(), b'/'.into());
    let value = (upper & c.wrapping_sub(65))
        | (lower & c.wrapping_sub(97 - 26))
        | (digit & c.wrapping_add(52 - 48))
        | (plus & 62)
        | (slash & 63);
    let valid = upper | lower | digit | plus | slash;
    value | (!valid & 0x100)
}

/// Decodes a 32-byte key from canonical padded base64 (`wg genkey` output).
///
/// 32 bytes are 43 base64 characters (258 bits, the last 2 must be zero) plus one `=`.
fn decode_key(text: &str) -> Option<SecretBytes<KEY_LEN>> {
    let bytes = text.as_bytes();
    let (body, pad) = bytes.split_at_checked(KEY_B64_LEN - 1)?;
    if pad != b"=" {
        return None;
    }
    let mut out = [0u8; KEY_LEN];
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    let mut bad: u32 = 0;
    let mut pos = 0usize;
    for &c in body {
        let v = b64_value(c);
        bad |= v & 0x100;
        acc = (acc << 6) | (v & 0x3f);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            if let Some(slot) = out.get_mut(pos) {
                *slot = (acc >> bits) as u8;
            }
            pos += 1;
            acc &= (1 << bits) - 1;
        }
    }
    // Canonical form: the 2 leftover bits are zero, so every key has exactly one spelling.
    bad |= acc;
    let key = SecretBytes::new(out);
    zeroize::Zeroize::zeroize(&mut out);
    (bad == 0 && pos == KEY_LEN).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;

    // The keys of the wg(8) man page example; the expected bytes were decoded independently
    // with Python's base64 module.
    const PRIV_B64: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
    const PUB_B64: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    const PUB2_B64: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";
    const PSK_B64: &str = "/UwcSPg38hW/D9Y3tcS1FOV0K1wuURMbS0sesJEP5ak=";

    fn minimal() -> String {
        format!("[Interface]\nPrivateKey = {PRIV_B64}\n")
    }

    fn parse_err(text: &str) -> ConfError {
        match Config::parse(text) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn base64_key_decodes_to_the_independently_decoded_bytes() {
        // python3 -c "import base64;print(base64.b64decode('yAnz...').hex())"
        let k = decode_key(PRIV_B64).unwrap();
        assert_eq!(
            crate::crypto::hex::encode(k.expose()),
            "c809f3e5317e9575c9b5ed78b638b7ce530dabe85ddab614220241801ddf0669"
        );
        let all_zero = decode_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
        assert_eq!(all_zero.expose(), &[0u8; 32]);
        let all_ff = decode_key("//////////////////////////////////////////8=").unwrap();
        assert_eq!(all_ff.expose(), &[0xffu8; 32]);
    }

    #[test]
    fn every_base64_character_maps_to_its_rfc4648_value() {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for c in 0u8..=255 {
            let expected = alphabet.iter().position(|&a| a == c);
            match expected {
                Some(v) => assert_eq!(b64_value(c), v as u32, "char {c}"),
                None => assert_eq!(b64_value(c) & 0x100, 0x100, "char {c}"),
            }
        }
    }

    #[test]
    fn non_canonical_or_malformed_keys_are_rejected() {
        // Last data char 'B' leaves a non-zero low bit: same bytes, other spelling.
        assert!(decode_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=").is_none());
        // Missing padding, extra padding, too short, too long, URL-safe alphabet, space inside.
        assert!(decode_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").is_none());
        assert!(decode_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==").is_none());
        assert!(decode_key("AAAA=").is_none());
        assert!(decode_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_none());
        assert!(decode_key("-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_none());
        assert!(decode_key("AAAA AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_none());
        assert!(decode_key("ÄAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_none());
        assert!(decode_key("").is_none());
    }

    #[test]
    fn full_file_parses_every_field() {
        let text = format!(
            "# node A\n[Interface]\nPrivateKey = {PRIV_B64}\nListenPort = 51820\n\
             Address = 10.0.0.1/24, fd00::1/64\nMTU = 1380\n\n\
             [Peer]\nPublicKey = {PUB_B64}\nPresharedKey = {PSK_B64}\n\
             AllowedIPs = 10.0.0.2/32, fd00::2/128\nEndpoint = [2001:db8::1]:51821\n\
             PersistentKeepalive = 25\n\
             [Peer]\nPublicKey = {PUB2_B64}\nAllowedIPs = 0.0.0.0/0\n"
        );
        let cfg = Config::parse(&text).unwrap();
        assert_eq!(cfg.interface.private_key, decode_key(PRIV_B64).unwrap());
        assert_eq!(cfg.interface.listen_port, Some(51820));
        assert_eq!(cfg.interface.mtu, Some(1380));
        assert_eq!(
            cfg.interface.addresses,
            [
                InterfaceAddress {
                    addr: "10.0.0.1".parse().unwrap(),
                    prefix_len: 24
                },
                InterfaceAddress {
                    addr: "fd00::1".parse().unwrap(),
                    prefix_len: 64
                }
            ]
        );
        assert_eq!(cfg.peers.len(), 2);
        let p = &cfg.peers[0];
        assert_eq!(&p.public_key, decode_key(PUB_B64).unwrap().expose());
        assert_eq!(p.preshared_key, Some(decode_key(PSK_B64).unwrap()));
        assert_eq!(p.allowed_ips.len(), 2);
        assert_eq!(p.allowed_ips[1].to_string(), "fd00::2/128");
        assert_eq!(
            p.endpoint,
            Some(Endpoint::Addr("[2001:db8::1]:51821".parse().unwrap()))
        );
        assert_eq!(p.persistent_keepalive, Some(25));
        let q = &cfg.peers[1];
        assert_eq!(q.endpoint, None);
        assert_eq!(q.preshared_key, None);
        assert_eq!(q.persistent_keepalive, None);
        assert_eq!(q.allowed_ips[0].to_string(), "0.0.0.0/0");
        assert!(cfg.ignored.is_empty());
    }

    #[test]
    fn optional_fields_default_to_none() {
        let cfg = Config::parse(&minimal()).unwrap();
        assert_eq!(cfg.interface.listen_port, None);
        assert_eq!(cfg.interface.mtu, None);
        assert!(cfg.interface.addresses.is_empty());
        assert!(cfg.peers.is_empty());
    }

    #[test]
    fn keys_and_sections_are_case_insensitive() {
        let text = format!(
            "[interface]\nprivatekey = {PRIV_B64}\nLISTENPORT = 1\naddress=10.0.0.1/24\nmtu=1420\n\
             [PEER]\npublickey={PUB_B64}\nallowedips=10.0.0.2\nENDPOINT=1.2.3.4:5\npersistentkeepalive=OFF\n"
        );
        let cfg = Config::parse(&text).unwrap();
        assert_eq!(cfg.interface.listen_port, Some(1));
        assert_eq!(cfg.peers[0].allowed_ips[0].prefix_len(), 32);
        assert_eq!(cfg.peers[0].persistent_keepalive, None);
    }

    #[test]
    fn comments_blank_lines_whitespace_and_crlf_are_ignored() {
        let text = format!(
            "  # leading comment\r\n\r\n\t[ Interface ]  # trailing\r\n  PrivateKey\t=\t{PRIV_B64}   # key\r\n\
             \r\n   \r\nListenPort=51820#no space\r\nAddress =  10.0.0.1/24 ,fd00::1/64 \r\n"
        );
        let cfg = Config::parse(&text).unwrap();
        assert_eq!(cfg.interface.listen_port, Some(51820));
        assert_eq!(cfg.interface.addresses.len(), 2);
    }

    #[test]
    fn wg_quick_keys_are_tolerated_and_reported() {
        let text = format!(
            "[Interface]\nPrivateKey = {PRIV_B64}\nDNS = 1.1.1.1\nTable = off\n\
             PostUp = iptables -A FORWARD -i %i -j ACCEPT; echo a=b\nPreDown = true\n\
             SaveConfig = true\nFwMark = 0x1234\nPreUp = x\nPostDown = y\n"
        );
        let cfg = Config::parse(&text).unwrap();
        let names: Vec<_> = cfg.ignored.iter().map(|k| (k.line, k.key)).collect();
        assert_eq!(
            names,
            [
                (3, "DNS"),
                (4, "Table"),
                (5, "PostUp"),
                (6, "PreDown"),
                (7, "SaveConfig"),
                (8, "FwMark"),
                (9, "PreUp"),
                (10, "PostDown")
            ]
        );
    }

    #[test]
    fn wg_quick_keys_are_not_accepted_in_a_peer_section() {
        let text = format!(
            "{}[Peer]\nPublicKey = {PUB_B64}\nDNS = 1.1.1.1\n",
            minimal()
        );
        let e = parse_err(&text);
        assert_eq!(e.line(), 5);
        assert_eq!(e.kind(), &ConfErrorKind::UnknownKey(Some("DNS".into())));
    }

    #[test]
    fn address_and_allowed_ips_lists_concatenate_when_repeated() {
        let text = format!(
            "[Interface]\nPrivateKey = {PRIV_B64}\nAddress = 10.0.0.1/24\nAddress = fd00::1/64\n\
             [Peer]\nPublicKey = {PUB_B64}\nAllowedIPs = 10.0.0.2/32\nAllowedIPs = 10.9.0.0/16, ::/0\n"
        );
        let cfg = Config::parse(&text).unwrap();
        assert_eq!(cfg.interface.addresses.len(), 2);
        let ips: Vec<_> = cfg.peers[0]
            .allowed_ips
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(ips, ["10.0.0.2/32", "10.9.0.0/16", "::/0"]);
    }

    #[test]
    fn empty_list_value_is_an_empty_list() {
        let text = format!(
            "{}Address =\n[Peer]\nPublicKey = {PUB_B64}\nAllowedIPs = \n",
            minimal()
        );
        let cfg = Config::parse(&text).unwrap();
        assert!(cfg.interface.addresses.is_empty());
        assert!(cfg.peers[0].allowed_ips.is_empty());
    }

    #[test]
    fn empty_list_items_are_rejected() {
        for bad in ["10.0.0.1/32,,10.0.0.2/32", "10.0.0.1/32,", ",10.0.0.1/32"] {
            let e = parse_err(&format!("{}Address = {bad}\n", minimal()));
            assert_eq!((e.line(), e.key()), (3, Some("Address")));
            assert_eq!(e.kind(), &ConfErrorKind::EmptyListItem);
        }
    }

    #[test]
    fn bad_addresses_and_prefixes_are_rejected() {
        for bad in [
            "10.0.0.1/33",
            "fd00::/129",
            "10.0.0/24",
            "10.0.0.256",
            "010.0.0.1",
            "10.0.0.1/",
            "10.0.0.1/+8",
            "10.0.0.1/0008",
            "10.0.0.1/8/8",
            "host.example/32",
            "[fd00::1]/64",
        ] {
            let e = parse_err(&format!(
                "{}[Peer]\nPublicKey={PUB_B64}\nAllowedIPs = {bad}\n",
                minimal()
            ));
            assert_eq!(e.line(), 5, "{bad}");
            assert_eq!(e.key(), Some("AllowedIPs"));
            assert_eq!(e.kind(), &ConfErrorKind::InvalidAddress, "{bad}");
        }
    }

    #[test]
    fn prefix_defaults_to_a_single_host_and_network_clears_host_bits() {
        let v4: InterfaceAddress = "192.168.7.9".parse().unwrap();
        assert_eq!(v4.prefix_len, 32);
        let v6: InterfaceAddress = "fd00::1:2/112".parse().unwrap();
        assert_eq!(v6.to_string(), "fd00::1:2/112");
        assert_eq!(v6.network().unwrap().to_string(), "fd00::1:0/112");
        let all: InterfaceAddress = "10.1.1.1/0".parse().unwrap();
        assert_eq!(all.network().unwrap().to_string(), "0.0.0.0/0");
        // AllowedIPs keep only the network, as `wg` does; an interface Address keeps its host.
        let text = format!(
            "{}Address = 10.0.0.5/24\n[Peer]\nPublicKey = {PUB_B64}\nAllowedIPs = 10.9.8.7/16, fd00::7/64, 10.0.0.2\n",
            minimal()
        );
        let cfg = Config::parse(&text).unwrap();
        assert_eq!(cfg.interface.addresses[0].to_string(), "10.0.0.5/24");
        let ips: Vec<_> = cfg.peers[0]
            .allowed_ips
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(ips, ["10.9.0.0/16", "fd00::/64", "10.0.0.2/32"]);
    }

    #[test]
    fn endpoints_parse_v4_bracketed_v6_and_names() {
        let ok = |s: &str| parse_endpoint(s).unwrap();
        assert_eq!(
            ok("192.0.2.1:51820"),
            Endpoint::Addr("192.0.2.1:51820".parse().unwrap())
        );
        assert_eq!(
            ok("[fe80::1]:1"),
            Endpoint::Addr("[fe80::1]:1".parse().unwrap())
        );
        assert_eq!(
            ok("vpn.example.com:51820"),
            Endpoint::Host {
                host: "vpn.example.com".into(),
                port: 51820
            }
        );
        assert_eq!(
            ok("vpn.example.com:51820").to_string(),
            "vpn.example.com:51820"
        );
    }

    #[test]
    fn bad_endpoints_are_rejected() {
        for bad in [
            "192.0.2.1",
            "192.0.2.1:0",
            "192.0.2.1:65536",
            "192.0.2.1:-1",
            "fd00::1:51820",
            "[fd00::1]",
            "[fd00::1:51820",
            "[not-v6]:51820",
            ":51820",
            "host..example:1",
            "ho st:1",
            "1.2.3:51820",
            "host:port",
        ] {
            let e = parse_err(&format!(
                "{}[Peer]\nPublicKey={PUB_B64}\nEndpoint = {bad}\n",
                minimal()
            ));
            assert_eq!((e.line(), e.key()), (5, Some("Endpoint")), "{bad}");
            assert_eq!(e.kind(), &ConfErrorKind::InvalidEndpoint, "{bad}");
        }
    }

    #[test]
    fn ports_mtu_and_keepalive_ranges_are_enforced() {
        let e = parse_err(&format!("{}ListenPort = 65536\n", minimal()));
        assert_eq!(e.to_string(), "line 3: ListenPort: invalid port");
        let e = parse_err(&format!("{}ListenPort = +5\n", minimal()));
        assert_eq!(e.kind(), &ConfErrorKind::InvalidPort);
        let cfg = Config::parse(&format!("{}ListenPort = 0\n", minimal())).unwrap();
        assert_eq!(cfg.interface.listen_port, Some(0));
        let e = parse_err(&format!("{}MTU = 575\n", minimal()));
        assert_eq!(e.kind(), &ConfErrorKind::InvalidMtu);
        let e = parse_err(&format!("{}MTU = 1420x\n", minimal()));
        assert_eq!(e.kind(), &ConfErrorKind::InvalidMtu);
        assert_eq!(
            Config::parse(&format!("{}MTU = 65535\n", minimal()))
                .unwrap()
                .interface
                .mtu,
            Some(65535)
        );
        let peer = format!("{}[Peer]\nPublicKey={PUB_B64}\n", minimal());
        let e = parse_err(&format!("{peer}PersistentKeepalive = 65536\n"));
        assert_eq!(e.kind(), &ConfErrorKind::InvalidKeepalive);
        let e = parse_err(&format!("{peer}PersistentKeepalive = on\n"));
        assert_eq!(
            e.to_string(),
            "line 5: PersistentKeepalive: invalid interval (`off` or 0..=65535 seconds)"
        );
        let cfg = Config::parse(&format!("{peer}PersistentKeepalive = 0\n")).unwrap();
        assert_eq!(cfg.peers[0].persistent_keepalive, None);
        let cfg = Config::parse(&format!("{peer}PersistentKeepalive = 65535\n")).unwrap();
        assert_eq!(cfg.peers[0].persistent_keepalive, Some(65535));
    }

    #[test]
    fn bad_keys_name_the_line_and_the_key() {
        let e = parse_err("[Interface]\nPrivateKey = nope\n");
        assert_eq!(e.to_string(), "line 2: PrivateKey: invalid base64 key");
        let text = format!(
            "{}\n\n[Peer]\n# c\nPublicKey = {}\n",
            minimal(),
            &PUB_B64[1..]
        );
        let e = parse_err(&text);
        assert_eq!(e.to_string(), "line 7: PublicKey: invalid base64 key");
        let e = parse_err(&format!(
            "{}[Peer]\nPublicKey={PUB_B64}\nPresharedKey = {PUB_B64}x\n",
            minimal()
        ));
        assert_eq!((e.line(), e.key()), (5, Some("PresharedKey")));
    }

    #[test]
    fn error_messages_never_echo_values() {
        // A private key pasted where a key name belongs must not be printed back.
        let secret = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk";
        for text in [
            format!("[Interface]\n{secret}= = \n"),
            format!("[Interface]\n{secret}\n"),
            format!("[Interface]\nPrivateKey = {secret}==\n"),
        ] {
            let msg = parse_err(&text).to_string();
            assert!(!msg.contains("yAnz5TF"), "{msg}");
        }
    }

    #[test]
    fn missing_required_keys_and_sections_are_reported() {
        let e = parse_err("");
        assert_eq!(e.to_string(), "config: no [Interface] section");
        assert_eq!(e.line(), 0);
        let e = parse_err("# only a comment\n\n[Interface]\nListenPort = 1\n");
        assert_eq!(
            e.to_string(),
            "line 3: PrivateKey: required key is missing in this section"
        );
        let e = parse_err(&format!(
            "{}\n[Peer]\nAllowedIPs = 10.0.0.0/8\n[Peer]\n",
            minimal()
        ));
        assert_eq!(
            e.to_string(),
            "line 4: PublicKey: required key is missing in this section"
        );
        // A peer section before the interface is fine; its own error still points to it.
        let text = format!("[Peer]\nPublicKey = {PUB_B64}\n{}", minimal());
        assert_eq!(Config::parse(&text).unwrap().peers.len(), 1);
    }

    #[test]
    fn syntax_errors_are_reported_with_their_line() {
        let cases = [
            ("[Interface\n", 1, ConfErrorKind::Syntax),
            ("[Interface]\nPrivateKey\n", 2, ConfErrorKind::Syntax),
            ("[Interface]\n= value\n", 2, ConfErrorKind::Syntax),
            ("PrivateKey = x\n", 1, ConfErrorKind::OutsideSection),
            ("[Wireguard]\n", 1, ConfErrorKind::UnknownSection),
            ("[]\n", 1, ConfErrorKind::UnknownSection),
            (
                "[Interface]\nListen Port = 1\n",
                2,
                ConfErrorKind::UnknownKey(None),
            ),
            (
                "[Interface]\nPeer = 1\n",
                2,
                ConfErrorKind::UnknownKey(Some("Peer".into())),
            ),
            (
                "[Interface]\nPublicKey = 1\n",
                2,
                ConfErrorKind::UnknownKey(Some("PublicKey".into())),
            ),
            (
                "[Interface]\n[Interface]\n",
                2,
                ConfErrorKind::DuplicateInterface,
            ),
        ];
        for (text, line, kind) in cases {
            let e = parse_err(text);
            assert_eq!((e.line(), e.kind()), (line, &kind), "{text:?}");
        }
        assert_eq!(
            parse_err("[Interface]\nFoo = 1\n").to_string(),
            "line 2: unknown key `Foo`"
        );
    }

    #[test]
    fn scalar_keys_given_twice_are_rejected() {
        let peer = format!("{}[Peer]\nPublicKey={PUB_B64}\n", minimal());
        let cases = [
            format!("{}PrivateKey = {PRIV_B64}\n", minimal()),
            format!("{}ListenPort = 1\nListenPort = 2\n", minimal()),
            format!("{}MTU = 1420\nmtu = 1420\n", minimal()),
            format!("{peer}PublicKey = {PUB_B64}\n"),
            format!("{peer}PresharedKey = {PSK_B64}\nPresharedKey = {PSK_B64}\n"),
            format!("{peer}Endpoint = 1.2.3.4:5\nEndpoint = 1.2.3.4:5\n"),
            format!("{peer}PersistentKeepalive = off\nPersistentKeepalive = 5\n"),
        ];
        for text in cases {
            let e = parse_err(&text);
            assert_eq!(e.kind(), &ConfErrorKind::Duplicate, "{text}");
            assert_eq!(e.line(), text.lines().count(), "{text}");
        }
    }

    #[test]
    fn the_same_peer_twice_is_rejected_naming_both_lines() {
        let text = format!(
            "{}[Peer]\nPublicKey={PUB_B64}\n[Peer]\nPublicKey={PUB2_B64}\n[Peer]\nPublicKey={PUB_B64}\n",
            minimal()
        );
        let e = parse_err(&text);
        assert_eq!(e.line(), 8);
        assert_eq!(e.kind(), &ConfErrorKind::DuplicatePeer { first_line: 4 });
        assert_eq!(
            e.to_string(),
            "line 8: PublicKey: the same peer is already defined on line 4"
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let text = format!(
            "{}[Peer]\nPublicKey={PUB_B64}\nPresharedKey={PSK_B64}\n",
            minimal()
        );
        let cfg = Config::parse(&text).unwrap();
        let dbg = format!("{cfg:?}");
        assert!(dbg.contains("[redacted]"));
        let priv_bytes = decode_key(PRIV_B64).unwrap();
        let psk_bytes = decode_key(PSK_B64).unwrap();
        assert!(!dbg.contains(&format!("{:?}", priv_bytes.expose())));
        assert!(!dbg.contains(&format!("{:?}", psk_bytes.expose())));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn line_strategy() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("[Interface]".to_string()),
                Just("[Peer]".to_string()),
                Just(format!("PrivateKey = {PRIV_B64}")),
                Just(format!("PublicKey = {PUB_B64}")),
                Just(format!("PublicKey = {PUB2_B64}")),
                Just(format!("PresharedKey = {PSK_B64}")),
                "(Address|AllowedIPs|Endpoint|ListenPort|MTU|PersistentKeepalive|DNS) ?= ?[0-9a-f:./\\[\\], ]{0,40}",
                "[ -~]{0,60}",
                any::<String>(),
            ]
        }

        proptest! {
            #[test]
            fn never_panics_on_arbitrary_text(s in any::<String>()) {
                let r = Config::parse(&s);
                if let Err(e) = r {
                    // Every error names a line inside the file (or 0 for the file).
                    prop_assert!(e.line() <= s.split('\n').count());
                    let _ = e.to_string();
                }
            }

            #[test]
            fn never_panics_on_config_shaped_text(lines in proptest::collection::vec(line_strategy(), 0..20)) {
                let text = lines.join("\n");
                match Config::parse(&text) {
                    Ok(cfg) => prop_assert!(cfg.peers.len() <= lines.len()),
                    Err(e) => prop_assert!(e.line() <= lines.len().max(1)),
                }
            }

            #[test]
            fn any_32_bytes_round_trip_through_base64(bytes in any::<[u8; 32]>()) {
                // Reference encoder written independently of the decoder under test.
                let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
                let mut s = String::new();
                for chunk in bytes.chunks(3) {
                    let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
                    let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                    let chars = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
                    for (i, c) in chars.iter().enumerate() {
                        if i <= chunk.len() {
                            s.push(alphabet[*c as usize] as char);
                        } else {
                            s.push('=');
                        }
                    }
                }
                prop_assert_eq!(s.len(), 44);
                let decoded = decode_key(&s).unwrap();
                prop_assert_eq!(decoded.expose(), &bytes);
            }
        }
    }
}
