//! The wg-quick configuration file (what `wg setconf` and `wg-quick` read, and what the
//! `tun_node` example program takes), parsed into a [`WgQuick`] and turned into a [`Device`].
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
//!   zero), exactly what `wg genkey` / `wg pubkey` / `wg genpsk` print; decoded in constant
//!   time by [`crypto::base64`](crate::crypto::base64).
//! * `MTU` is at least [`DeviceConfig::MIN_MTU`](crate::tunnel::DeviceConfig::MIN_MTU) (576).
//! * `Address` and `AllowedIPs` are comma lists of IPv4 or IPv6 addresses with an optional
//!   `/prefix` (default: a single host). An empty value is an empty list; an empty item
//!   between commas is an error.
//! * `Endpoint` is `host:port`, where host is an IPv4 address, `[IPv6]` in brackets, or a DNS
//!   name (resolved by the caller, not here: see [`WgQuick::resolve_endpoints`]).
//! * wg-quick keys that only drive the host's shell or resolver — `DNS`, `Table`, `PreUp`,
//!   `PostUp`, `PreDown`, `PostDown`, `SaveConfig` — and `wg`'s `FwMark` are accepted in
//!   `[Interface]` and ignored; each one is listed in [`WgQuick::ignored`] so a caller can warn.
//!
//! Why so strict: a tunnel that comes up with a mistyped key or a truncated AllowedIPs list
//! fails silently (no handshake, or traffic dropped by cryptokey routing). A parse error that
//! names the line and the key is found in seconds. Error messages never contain a value from
//! the file, so a private key on a malformed line cannot leak into a log.
//!
//! # From file to device
//!
//! ```
//! use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
//! use sealwire::time::Instant;
//! use sealwire::tunnel::wg_quick::WgQuick;
//! let mut file = WgQuick::parse(
//!     "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nMTU = 1380\n\
//!      [Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n\
//!      AllowedIPs = 10.0.0.2/32\nEndpoint = vpn.example.com:51820\n",
//! )?;
//! // DNS names are the caller's to resolve (here a fixed answer; a program asks its resolver).
//! file.resolve_endpoints(|host, port| {
//!     assert_eq!((host, port), ("vpn.example.com", 51820));
//!     Ok::<_, ()>("192.0.2.7:51820".parse().unwrap())
//! }).unwrap();
//! let device = file.device(Instant::ZERO, ChaCha20Rng::seed_from_u64(1))?;
//! assert_eq!(device.peer_count(), 1);
//! assert_eq!(file.device_config().mtu, 1380);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Errors name the line and the key:
//!
//! ```
//! use sealwire::tunnel::wg_quick::WgQuick;
//! let text = "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n\
//!             ListenPort = 51820\n\n[Peer]\nPublicKey = ???\n";
//! let err = WgQuick::parse(text).unwrap_err();
//! assert_eq!(err.to_string(), "line 6: PublicKey: invalid base64 key");
//! assert_eq!(err.line(), 6);
//! ```

mod error;
mod parse;

pub use error::{WgQuickError, WgQuickErrorKind};

use crate::crypto::x25519::{PublicKey, StaticSecret};
use crate::time::Instant;
use crate::tunnel::allowed_ips::Cidr;
use crate::tunnel::config::{DeviceConfig, PeerConfig};
use crate::tunnel::device::Device;
use crate::tunnel::error::DeviceError;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, SocketAddr};

/// A parsed wg-quick file: one interface and its peers.
///
/// ```
/// use sealwire::tunnel::wg_quick::WgQuick;
/// let file = WgQuick::parse(
///     "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n\
///      ListenPort = 51820\nAddress = 10.0.0.1/24\n\
///      [Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n\
///      AllowedIPs = 10.0.0.2/32\nEndpoint = 192.0.2.7:51820\n",
/// ).unwrap();
/// assert_eq!(file.interface.listen_port, Some(51820));
/// assert_eq!(file.peers.len(), 1);
/// assert_eq!(file.peers[0].endpoint, Some("192.0.2.7:51820".parse().unwrap()));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct WgQuick {
    /// The `[Interface]` section.
    pub interface: Interface,
    /// The `[Peer]` sections, in file order, as the device takes them. A peer whose
    /// `Endpoint` is a DNS name has no endpoint here until
    /// [`resolve_endpoints`](Self::resolve_endpoints) fills it in.
    pub peers: Vec<PeerConfig>,
    /// The `Endpoint`s given as DNS names, still to resolve.
    pub named_endpoints: Vec<NamedEndpoint>,
    /// wg-quick keys that were accepted but have no effect here (see the module doc).
    pub ignored: Vec<IgnoredKey>,
}

/// The `[Interface]` section.
///
/// ```
/// let file = sealwire::tunnel::wg_quick::WgQuick::parse(
///     "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n",
/// ).unwrap();
/// assert_eq!((file.interface.listen_port, file.interface.mtu), (None, None));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Interface {
    /// `PrivateKey`: this node's X25519 static private key.
    pub private_key: StaticSecret,
    /// `ListenPort`: the UDP port to bind; `None` lets the caller pick one.
    pub listen_port: Option<u16>,
    /// `Address`: the addresses to assign to the TUN interface (host bits kept).
    pub addresses: Vec<InterfaceAddress>,
    /// `MTU`: the TUN interface MTU; `None` means the default, 1420
    /// (see [`WgQuick::device_config`]).
    pub mtu: Option<u16>,
}

/// A peer `Endpoint` given as a DNS name, for the caller to resolve.
///
/// ```
/// use sealwire::tunnel::wg_quick::WgQuick;
/// let file = WgQuick::parse(
///     "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n\
///      [Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nEndpoint = vpn.example.com:51820\n",
/// ).unwrap();
/// assert_eq!(file.named_endpoints[0].to_string(), "vpn.example.com:51820");
/// assert_eq!(file.peers[0].endpoint, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NamedEndpoint {
    /// The peer whose endpoint this is.
    pub peer: PublicKey,
    /// The DNS name (letters, digits, `-`, `.`, `_`).
    pub host: String,
    /// The UDP port (non-zero).
    pub port: u16,
}

impl fmt::Display for NamedEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A key that was accepted and ignored, with its line (for a warning).
///
/// ```
/// let file = sealwire::tunnel::wg_quick::WgQuick::parse(
///     "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nDNS = 1.1.1.1\n",
/// ).unwrap();
/// assert_eq!((file.ignored[0].line, file.ignored[0].key), (3, "DNS"));
/// ```
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
/// use sealwire::tunnel::wg_quick::InterfaceAddress;
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
    type Err = WgQuickErrorKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix_len) = parse::parse_prefix(s)?;
        Ok(InterfaceAddress { addr, prefix_len })
    }
}

impl WgQuick {
    /// Parses a whole file.
    ///
    /// Returns the first problem found, with its line; see the module doc for the rules.
    ///
    /// ```
    /// use sealwire::tunnel::wg_quick::{WgQuick, WgQuickErrorKind};
    /// let err = WgQuick::parse("[Interface]\nListenPort = 51820\n").unwrap_err();
    /// assert_eq!(err.line(), 1);
    /// assert_eq!(err.kind(), &WgQuickErrorKind::Missing);
    /// assert_eq!(err.to_string(), "line 1: PrivateKey: required key is missing in this section");
    /// ```
    pub fn parse(text: &str) -> Result<WgQuick, WgQuickError> {
        parse::parse(text)
    }

    /// The device configuration the file asks for: its `MTU` (1420 without one), every
    /// other knob at its [default](DeviceConfig::default).
    ///
    /// ```
    /// let file = sealwire::tunnel::wg_quick::WgQuick::parse(
    ///     "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n",
    /// ).unwrap();
    /// assert_eq!(file.device_config().mtu, 1420);
    /// ```
    pub fn device_config(&self) -> DeviceConfig {
        let mut config = DeviceConfig::default();
        if let Some(mtu) = self.interface.mtu {
            config.mtu = mtu;
        }
        config
    }

    /// Resolves every [`named_endpoints`](Self::named_endpoints) entry with `resolve(host,
    /// port)` and sets the peer's endpoint; the list is empty afterwards. The first failure
    /// is returned and the list is left as it was.
    ///
    /// ```
    /// let mut file = sealwire::tunnel::wg_quick::WgQuick::parse(
    ///     "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n",
    /// ).unwrap();
    /// // Nothing to resolve: the resolver is never called.
    /// file.resolve_endpoints(|_, _| Err("no resolver")).unwrap();
    /// ```
    pub fn resolve_endpoints<E>(
        &mut self,
        mut resolve: impl FnMut(&str, u16) -> Result<SocketAddr, E>,
    ) -> Result<(), E> {
        let mut resolved = Vec::with_capacity(self.named_endpoints.len());
        for named in &self.named_endpoints {
            resolved.push((named.peer, resolve(&named.host, named.port)?));
        }
        for (key, addr) in resolved {
            if let Some(peer) = self.peers.iter_mut().find(|p| p.public_key == key) {
                peer.endpoint = Some(addr);
            }
        }
        self.named_endpoints.clear();
        Ok(())
    }

    /// A [`Device`] with the file's key, [configuration](Self::device_config) and peers
    /// (added at `now`). Endpoints given as DNS names must be
    /// [resolved](Self::resolve_endpoints) first: until then this refuses with
    /// `InvalidConfig("endpoint")` rather than make those peers silent responders.
    ///
    /// ```
    /// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
    /// use sealwire::time::Instant;
    /// let file = sealwire::tunnel::wg_quick::WgQuick::parse(
    ///     "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n",
    /// ).unwrap();
    /// let device = file.device(Instant::ZERO, ChaCha20Rng::seed_from_u64(1)).unwrap();
    /// assert_eq!(device.public_key(), file.interface.private_key.public_key());
    /// ```
    pub fn device<R: rand_core::CryptoRng>(
        &self,
        now: Instant,
        rng: R,
    ) -> Result<Device<R>, DeviceError> {
        if !self.named_endpoints.is_empty() {
            return Err(DeviceError::InvalidConfig("endpoint"));
        }
        let key = self.interface.private_key.clone();
        let mut device = Device::new(key, self.device_config(), rng)?;
        for peer in &self.peers {
            device.add_peer(now, peer.clone())?;
        }
        Ok(device)
    }
}

impl Drop for WgQuick {
    /// The private key and every PSK wipe themselves; the block of the peer list is zeroed as
    /// a whole too (padding and spare room included: see `tunnel::wiped`).
    fn drop(&mut self) {
        crate::tunnel::wiped::wipe(&mut self.peers);
    }
}

impl core::str::FromStr for WgQuick {
    type Err = WgQuickError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WgQuick::parse(s)
    }
}
