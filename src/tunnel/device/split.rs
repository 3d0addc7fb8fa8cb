//! The data path in steps, so that the encryption runs without the device: a worker holds
//! the device (behind the embedder's lock) only for the bookkeeping of a packet, and seals
//! or opens it after letting go.
//!
//! * Send: [`Device::encapsulate_batch_unsealed`] does everything but the encryption and
//!   returns a [`SealJob`]; [`SealJob::seal`] encrypts, anywhere.
//! * Receive: [`Device::decapsulate_begin`] checks a datagram (a handshake message is handled
//!   whole there) and lends an [`Opening`] for transport data; [`Opening::open`] decrypts,
//!   anywhere; [`Device::decapsulate_finish`] checks the inner packet and accepts it (replay
//!   window, roaming, timers).
//!
//! Done one after the other, the steps give exactly what the single calls give: same bytes,
//! results, counters, timers and events (`tests/tunnel_props.rs` runs the three worlds side
//! by side). Between the steps another thread may use the device: the replay window is
//! marked at the finish, so a datagram that two workers open at once is accepted once.
//!
//! The lent keys are copies of the session's raw keys, wiped when the job or opening is
//! dropped; what the `ring` backend leaves on the stack while it builds a key applies here
//! once per job or opening (see [`Keypair`](crate::tunnel::keypair)).

use super::Device;
use crate::crypto::aead::TransportKey;
use crate::time::Instant;
use crate::tunnel::error::{DeviceError, DropReason};
use crate::tunnel::keypair::{open_sealed, seal_datagram};
use crate::tunnel::output::Action;
use crate::tunnel::wire::{self, Message, DATA_HEADER_LEN};
use core::net::SocketAddr;
use zeroize::Zeroizing;

/// The encryption of a batch, taken out of the device by
/// [`Device::encapsulate_batch_unsealed`]: the session's send key (a copy, wiped on drop),
/// the receiver's index and the first of the batch's counters. [`seal`](Self::seal) it into
/// the same buffer; until then that buffer holds the packets in the clear.
///
/// ```
/// # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
/// # use sealwire::crypto::x25519::StaticSecret;
/// # use sealwire::time::Instant;
/// use sealwire::tunnel::{Device, DeviceConfig, PeerConfig};
/// let mut d = Device::new(StaticSecret::from_bytes([1; 32]), DeviceConfig::default(), ChaCha20Rng::seed_from_u64(0))?;
/// let mut p = PeerConfig::new(StaticSecret::from_bytes([2; 32]).public_key());
/// p.endpoint = Some("192.0.2.2:51820".parse().unwrap());
/// p.allowed_ips.push("10.0.0.2/32".parse().unwrap());
/// d.add_peer(Instant::ZERO, p)?;
/// let mut ip = [0u8; 20];
/// ip[0] = 0x45; ip[3] = 20; ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
/// // No session yet: the initiation needs no sealing, so there is no job.
/// let mut out = [0u8; 2048];
/// let (batch, job) = d.encapsulate_batch_unsealed(Instant::ZERO, &[ip], &mut out)?;
/// assert!(job.is_none());
/// assert_eq!((batch.consumed, batch.segment_size), (1, 148));
/// # Ok::<(), sealwire::tunnel::DeviceError>(())
/// ```
/// A full example: [`Device::encapsulate_batch_unsealed`].
#[must_use = "the buffer holds the packets in the clear until the job seals it"]
pub struct SealJob {
    pub(super) key: Zeroizing<[u8; 32]>,
    pub(super) remote_index: u32,
    pub(super) first_counter: u64,
    pub(super) segment_size: usize,
    pub(super) segments: usize,
    pub(super) len: usize,
}

impl SealJob {
    /// Seals the batch's datagrams where they lie in `out[..len]` (the buffer given to
    /// [`Device::encapsulate_batch_unsealed`], with the `len` of its
    /// [`SealedBatch`](super::super::SealedBatch)): writes each header and encrypts each
    /// payload with its counter. Allocates nothing. `Err(BufferTooSmall)` (a shorter
    /// buffer than the batch's) seals nothing. Example: [`Device::encapsulate_batch_unsealed`].
    pub fn seal(self, out: &mut [u8]) -> Result<(), DeviceError> {
        let buf = out
            .get_mut(..self.len)
            .ok_or(DeviceError::BufferTooSmall { needed: self.len })?;
        let key = TransportKey::new(*self.key);
        let mut counter = self.first_counter;
        for datagram in buf.chunks_mut(self.segment_size.max(1)).take(self.segments) {
            seal_datagram(&key, self.remote_index, counter, datagram).ok_or(
                DeviceError::BufferTooSmall {
                    needed: DATA_HEADER_LEN * 2,
                },
            )?;
            counter = counter.saturating_add(1);
        }
        Ok(())
    }
}

impl core::fmt::Debug for SealJob {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SealJob")
            .field("key", &"[redacted]")
            .field("first_counter", &self.first_counter)
            .field("segments", &self.segments)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// What [`Device::decapsulate_begin`] made of a datagram.
///
/// ```
/// use sealwire::tunnel::{Action, Begun};
/// let b = Begun::Done(Action::Done);
/// assert!(matches!(b, Begun::Done(Action::Done)));
/// ```
#[derive(Debug)]
#[must_use]
pub enum Begun {
    /// Not transport data (a handshake message or cookie reply): handled whole, as
    /// [`Device::decapsulate_in_place`] would; a reply is in the buffer.
    Done(Action),
    /// Transport data that passed every check before decryption: [`Opening::open`] it, then
    /// hand the result to [`Device::decapsulate_finish`].
    Open(Opening),
}

/// The decryption of one transport-data datagram, lent by [`Device::decapsulate_begin`]: the
/// session's receive key (a copy, wiped on drop), the datagram's index and counter.
/// Example: [`Device::decapsulate_begin`].
pub struct Opening {
    key: Zeroizing<[u8; 32]>,
    receiver: u32,
    counter: u64,
    len: usize,
}

impl Opening {
    /// Decrypts the datagram in place (the `buf` given to [`Device::decapsulate_begin`],
    /// holding it in `buf[..len]`): the plaintext ends up behind the 16-byte header, as with
    /// [`Device::decapsulate_in_place`]. Allocates nothing and needs no device. A failed
    /// decryption is reported by [`Device::decapsulate_finish`].
    pub fn open(self, buf: &mut [u8]) -> Opened {
        let key = TransportKey::new(*self.key);
        let ok = buf
            .get_mut(DATA_HEADER_LEN..self.len)
            .is_some_and(|sealed| open_sealed(&key, self.counter, sealed).is_ok());
        Opened {
            receiver: self.receiver,
            counter: self.counter,
            len: self
                .len
                .saturating_sub(DATA_HEADER_LEN + crate::crypto::aead::TAG_LEN),
            ok,
        }
    }
}

impl core::fmt::Debug for Opening {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Opening")
            .field("key", &"[redacted]")
            .field("receiver", &self.receiver)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

/// A datagram [`Opening::open`] decrypted (or failed to), for [`Device::decapsulate_finish`].
/// Example: [`Device::decapsulate_begin`].
#[derive(Debug)]
#[must_use = "the packet is accepted only by Device::decapsulate_finish"]
pub struct Opened {
    receiver: u32,
    counter: u64,
    len: usize,
    ok: bool,
}

impl<R: rand_core::CryptoRng> Device<R> {
    /// The first step of [`decapsulate_in_place`](Self::decapsulate_in_place) for a worker
    /// that opens packets without holding the device: the
    /// datagram is `buf[..len]`.
    ///
    /// A handshake message or cookie reply is handled whole, as `decapsulate_in_place`
    /// handles it ([`Begun::Done`], a reply in `buf`). Transport data gets every check that
    /// comes before decryption (known index, live session, not a replay: a replay costs no
    /// decryption) and an [`Opening`]. A bad datagram is `Err`, counted, and changes nothing.
    ///
    /// ```
    /// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
    /// use sealwire::crypto::x25519::StaticSecret;
    /// use sealwire::time::{Instant, WallTime};
    /// use sealwire::tunnel::{Action, Begun, Device, DeviceConfig, DeviceError, DropReason, PeerConfig, DATA_HEADER_LEN};
    ///
    /// let (ka, kb) = (StaticSecret::from_bytes([1; 32]), StaticSecret::from_bytes([2; 32]));
    /// let (pa, pb) = (ka.public_key(), kb.public_key());
    /// let mut a = Device::new(ka, DeviceConfig::default(), ChaCha20Rng::seed_from_u64(1))?;
    /// let mut b = Device::new(kb, DeviceConfig::default(), ChaCha20Rng::seed_from_u64(2))?;
    /// let (addr_a, addr_b) = ("192.0.2.1:51820".parse().unwrap(), "192.0.2.2:51820".parse().unwrap());
    /// let mut peer_b = PeerConfig::new(pb);
    /// peer_b.endpoint = Some(addr_b);
    /// peer_b.allowed_ips.push("10.0.0.2/32".parse().unwrap());
    /// a.add_peer(Instant::ZERO, peer_b)?;
    /// let mut peer_a = PeerConfig::new(pa);
    /// peer_a.allowed_ips.push("10.0.0.1/32".parse().unwrap());
    /// b.add_peer(Instant::ZERO, peer_a)?;
    /// let now = Instant::from_secs(1);
    /// a.set_wall_clock(now, WallTime::from_unix(1_700_000_000, 0));
    /// let mut ip = [0u8; 20];
    /// ip[0] = 0x45; ip[3] = 20; ip[12..16].copy_from_slice(&[10, 0, 0, 1]); ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    ///
    /// // The initiation is handled whole by the first step; its response is in `buf`.
    /// let mut buf = [0u8; 2048];
    /// let Action::WriteToNetwork { len, .. } = a.encapsulate(now, &ip, &mut buf)? else { panic!() };
    /// let Begun::Done(Action::WriteToNetwork { len, .. }) = b.decapsulate_begin(now, addr_a, &mut buf, len)? else { panic!() };
    /// let mut reply = [0u8; 2048];
    /// let _ = a.decapsulate(now, addr_b, &buf[..len], &mut reply)?;
    /// let data = a.poll_transmit().unwrap().payload; // the staged packet, sealed
    ///
    /// // Transport data: check (device held), open (device not needed), finish (device held).
    /// buf[..data.len()].copy_from_slice(&data);
    /// let Begun::Open(opening) = b.decapsulate_begin(now, addr_a, &mut buf, data.len())? else { panic!() };
    /// let opened = opening.open(&mut buf);
    /// let Action::WriteToTunnel { len, .. } = b.decapsulate_finish(now, addr_a, opened, &buf)? else { panic!() };
    /// assert_eq!(&buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len], &ip);
    ///
    /// // The same datagram again: a replay, refused before any decryption.
    /// buf[..data.len()].copy_from_slice(&data);
    /// let err = b.decapsulate_begin(now, addr_a, &mut buf, data.len()).unwrap_err();
    /// assert_eq!(err, DeviceError::Dropped(DropReason::ReplayedCounter));
    /// # Ok::<(), sealwire::tunnel::DeviceError>(())
    /// ```
    pub fn decapsulate_begin(
        &mut self,
        now: Instant,
        src: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> Result<Begun, DeviceError> {
        let datagram = buf
            .get(..len)
            .ok_or(DeviceError::BufferTooSmall { needed: len })?;
        let (receiver, counter) = match wire::parse(datagram) {
            // `parse` holds transport data to at least a header and a tag.
            Ok(Message::Data {
                receiver, counter, ..
            }) => (receiver, counter),
            // A handshake message, or a drop that decapsulate_in_place counts the same way.
            _ => {
                return self
                    .decapsulate_in_place(now, src, buf, len)
                    .map(Begun::Done)
            }
        };
        let lent = self
            .peers
            .by_index_mut(receiver)
            .and_then(|(_, p)| p.keypair_mut(receiver))
            .ok_or(DropReason::UnknownIndex)
            .and_then(|(_, kp)| {
                kp.check_receivable(now, counter)?;
                Ok(kp.lend_recv_key())
            });
        match lent {
            Ok(key) => Ok(Begun::Open(Opening {
                key,
                receiver,
                counter,
                len,
            })),
            Err(reason) => {
                self.stats.count(reason);
                Err(reason.into())
            }
        }
    }

    /// The last step: accepts what [`Opening::open`] decrypted in `buf` (the same buffer),
    /// with the checks and effects [`decapsulate_in_place`](Self::decapsulate_in_place) has
    /// after decryption: the inner packet's header and source address (AllowedIPs), the
    /// replay window, the session confirmed, roaming, timers, statistics. The result is
    /// `decapsulate_in_place`'s: [`Action::WriteToTunnel`]`{ len, .. }` means write
    /// `buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len]` to the TUN. A datagram that failed to
    /// decrypt, whose session went in between, or that another worker accepted meanwhile
    /// is `Err`, counted. Example: [`decapsulate_begin`](Self::decapsulate_begin).
    pub fn decapsulate_finish(
        &mut self,
        now: Instant,
        src: SocketAddr,
        opened: Opened,
        buf: &[u8],
    ) -> Result<Action, DeviceError> {
        let result = if opened.ok {
            let end = DATA_HEADER_LEN.saturating_add(opened.len);
            match (
                buf.get(DATA_HEADER_LEN..end),
                self.peers.slot_of_index(opened.receiver),
            ) {
                (Some(plain), Some(slot)) => {
                    self.accept_data(now, src, slot, opened.receiver, opened.counter, plain)
                }
                (None, _) => Err(DeviceError::BufferTooSmall { needed: end }),
                (_, None) => Err(DropReason::UnknownIndex.into()),
            }
        } else {
            Err(DropReason::DecryptFailed.into())
        };
        self.count_drop(result)
    }
}
