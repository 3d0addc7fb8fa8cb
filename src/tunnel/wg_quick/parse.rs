//! The wg-quick line parser: sections, keys, and the value syntax of each field (see the
//! rules in the [module docs](super)). It builds a [`WgQuick`] from drafts that remember the
//! line each value came from, so every error names its line.

use super::error::{WgQuickError, WgQuickErrorKind};
use super::{IgnoredKey, Interface, InterfaceAddress, NamedEndpoint, WgQuick};
use crate::crypto::x25519::{PublicKey, StaticSecret};
use crate::crypto::{base64, SecretBytes};
use crate::tunnel::allowed_ips::Cidr;
use crate::tunnel::config::{DeviceConfig, PeerConfig};
use crate::tunnel::wiped::WipedVec;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use WgQuickErrorKind as Kind;

/// Parses a whole file (see [`WgQuick::parse`]).
pub(super) fn parse(text: &str) -> Result<WgQuick, WgQuickError> {
    let mut file = FileDraft::default();
    for (idx, raw) in text.split('\n').enumerate() {
        let line = idx.saturating_add(1);
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let syntax = || WgQuickError::new(line, None, Kind::Syntax);
        if let Some(rest) = content.strip_prefix('[') {
            let name = rest.strip_suffix(']').ok_or_else(syntax)?.trim();
            file.open_section(name, line)?;
        } else {
            let (key, value) = content.split_once('=').ok_or_else(syntax)?;
            let key = key.trim();
            if key.is_empty() {
                return Err(syntax());
            }
            file.set(key, value.trim(), line)?;
        }
    }
    file.finish()
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

/// The file read so far.
#[derive(Default)]
struct FileDraft {
    interface: Option<InterfaceDraft>,
    section: Section,
    /// The PSK is inline in each configuration: growth must not leave copies behind.
    peers: WipedVec<PeerConfig>,
    /// (public key, line) of every finished peer, to refuse the same peer twice.
    peer_lines: Vec<(PublicKey, usize)>,
    named_endpoints: Vec<NamedEndpoint>,
    ignored: Vec<IgnoredKey>,
}

/// The section the next `Key = Value` belongs to.
#[derive(Default)]
enum Section {
    #[default]
    None,
    Interface,
    Peer(PeerDraft),
}

/// The `[Interface]` section being filled.
#[derive(Default)]
struct InterfaceDraft {
    header_line: usize,
    private_key: Option<StaticSecret>,
    listen_port: Option<u16>,
    addresses: Vec<InterfaceAddress>,
    mtu: Option<u16>,
}

/// A `[Peer]` section being filled.
#[derive(Default)]
struct PeerDraft {
    header_line: usize,
    /// The key and the line it is on (a duplicate peer names both lines).
    public_key: Option<(PublicKey, usize)>,
    preshared_key: Option<SecretBytes<32>>,
    allowed_ips: Vec<Cidr>,
    endpoint: Option<Endpoint>,
    /// Set once: `Some(None)` for `off` or 0.
    keepalive: Option<Option<u16>>,
}

/// An `Endpoint` value: a socket address, or a DNS name that the caller resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    Addr(SocketAddr),
    Host { host: String, port: u16 },
}

impl FileDraft {
    /// A `[name]` header: the section before it is finished.
    fn open_section(&mut self, name: &str, line: usize) -> Result<(), WgQuickError> {
        self.finish_peer()?;
        if name.eq_ignore_ascii_case("Interface") {
            if self.interface.is_some() {
                let key = Some("[Interface]");
                return Err(WgQuickError::new(line, key, Kind::DuplicateInterface));
            }
            self.interface = Some(InterfaceDraft {
                header_line: line,
                ..InterfaceDraft::default()
            });
            self.section = Section::Interface;
        } else if name.eq_ignore_ascii_case("Peer") {
            self.section = Section::Peer(PeerDraft {
                header_line: line,
                ..PeerDraft::default()
            });
        } else {
            return Err(WgQuickError::new(line, None, Kind::UnknownSection));
        }
        Ok(())
    }

    /// A `key = value` line of the current section.
    fn set(&mut self, key: &str, value: &str, line: usize) -> Result<(), WgQuickError> {
        let (field, result) = match (&mut self.section, self.interface.as_mut()) {
            (Section::Interface, Some(draft)) => {
                let field = lookup(INTERFACE_KEYS, key, line)?;
                (field, draft.set(field, value, line, &mut self.ignored))
            }
            (Section::Peer(draft), _) => {
                let field = lookup(PEER_KEYS, key, line)?;
                (field, draft.set(field, value, line))
            }
            _ => return Err(WgQuickError::new(line, None, Kind::OutsideSection)),
        };
        result.map_err(|kind| WgQuickError::new(line, Some(field.name()), kind))
    }

    /// Ends a `[Peer]` section (if one is open): its configuration joins the file's.
    fn finish_peer(&mut self) -> Result<(), WgQuickError> {
        let Section::Peer(draft) = core::mem::take(&mut self.section) else {
            return Ok(());
        };
        let missing = WgQuickError::new(draft.header_line, Some("PublicKey"), Kind::Missing);
        let (public_key, key_line) = draft.public_key.ok_or(missing)?;
        if let Some((_, first_line)) = self.peer_lines.iter().find(|(k, _)| *k == public_key) {
            let kind = Kind::DuplicatePeer {
                first_line: *first_line,
            };
            return Err(WgQuickError::new(key_line, Some("PublicKey"), kind));
        }
        self.peer_lines.push((public_key, key_line));
        let mut peer = PeerConfig::new(public_key);
        peer.preshared_key = draft.preshared_key;
        peer.allowed_ips = draft.allowed_ips;
        peer.persistent_keepalive = draft.keepalive.flatten();
        match draft.endpoint {
            Some(Endpoint::Addr(a)) => peer.endpoint = Some(a),
            Some(Endpoint::Host { host, port }) => self.named_endpoints.push(NamedEndpoint {
                peer: public_key,
                host,
                port,
            }),
            None => {}
        }
        self.peers.push(peer);
        Ok(())
    }

    /// The end of the file.
    fn finish(mut self) -> Result<WgQuick, WgQuickError> {
        self.finish_peer()?;
        let draft = self
            .interface
            .ok_or(WgQuickError::new(0, None, Kind::NoInterface))?;
        let missing = WgQuickError::new(draft.header_line, Some("PrivateKey"), Kind::Missing);
        Ok(WgQuick {
            interface: Interface {
                private_key: draft.private_key.ok_or(missing)?,
                listen_port: draft.listen_port,
                addresses: draft.addresses,
                mtu: draft.mtu,
            },
            peers: self.peers.take_exact(),
            named_endpoints: self.named_endpoints,
            ignored: self.ignored,
        })
    }
}

impl InterfaceDraft {
    fn set(
        &mut self,
        field: Field,
        value: &str,
        line: usize,
        ignored: &mut Vec<IgnoredKey>,
    ) -> Result<(), Kind> {
        match field {
            Field::PrivateKey => set_once(&mut self.private_key, || {
                key(value).map(|k| StaticSecret::from_bytes(*k))
            }),
            Field::ListenPort => set_once(&mut self.listen_port, || {
                parse_u16(value).ok_or(Kind::InvalidPort)
            }),
            Field::Address => parse_list(value, &mut self.addresses, |addr, prefix_len| {
                Some(InterfaceAddress { addr, prefix_len })
            }),
            Field::Mtu => set_once(&mut self.mtu, || {
                parse_u16(value)
                    .filter(|m| *m >= DeviceConfig::MIN_MTU)
                    .ok_or(Kind::InvalidMtu)
            }),
            Field::Ignored(key) => {
                ignored.push(IgnoredKey { line, key });
                Ok(())
            }
            _ => Err(Kind::UnknownKey(None)),
        }
    }
}

impl PeerDraft {
    fn set(&mut self, field: Field, value: &str, line: usize) -> Result<(), Kind> {
        match field {
            Field::PublicKey => set_once(&mut self.public_key, || {
                key(value).map(|k| (PublicKey::from_bytes(*k), line))
            }),
            Field::PresharedKey => set_once(&mut self.preshared_key, || {
                key(value).map(|k| SecretBytes::new(*k))
            }),
            Field::AllowedIps => parse_list(value, &mut self.allowed_ips, Cidr::new),
            Field::Endpoint => set_once(&mut self.endpoint, || {
                parse_endpoint(value).ok_or(Kind::InvalidEndpoint)
            }),
            Field::PersistentKeepalive => set_once(&mut self.keepalive, || {
                let secs = if value.eq_ignore_ascii_case("off") {
                    0
                } else {
                    parse_u16(value).ok_or(Kind::InvalidKeepalive)?
                };
                Ok((secs != 0).then_some(secs))
            }),
            _ => Err(Kind::UnknownKey(None)),
        }
    }
}

/// Stores the value of a scalar key, refusing a second one (checked before the value is).
fn set_once<T>(slot: &mut Option<T>, value: impl FnOnce() -> Result<T, Kind>) -> Result<(), Kind> {
    if slot.is_some() {
        return Err(Kind::Duplicate);
    }
    *slot = Some(value()?);
    Ok(())
}

/// A 32-byte key in canonical padded base64 (`wg genkey` output), decoded in constant time
/// by the crate's one base64 codec.
fn key(value: &str) -> Result<zeroize::Zeroizing<[u8; 32]>, Kind> {
    base64::decode_array::<32>(value).map_err(|_| Kind::InvalidKey)
}

fn lookup(keys: &[Field], text: &str, line: usize) -> Result<Field, WgQuickError> {
    keys.iter()
        .copied()
        .find(|k| k.name().eq_ignore_ascii_case(text))
        .ok_or_else(|| {
            // Never echo the text itself: a line-wrapped key puts a piece of a secret here.
            // A key of the other section is named from our own table.
            let name = INTERFACE_KEYS
                .iter()
                .chain(PEER_KEYS)
                .map(|k| k.name())
                .find(|name| name.eq_ignore_ascii_case(text));
            WgQuickError::new(line, None, Kind::UnknownKey(name))
        })
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
) -> Result<(), Kind> {
    if value.is_empty() {
        return Ok(());
    }
    for item in value.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(Kind::EmptyListItem);
        }
        let (addr, prefix_len) = parse_prefix(item)?;
        out.push(make(addr, prefix_len).ok_or(Kind::InvalidAddress)?);
    }
    Ok(())
}

/// `address[/prefix]`; without a prefix, a single host (/32 or /128).
pub(super) fn parse_prefix(s: &str) -> Result<(IpAddr, u8), Kind> {
    let (addr_text, prefix_text) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr_text.parse().map_err(|_| Kind::InvalidAddress)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len = match prefix_text {
        None => max,
        Some(p) => {
            // At most three digits: "/032" is refused like "/33" (strict, like the address).
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Kind::InvalidAddress);
            }
            p.parse::<u8>().map_err(|_| Kind::InvalidAddress)?
        }
    };
    if prefix_len > max {
        return Err(Kind::InvalidAddress);
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

    /// The bytes of a base64 key, by the crate's codec (the parser's own decoding is what
    /// the tests below check against the independently decoded values).
    fn key_bytes(b64: &str) -> [u8; 32] {
        *crate::crypto::base64::decode_array::<32>(b64).unwrap()
    }

    /// A file whose only peer has the public key spelled `b64`.
    fn with_peer_key(b64: &str) -> String {
        format!("{}[Peer]\nPublicKey = {b64}\n", minimal())
    }

    fn parse_err(text: &str) -> WgQuickError {
        match WgQuick::parse(text) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn base64_key_decodes_to_the_independently_decoded_bytes() {
        // python3 -c "import base64;print(base64.b64decode('yAnz...').hex())"
        let file = WgQuick::parse(&minimal()).unwrap();
        assert_eq!(
            crate::crypto::hex::encode(&file.interface.private_key.to_bytes()),
            "c809f3e5317e9575c9b5ed78b638b7ce530dabe85ddab614220241801ddf0669"
        );
        let all_zero = WgQuick::parse(&with_peer_key(
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ));
        assert_eq!(all_zero.unwrap().peers[0].public_key.as_bytes(), &[0u8; 32]);
        let all_ff = WgQuick::parse(&with_peer_key(
            "//////////////////////////////////////////8=",
        ));
        assert_eq!(
            all_ff.unwrap().peers[0].public_key.as_bytes(),
            &[0xffu8; 32]
        );
    }

    #[test]
    fn every_base64_character_maps_to_its_rfc4648_value() {
        // A key whose first character is `c`: accepted exactly when `c` is in the alphabet,
        // and then its 6-bit value is the top of the first byte.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for c in 0u8..=255 {
            let ch = char::from(c);
            if ch == '#' || ch == '\n' {
                continue; // a comment or a line end: no longer part of the value
            }
            let text = with_peer_key(&format!("{ch}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="));
            match (alphabet.iter().position(|&a| a == c), WgQuick::parse(&text)) {
                (Some(v), Ok(file)) => {
                    assert_eq!(
                        file.peers[0].public_key.as_bytes()[0],
                        (v as u8) << 2,
                        "char {c}"
                    )
                }
                (None, Err(e)) => assert_eq!(e.kind(), &Kind::InvalidKey, "char {c}"),
                (v, r) => panic!("char {c}: alphabet value {v:?}, parse {:?}", r.map(|_| ())),
            }
        }
    }

    #[test]
    fn non_canonical_or_malformed_keys_are_rejected() {
        for bad in [
            // Last data char 'B' leaves a non-zero low bit: same bytes, other spelling.
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=",
            // Missing padding, extra padding, too short, too long, URL-safe alphabet, space
            // inside, a non-ASCII letter, nothing.
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
            "AAAA=",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "AAAA AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "ÄAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "",
        ] {
            let e = parse_err(&with_peer_key(bad));
            assert_eq!((e.line(), e.key()), (4, Some("PublicKey")), "{bad}");
            assert_eq!(e.kind(), &Kind::InvalidKey, "{bad}");
        }
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
        let cfg = WgQuick::parse(&text).unwrap();
        assert_eq!(cfg.interface.private_key.to_bytes(), key_bytes(PRIV_B64));
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
        assert_eq!(p.public_key.as_bytes(), &key_bytes(PUB_B64));
        assert_eq!(p.preshared_key, Some(SecretBytes::new(key_bytes(PSK_B64))));
        assert_eq!(p.allowed_ips.len(), 2);
        assert_eq!(p.allowed_ips[1].to_string(), "fd00::2/128");
        assert_eq!(p.endpoint, Some("[2001:db8::1]:51821".parse().unwrap()));
        assert_eq!(p.persistent_keepalive, Some(25));
        let q = &cfg.peers[1];
        assert_eq!(q.endpoint, None);
        assert_eq!(q.preshared_key, None);
        assert_eq!(q.persistent_keepalive, None);
        assert_eq!(q.allowed_ips[0].to_string(), "0.0.0.0/0");
        assert!(cfg.ignored.is_empty() && cfg.named_endpoints.is_empty());
    }

    #[test]
    fn optional_fields_default_to_none() {
        let cfg = WgQuick::parse(&minimal()).unwrap();
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
        let cfg = WgQuick::parse(&text).unwrap();
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
        let cfg = WgQuick::parse(&text).unwrap();
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
        let cfg = WgQuick::parse(&text).unwrap();
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
        assert_eq!(e.kind(), &Kind::UnknownKey(Some("DNS")));
        assert_eq!(e.to_string(), "line 5: `DNS` is not a key of this section");
    }

    #[test]
    fn address_and_allowed_ips_lists_concatenate_when_repeated() {
        let text = format!(
            "[Interface]\nPrivateKey = {PRIV_B64}\nAddress = 10.0.0.1/24\nAddress = fd00::1/64\n\
             [Peer]\nPublicKey = {PUB_B64}\nAllowedIPs = 10.0.0.2/32\nAllowedIPs = 10.9.0.0/16, ::/0\n"
        );
        let cfg = WgQuick::parse(&text).unwrap();
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
        let cfg = WgQuick::parse(&text).unwrap();
        assert!(cfg.interface.addresses.is_empty());
        assert!(cfg.peers[0].allowed_ips.is_empty());
    }

    #[test]
    fn empty_list_items_are_rejected() {
        for bad in ["10.0.0.1/32,,10.0.0.2/32", "10.0.0.1/32,", ",10.0.0.1/32"] {
            let e = parse_err(&format!("{}Address = {bad}\n", minimal()));
            assert_eq!((e.line(), e.key()), (3, Some("Address")));
            assert_eq!(e.kind(), &Kind::EmptyListItem);
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
            assert_eq!(e.kind(), &Kind::InvalidAddress, "{bad}");
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
        let cfg = WgQuick::parse(&text).unwrap();
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
        // A name is kept for the caller to resolve, and prints as it was written.
        let file = WgQuick::parse(&format!(
            "{}Endpoint = vpn.example.com:51820\n",
            with_peer_key(PUB_B64)
        ))
        .unwrap();
        assert_eq!(file.peers[0].endpoint, None);
        assert_eq!(file.named_endpoints[0].to_string(), "vpn.example.com:51820");
        assert_eq!(file.named_endpoints[0].peer.as_bytes(), &key_bytes(PUB_B64));
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
            assert_eq!(e.kind(), &Kind::InvalidEndpoint, "{bad}");
        }
    }

    #[test]
    fn ports_mtu_and_keepalive_ranges_are_enforced() {
        let e = parse_err(&format!("{}ListenPort = 65536\n", minimal()));
        assert_eq!(e.to_string(), "line 3: ListenPort: invalid port");
        let e = parse_err(&format!("{}ListenPort = +5\n", minimal()));
        assert_eq!(e.kind(), &Kind::InvalidPort);
        let cfg = WgQuick::parse(&format!("{}ListenPort = 0\n", minimal())).unwrap();
        assert_eq!(cfg.interface.listen_port, Some(0));
        let e = parse_err(&format!("{}MTU = 575\n", minimal()));
        assert_eq!(e.kind(), &Kind::InvalidMtu);
        let e = parse_err(&format!("{}MTU = 1420x\n", minimal()));
        assert_eq!(e.kind(), &Kind::InvalidMtu);
        assert_eq!(
            WgQuick::parse(&format!("{}MTU = 65535\n", minimal()))
                .unwrap()
                .interface
                .mtu,
            Some(65535)
        );
        let peer = format!("{}[Peer]\nPublicKey={PUB_B64}\n", minimal());
        let e = parse_err(&format!("{peer}PersistentKeepalive = 65536\n"));
        assert_eq!(e.kind(), &Kind::InvalidKeepalive);
        let e = parse_err(&format!("{peer}PersistentKeepalive = on\n"));
        assert_eq!(
            e.to_string(),
            "line 5: PersistentKeepalive: invalid interval (`off` or 0..=65535 seconds)"
        );
        let cfg = WgQuick::parse(&format!("{peer}PersistentKeepalive = 0\n")).unwrap();
        assert_eq!(cfg.peers[0].persistent_keepalive, None);
        let cfg = WgQuick::parse(&format!("{peer}PersistentKeepalive = 65535\n")).unwrap();
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
        assert_eq!(WgQuick::parse(&text).unwrap().peers.len(), 1);
    }

    #[test]
    fn syntax_errors_are_reported_with_their_line() {
        let cases = [
            ("[Interface\n", 1, Kind::Syntax),
            ("[Interface]\nPrivateKey\n", 2, Kind::Syntax),
            ("[Interface]\n= value\n", 2, Kind::Syntax),
            ("PrivateKey = x\n", 1, Kind::OutsideSection),
            ("[Wireguard]\n", 1, Kind::UnknownSection),
            ("[]\n", 1, Kind::UnknownSection),
            ("[Interface]\nListen Port = 1\n", 2, Kind::UnknownKey(None)),
            ("[Interface]\nPeer = 1\n", 2, Kind::UnknownKey(None)),
            (
                "[Interface]\npublickey = 1\n",
                2,
                Kind::UnknownKey(Some("PublicKey")),
            ),
            ("[Interface]\n[Interface]\n", 2, Kind::DuplicateInterface),
        ];
        for (text, line, kind) in cases {
            let e = parse_err(text);
            assert_eq!((e.line(), e.kind()), (line, &kind), "{text:?}");
        }
        assert_eq!(
            parse_err("[Interface]\nFoo = 1\n").to_string(),
            "line 2: unknown key"
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
            assert_eq!(e.kind(), &Kind::Duplicate, "{text}");
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
        assert_eq!(e.kind(), &Kind::DuplicatePeer { first_line: 4 });
        assert_eq!(
            e.to_string(),
            "line 8: PublicKey: the same peer is already defined on line 4"
        );
    }

    /// Every way a piece of `secret` can land where an error might quote it: a key wrapped
    /// by an editor at `cut`, a piece pasted as a key name, a section name, a line of its
    /// own, or a value.
    fn files_with_a_piece_of(secret: &str, cut: usize) -> Vec<String> {
        let (head, tail) = secret.split_at(cut);
        let tail_name = tail.trim_end_matches('=');
        alloc::vec![
            format!("[Interface]\nPrivateKey = {head}\n{tail}\n"),
            format!("[Interface]\nPrivateKey = {head}\n{tail_name} = 1\n"),
            format!("[Interface]\n{tail_name} = {head}\n"),
            format!("[Interface]\n{head}\n"),
            format!("[{head}]\n"),
            format!("{head} = {tail}\n"),
            format!(
                "{}[Peer]\nPublicKey = {PUB_B64}\nPresharedKey = {head}\n",
                minimal()
            ),
            format!("{}[Peer]\nPublicKey = {head}\n", minimal()),
            format!(
                "{}[Peer]\nPublicKey = {PUB_B64}\n{tail_name}={tail}\n",
                minimal()
            ),
        ]
    }

    /// Whether `shown` quotes 5 or more consecutive characters of `secret`.
    fn quotes(shown: &str, secret: &str) -> bool {
        secret
            .as_bytes()
            .windows(5)
            .any(|w| core::str::from_utf8(w).is_ok_and(|w| shown.contains(w)))
    }

    #[test]
    fn errors_never_quote_a_piece_of_a_key_from_the_file() {
        let mut errors = 0;
        for secret in [PRIV_B64, PSK_B64] {
            for cut in 1..secret.len() {
                for text in files_with_a_piece_of(secret, cut) {
                    let Err(e) = WgQuick::parse(&text) else {
                        continue;
                    };
                    errors += 1;
                    let shown = format!("{e} {e:?}");
                    assert!(!quotes(&shown, secret), "{shown:?} quotes {text:?}");
                }
            }
        }
        assert!(errors > 500, "the cases are errors ({errors})");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let text = format!(
            "{}[Peer]\nPublicKey={PUB_B64}\nPresharedKey={PSK_B64}\n",
            minimal()
        );
        let cfg = WgQuick::parse(&text).unwrap();
        let dbg = format!("{cfg:?}");
        assert!(dbg.contains("[redacted]"));
        assert!(!dbg.contains(&format!("{:?}", key_bytes(PRIV_B64))));
        assert!(!dbg.contains(&format!("{:?}", key_bytes(PSK_B64))));
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
                let r = WgQuick::parse(&s);
                if let Err(e) = r {
                    // Every error names a line inside the file (or 0 for the file).
                    prop_assert!(e.line() <= s.split('\n').count());
                    let _ = e.to_string();
                }
            }

            #[test]
            fn never_panics_on_config_shaped_text(lines in proptest::collection::vec(line_strategy(), 0..20)) {
                let text = lines.join("\n");
                match WgQuick::parse(&text) {
                    Ok(cfg) => prop_assert!(cfg.peers.len() <= lines.len()),
                    Err(e) => prop_assert!(e.line() <= lines.len().max(1)),
                }
            }

            #[test]
            fn errors_never_quote_a_random_key(key in any::<[u8; 32]>(), cut in 1usize..44) {
                let secret = crate::crypto::base64::encode(&key);
                for text in files_with_a_piece_of(&secret, cut) {
                    if let Err(e) = WgQuick::parse(&text) {
                        let shown = format!("{e} {e:?}");
                        prop_assert!(!quotes(&shown, &secret), "{:?} quotes {:?}", shown, text);
                    }
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
                let file = WgQuick::parse(&with_peer_key(&s)).unwrap();
                prop_assert_eq!(file.peers[0].public_key.as_bytes(), &bytes);
            }
        }
    }
}
