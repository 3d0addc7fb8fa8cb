//! Reading wg-quick style configuration files (the format `tun_node --config FILE` takes).
//!
//! ```text
//! [Interface]
//! PrivateKey = <base64>
//! ListenPort = 51820
//! Address = 10.0.0.1/24, fd00::1/64
//! MTU = 1420                      # optional
//!
//! [Peer]
//! PublicKey = <base64>
//! PresharedKey = <base64>         # optional
//! AllowedIPs = 10.0.0.2/32, fd00::2/128
//! Endpoint = 192.0.2.7:51820      # optional; [v6]:port too; hostnames are left to the caller
//! PersistentKeepalive = 25        # optional
//! ```
//!
//! Keys are case-insensitive, `#` starts a comment. wg-quick's host-side keys (`DNS`, `Table`,
//! `PreUp`, `PostUp`, `PreDown`, `PostDown`, `SaveConfig`, `FwMark`) are accepted and listed in
//! [`WgQuickFile::ignored`]; anything else is an error naming the line, so a typo never
//! silently weakens a tunnel.

use super::allowed_ips::Cidr;
use super::config::{DeviceConfig, PeerConfig};
use crate::crypto::x25519::{base64_decode_32, PublicKey, StaticSecret};
use crate::crypto::SecretBytes;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::net::SocketAddr;

/// A parsed wg-quick file.
#[derive(Debug)]
#[non_exhaustive]
pub struct WgQuickFile {
    /// `[Interface] PrivateKey`.
    pub private_key: StaticSecret,
    /// `[Interface] ListenPort` (None: pick any).
    pub listen_port: Option<u16>,
    /// `[Interface] Address` entries (the host part is kept: `10.0.0.1/24` is address
    /// 10.0.0.1 on a /24).
    pub addresses: Vec<(core::net::IpAddr, u8)>,
    /// `[Interface] MTU`.
    pub mtu: Option<u16>,
    /// The `[Peer]` sections in order.
    pub peers: Vec<PeerConfig>,
    /// Peers whose `Endpoint` is a host name: (peer, `host:port`), for the caller to resolve.
    pub unresolved_endpoints: Vec<(PublicKey, String)>,
    /// wg-quick-only keys that were present and ignored, as `Key = value` lines.
    pub ignored: Vec<String>,
}

/// Why a file was rejected, with its 1-based line number.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WgQuickError {
    /// A line is not `[Section]`, `Key = Value`, a comment or blank.
    Syntax {
        /// Line number.
        line: usize,
    },
    /// A key that does not belong in its section (or outside any section).
    UnknownKey {
        /// Line number.
        line: usize,
        /// The key as written.
        key: String,
    },
    /// A value that does not parse (bad base64 key, prefix, port, number).
    InvalidValue {
        /// Line number.
        line: usize,
        /// The key whose value is wrong.
        key: String,
    },
    /// A required key is missing (`PrivateKey` once, `PublicKey` per peer), or a key that
    /// may appear once appears twice.
    Missing {
        /// What is missing or duplicated.
        what: &'static str,
    },
}

impl fmt::Display for WgQuickError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WgQuickError::Syntax { line } => {
                write!(f, "line {line}: not a section, key = value or comment")
            }
            WgQuickError::UnknownKey { line, key } => write!(f, "line {line}: unknown key {key}"),
            WgQuickError::InvalidValue { line, key } => {
                write!(f, "line {line}: invalid value for {key}")
            }
            WgQuickError::Missing { what } => write!(f, "{what}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for WgQuickError {}

const IGNORED: [&str; 8] = [
    "dns",
    "table",
    "preup",
    "postup",
    "predown",
    "postdown",
    "saveconfig",
    "fwmark",
];

enum Section {
    None,
    Interface,
    Peer,
}

impl WgQuickFile {
    /// Parses the text of a file.
    ///
    /// ```
    /// use sealwire::tunnel::WgQuickFile;
    /// let f = WgQuickFile::parse("
    /// [Interface]
    /// PrivateKey = AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=
    /// ListenPort = 51820
    /// Address = 10.0.0.1/24, fd00::1/64
    ///
    /// [Peer]
    /// PublicKey = CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=
    /// AllowedIPs = 10.0.0.2/32
    /// Endpoint = [2001:db8::7]:51820
    /// PersistentKeepalive = 25
    /// ").unwrap();
    /// assert_eq!(f.listen_port, Some(51820));
    /// assert_eq!(f.addresses.len(), 2);
    /// assert_eq!(f.peers[0].persistent_keepalive, Some(25));
    /// assert_eq!(f.peers[0].endpoint.unwrap().port(), 51820);
    /// let (device_config, peers) = f.into_configs();
    /// assert_eq!(peers.len(), 1);
    /// # let _ = device_config;
    /// ```
    pub fn parse(text: &str) -> Result<Self, WgQuickError> {
        let mut section = Section::None;
        let mut private_key: Option<StaticSecret> = None;
        let mut listen_port = None;
        let mut addresses = Vec::new();
        let mut mtu = None;
        let mut peers: Vec<(Option<PublicKey>, PeerConfig, Option<String>)> = Vec::new();
        let mut ignored = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.split('#').next().unwrap_or("").trim();
            if l.is_empty() {
                continue;
            }
            if l.starts_with('[') {
                section = match l.to_ascii_lowercase().as_str() {
                    "[interface]" => Section::Interface,
                    "[peer]" => {
                        peers.push((None, PeerConfig::new(PublicKey::from_bytes([0; 32])), None));
                        Section::Peer
                    }
                    _ => return Err(WgQuickError::Syntax { line }),
                };
                continue;
            }
            let (k, v) = l.split_once('=').ok_or(WgQuickError::Syntax { line })?;
            let (key, value) = (k.trim(), v.trim());
            let lower = key.to_ascii_lowercase();
            let invalid = || WgQuickError::InvalidValue {
                line,
                key: key.to_string(),
            };
            let list = |v: &str| -> Result<Vec<Cidr>, WgQuickError> {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse::<Cidr>().map_err(|_| invalid()))
                    .collect()
            };
            match (&section, lower.as_str()) {
                (Section::Interface, "privatekey") => {
                    if private_key.is_some() {
                        return Err(WgQuickError::Missing {
                            what: "PrivateKey appears twice",
                        });
                    }
                    private_key = Some(StaticSecret::from_base64(value).map_err(|_| invalid())?);
                }
                (Section::Interface, "listenport") => {
                    listen_port = Some(value.parse::<u16>().map_err(|_| invalid())?);
                }
                (Section::Interface, "mtu") => {
                    mtu = Some(value.parse::<u16>().map_err(|_| invalid())?);
                }
                (Section::Interface, "address") => {
                    for a in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        let (ip, len) = match a.split_once('/') {
                            Some((ip, len)) => (ip, Some(len)),
                            None => (a, None),
                        };
                        let ip: core::net::IpAddr = ip.parse().map_err(|_| invalid())?;
                        let max = if ip.is_ipv4() { 32 } else { 128 };
                        let len = match len {
                            Some(l) => l.parse::<u8>().map_err(|_| invalid())?,
                            None => max,
                        };
                        if len > max {
                            return Err(invalid());
                        }
                        addresses.push((ip, len));
                    }
                }
                (Section::Interface, k) if IGNORED.contains(&k) => {
                    ignored.push(alloc::format!("{key} = {value}"));
                }
                (Section::Peer, k) => {
                    let Some((pk, p, host)) = peers.last_mut() else {
                        return Err(WgQuickError::Syntax { line });
                    };
                    match k {
                        "publickey" => {
                            let key = PublicKey::from_base64(value).map_err(|_| invalid())?;
                            *pk = Some(key);
                            p.public_key = key;
                        }
                        "presharedkey" => {
                            let b = base64_decode_32(value).map_err(|_| invalid())?;
                            p.preshared_key = Some(SecretBytes::new(b));
                        }
                        "allowedips" => p.allowed_ips.extend(list(value)?),
                        "endpoint" => match value.parse::<SocketAddr>() {
                            Ok(a) => p.endpoint = Some(a),
                            Err(_) => {
                                // host:port with a non-empty host and a numeric port
                                let (h, port) = value.rsplit_once(':').ok_or_else(invalid)?;
                                if h.is_empty() || port.parse::<u16>().is_err() {
                                    return Err(invalid());
                                }
                                *host = Some(value.to_string());
                            }
                        },
                        "persistentkeepalive" => {
                            p.persistent_keepalive = if value.eq_ignore_ascii_case("off") {
                                None
                            } else {
                                Some(value.parse::<u16>().map_err(|_| invalid())?)
                            };
                        }
                        _ => {
                            return Err(WgQuickError::UnknownKey {
                                line,
                                key: key.to_string(),
                            })
                        }
                    }
                }
                _ => {
                    return Err(WgQuickError::UnknownKey {
                        line,
                        key: key.to_string(),
                    })
                }
            }
        }
        let private_key = private_key.ok_or(WgQuickError::Missing {
            what: "[Interface] PrivateKey is missing",
        })?;
        let mut out_peers = Vec::with_capacity(peers.len());
        let mut unresolved = Vec::new();
        for (pk, p, host) in peers {
            let pk = pk.ok_or(WgQuickError::Missing {
                what: "a [Peer] has no PublicKey",
            })?;
            if let Some(h) = host {
                unresolved.push((pk, h));
            }
            out_peers.push(p);
        }
        Ok(WgQuickFile {
            private_key,
            listen_port,
            addresses,
            mtu,
            peers: out_peers,
            unresolved_endpoints: unresolved,
            ignored,
        })
    }

    /// The [`DeviceConfig`] (with the file's MTU) and the peers, ready for
    /// [`Device::new`](super::Device::new) and [`Device::add_peer`](super::Device::add_peer).
    pub fn into_configs(self) -> (DeviceConfig, Vec<PeerConfig>) {
        let mut cfg = DeviceConfig::new(self.private_key);
        if let Some(m) = self.mtu {
            cfg.mtu = m;
        }
        (cfg, self.peers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY1: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    const KEY9: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";

    #[test]
    fn full_file_with_two_peers() {
        let text = alloc::format!(
            "# a node\n[Interface]\nprivatekey = {KEY1}\nListenPort=51820\nAddress = 10.0.0.1/24,fd00::1/64\nMTU = 1380\nDNS = 1.1.1.1\n\n[Peer]\nPublicKey = {KEY9}\nPresharedKey = {KEY1}\nAllowedIPs = 10.0.0.2/32, fd00::2/128\nEndpoint = vpn.example.com:51820\nPersistentKeepalive = off\n[Peer]\nPublicKey = {KEY1}\nAllowedIPs = 0.0.0.0/0\n"
        );
        let f = WgQuickFile::parse(&text).unwrap();
        assert_eq!(f.mtu, Some(1380));
        assert_eq!(f.peers.len(), 2);
        assert_eq!(f.peers[0].allowed_ips.len(), 2);
        assert!(f.peers[0].preshared_key.is_some());
        assert_eq!(f.peers[0].persistent_keepalive, None);
        assert_eq!(f.unresolved_endpoints.len(), 1);
        assert_eq!(f.unresolved_endpoints[0].1, "vpn.example.com:51820");
        assert_eq!(f.ignored, ["DNS = 1.1.1.1"]);
        let (cfg, _) = f.into_configs();
        assert_eq!(cfg.mtu, 1380);
    }

    #[test]
    fn errors_name_the_line() {
        let bad = [
            (
                alloc::format!("[Interface]\nPrivateKey = {KEY1}\nListenPort = 70000\n"),
                3,
            ),
            (
                alloc::format!("[Interface]\nPrivateKey = {KEY1}\nPrivatKey = x\n"),
                3,
            ),
            (
                alloc::format!("[Interface]\nPrivateKey = {KEY1}\n[Peer]\nPublicKey = nope\n"),
                4,
            ),
            (
                alloc::format!(
                    "[Interface]\nPrivateKey = {KEY1}\n[Peer]\nAllowedIPs = 10.0.0.0/33\n"
                ),
                4,
            ),
            (
                alloc::format!("[Interface]\nPrivateKey = {KEY1}\n[Wat]\n"),
                3,
            ),
            (alloc::format!("PrivateKey = {KEY1}\n"), 1),
            (
                alloc::format!("[Interface]\nPrivateKey = {KEY1}\nAddress = 10.0.0.1/40\n"),
                3,
            ),
        ];
        for (text, line) in bad {
            let e = WgQuickFile::parse(&text).unwrap_err();
            let got = match e {
                WgQuickError::Syntax { line }
                | WgQuickError::UnknownKey { line, .. }
                | WgQuickError::InvalidValue { line, .. } => line,
                other => panic!("{other:?} for {text}"),
            };
            assert_eq!(got, line, "{text}");
        }
        assert!(matches!(
            WgQuickFile::parse("[Interface]\n"),
            Err(WgQuickError::Missing { .. })
        ));
        assert!(matches!(
            WgQuickFile::parse(&alloc::format!(
                "[Interface]\nPrivateKey = {KEY1}\n[Peer]\nAllowedIPs = 10.0.0.2/32\n"
            )),
            Err(WgQuickError::Missing { .. })
        ));
    }
}
