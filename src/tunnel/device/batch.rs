//! Batches for UDP segmentation offload: [`Device::encapsulate_batch`] seals a run of
//! packets for one peer into consecutive datagrams of one buffer (one GSO send), and
//! [`Device::decapsulate_batch`] opens a buffer of received datagrams (one GRO receive) in
//! place. Both are the single-packet calls in a loop, with the same results, counters,
//! replay window and timers (`tests/tunnel_props.rs` checks this byte for byte); they
//! allocate nothing on the data path. [`Device::encapsulate_batch_unsealed`] leaves the
//! encryption of a batch to a [`SealJob`] run outside the device (see [`split`](super::split)).

use super::{Device, SealJob};
use crate::time::Instant;
use crate::tunnel::error::DeviceError;
use crate::tunnel::output::{Action, SealedBatch};
use crate::tunnel::peer::Peer;
use crate::tunnel::wire::DATA_HEADER_LEN;
use core::net::SocketAddr;

impl<R: rand_core::CryptoRng> Device<R> {
    /// Seals a run of IP packets from the TUN into consecutive datagrams of `out`, ready for
    /// one UDP GSO send; returns how many packets it took and what to send.
    ///
    /// The batch is the longest prefix of `packets` that goes, on an existing session, to the
    /// peer and endpoint of `packets[0]` in datagrams of equal size, the last one possibly
    /// shorter (`UDP_SEGMENT` requires that): it stops before a packet for another peer or
    /// endpoint, one that has no session or no route, one whose datagram would be longer
    /// than the first's, and one that no longer fits in `out`; and it stops after a shorter
    /// datagram. Call again with `&packets[consumed..]` for the rest. Each packet is sealed
    /// exactly as [`encapsulate`](Self::encapsulate) would seal it, in order: same counters,
    /// same timers, same rekeys (their initiations go to [`poll_transmit`](Self::poll_transmit)).
    ///
    /// When `packets[0]` cannot start a batch (no session yet, no route, malformed), the call
    /// is [`encapsulate`](Self::encapsulate)`(now, packets[0], out)`: its `Ok` comes back as a
    /// batch of at most one datagram (a staged packet and its initiation, `consumed` 1), and
    /// an `Err` concerns `packets[0]` alone: a drop (`Err(Dropped)`, counted) consumed it,
    /// `Err(BufferTooSmall { needed })` changed nothing. An empty run returns `consumed` 0
    /// and [`Action::Done`].
    ///
    /// The caller bounds the batch: Linux takes at most 64 segments per send (`packets` no
    /// longer than that, or quinn-udp's `max_gso_segments`) and at most 65,507 bytes of
    /// UDP payload in all (`out` no longer than that). `out` needs each packet padded to 16
    /// bytes (not beyond the MTU) plus 32 bytes, e.g. 64 × 1452 for 64 packets of 1420.
    ///
    /// ```
    /// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
    /// use sealwire::crypto::x25519::StaticSecret;
    /// use sealwire::time::{Instant, WallTime};
    /// use sealwire::tunnel::{Action, Device, DeviceConfig, PeerConfig, DATA_HEADER_LEN};
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
    ///
    /// // IPv4 packets 10.0.0.1 -> 10.0.0.2 of `len` bytes.
    /// let ip = |len: usize| {
    ///     let mut p = vec![0u8; len];
    ///     p[0] = 0x45; p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    ///     p[12..16].copy_from_slice(&[10, 0, 0, 1]); p[16..20].copy_from_slice(&[10, 0, 0, 2]);
    ///     p
    /// };
    /// // Three full-size packets and a short one.
    /// let run = [ip(1420), ip(1420), ip(1420), ip(100)];
    /// let mut out = vec![0u8; 64 * 1452];
    ///
    /// // No session yet: the first packet is staged and the batch is the initiation.
    /// let first = a.encapsulate_batch(now, &run, &mut out)?;
    /// assert_eq!((first.consumed, first.segments, first.segment_size), (1, 1, 148));
    /// let mut buf = [0u8; 2048];
    /// buf[..148].copy_from_slice(&out[..148]);
    /// let Action::WriteToNetwork { len, .. } = b.decapsulate_in_place(now, addr_a, &mut buf, 148)? else { panic!() };
    /// assert_eq!(a.decapsulate(now, addr_b, &buf[..len], &mut out)?, Action::Done); // the response
    /// let staged = a.poll_transmit().unwrap(); // the first packet, sealed
    /// assert!(matches!(b.decapsulate(now, addr_a, &staged.payload, &mut buf)?, Action::WriteToTunnel { len: 1420, .. }));
    ///
    /// // The rest in one batch: two datagrams of 1452 bytes and a short one of 144
    /// // (100 bytes padded to 112, plus 32).
    /// let batch = a.encapsulate_batch(now, &run[1..], &mut out)?;
    /// assert_eq!((batch.consumed, batch.segments, batch.segment_size), (3, 3, 1452));
    /// let Action::WriteToNetwork { to, len } = batch.action else { panic!() };
    /// assert_eq!((to, len), (addr_b, 2 * 1452 + 144));
    ///
    /// // The receiver opens them as GRO hands them over: one buffer, stride 1452.
    /// let mut opened = Vec::new();
    /// for (result, segment) in b.decapsulate_batch(now, addr_a, &mut out[..len], batch.segment_size) {
    ///     if let Action::WriteToTunnel { len, .. } = result? {
    ///         opened.push(segment[DATA_HEADER_LEN..DATA_HEADER_LEN + len].to_vec());
    ///     }
    /// }
    /// assert_eq!(opened, run[1..]);
    /// # Ok::<(), sealwire::tunnel::DeviceError>(())
    /// ```
    pub fn encapsulate_batch<P: AsRef<[u8]>>(
        &mut self,
        now: Instant,
        packets: &[P],
        out: &mut [u8],
    ) -> Result<SealedBatch, DeviceError> {
        let (batch, job) = self.encapsulate_batch_unsealed(now, packets, out)?;
        if let Some(job) = job {
            // `out` is the buffer the job was made for: this cannot fail.
            job.seal(out)?;
        }
        Ok(batch)
    }

    /// [`encapsulate_batch`](Self::encapsulate_batch) in two steps, so that the encryption
    /// can run without holding the device: everything happens here (routing, the packets
    /// copied and padded into `out`, their counters taken in order, timers, statistics,
    /// rekeys) except sealing, which the returned [`SealJob`] does, on any thread, with no
    /// access to the device. A worker pool shares one device behind a lock this way, holding
    /// it only for this call (about 3 µs for a run of 64 packets of 1420 bytes, most of it
    /// copying them, against about 48 µs of encryption: `benches/tunnel.rs`), never for the
    /// encryption.
    ///
    /// The [`SealedBatch`] is the one `encapsulate_batch` returns, and after
    /// [`SealJob::seal`]`(out)` the bytes of `out` are the ones it writes. `None` instead of
    /// a job means `out` needs no sealing (an initiation, or nothing to send). Until it is
    /// sealed, `out[..len]` holds the packets in the clear (and whatever headers the buffer
    /// held before): send nothing from it before. A job dropped unsealed spends its counters (the receiver
    /// never sees them, which WireGuard tolerates as loss).
    ///
    /// Batches sealed by different threads may reach the network in another order than
    /// their counters: the receiver's replay window (8,128 counters here, in the kernel and
    /// in wireguard-go; boringtun's is 2,048) accepts them as long as no more than that many
    /// counters are in flight unsealed.
    ///
    /// ```
    /// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
    /// use sealwire::crypto::x25519::StaticSecret;
    /// use sealwire::time::{Instant, WallTime};
    /// use sealwire::tunnel::{Action, Device, DeviceConfig, PeerConfig, DATA_HEADER_LEN};
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
    /// let ip = |len: usize| {
    ///     let mut p = vec![0u8; len];
    ///     p[0] = 0x45; p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    ///     p[12..16].copy_from_slice(&[10, 0, 0, 1]); p[16..20].copy_from_slice(&[10, 0, 0, 2]);
    ///     p
    /// };
    /// // A handshake first (the first packet is staged and sent once it completes).
    /// let (mut buf, mut reply) = ([0u8; 2048], [0u8; 2048]);
    /// let Action::WriteToNetwork { len, .. } = a.encapsulate(now, &ip(100), &mut buf)? else { panic!() };
    /// let Action::WriteToNetwork { len, .. } = b.decapsulate(now, addr_a, &buf[..len], &mut reply)? else { panic!() };
    /// let _ = a.decapsulate(now, addr_b, &reply[..len], &mut buf)?;
    /// let staged = a.poll_transmit().unwrap();
    /// assert!(matches!(b.decapsulate(now, addr_a, &staged.payload, &mut buf)?, Action::WriteToTunnel { .. }));
    ///
    /// // Under the lock: counters taken, nothing encrypted yet.
    /// let run = [ip(1420), ip(1420), ip(600)];
    /// let mut out = vec![0u8; 64 * 1452];
    /// let (batch, job) = a.encapsulate_batch_unsealed(now, &run, &mut out)?;
    /// assert_eq!((batch.consumed, batch.segments, batch.segment_size), (3, 3, 1452));
    /// // Outside it, on any thread: the encryption.
    /// job.expect("a session exists").seal(&mut out)?;
    /// let Action::WriteToNetwork { len, .. } = batch.action else { panic!() };
    /// let mut opened = Vec::new();
    /// for (result, segment) in b.decapsulate_batch(now, addr_a, &mut out[..len], batch.segment_size) {
    ///     if let Action::WriteToTunnel { len, .. } = result? {
    ///         opened.push(segment[DATA_HEADER_LEN..DATA_HEADER_LEN + len].to_vec());
    ///     }
    /// }
    /// assert_eq!(opened, run);
    /// # Ok::<(), sealwire::tunnel::DeviceError>(())
    /// ```
    pub fn encapsulate_batch_unsealed<P: AsRef<[u8]>>(
        &mut self,
        now: Instant,
        packets: &[P],
        out: &mut [u8],
    ) -> Result<(SealedBatch, Option<SealJob>), DeviceError> {
        let Some(first) = packets.first().map(AsRef::as_ref) else {
            let batch = SealedBatch {
                consumed: 0,
                action: Action::Done,
                segment_size: 0,
                segments: 0,
            };
            return Ok((batch, None));
        };
        let route = self.route_uncounted(now, first);
        let session = match route {
            Ok((slot, true, to)) => self
                .peers
                .get(slot)
                .and_then(Peer::current)
                .map(|kp| (slot, to, kp)),
            _ => None,
        };
        let Some((slot, to, kp)) = session else {
            // Not a batch: exactly the single-packet call (which counts what it drops, and
            // whose datagram, if any, needs no further sealing).
            let action = self.encapsulate(now, first, out)?;
            let (segment_size, segments) = match action {
                Action::WriteToNetwork { len, .. } => (len, 1),
                _ => (0, 0),
            };
            let batch = SealedBatch {
                consumed: 1,
                action,
                segment_size,
                segments,
            };
            return Ok((batch, None));
        };
        let (key, remote_index, first_counter) =
            (kp.lend_send_key(), kp.remote_index, kp.send_counter);
        let segment_size = self.datagram_len(first.len());
        let mut off = 0usize;
        let mut segments = 0usize;
        for packet in packets {
            let packet = packet.as_ref();
            if segments > 0 {
                match self.route_uncounted(now, packet) {
                    Ok((s, true, t)) if s == slot && t == to => {}
                    _ => break,
                }
            }
            let len = self.datagram_len(packet.len());
            let end = off.saturating_add(len);
            let Some(dst) = out.get_mut(off..end).filter(|_| len <= segment_size) else {
                if segments == 0 {
                    return Err(DeviceError::BufferTooSmall { needed: len });
                }
                break;
            };
            if let Some(payload) = dst
                .get_mut(DATA_HEADER_LEN..)
                .and_then(|d| d.get_mut(..packet.len()))
            {
                payload.copy_from_slice(packet);
            }
            match self.send_in_place::<false>(now, slot, packet.len(), dst) {
                Ok(_) => {}
                // Not reached once routing found a session; nothing changed for this packet.
                Err(e) if segments == 0 => return Err(e),
                Err(_) => break,
            }
            off = end;
            segments = segments.saturating_add(1);
            if len < segment_size {
                break;
            }
        }
        let batch = SealedBatch {
            consumed: segments,
            action: Action::WriteToNetwork { to, len: off },
            segment_size,
            segments,
        };
        let job = SealJob {
            key,
            remote_index,
            first_counter,
            segment_size,
            segments,
            len: off,
        };
        Ok((batch, Some(job)))
    }

    /// Opens a buffer of datagrams from `src` received at once (UDP GRO: each `stride`
    /// bytes long, the last possibly shorter; `stride` 0 means one datagram) in place,
    /// one datagram per step of the returned iterator.
    ///
    /// Each step is [`decapsulate_in_place`](Self::decapsulate_in_place) on the next
    /// datagram and yields its result with the datagram's part of `buf`, so everything that
    /// call promises holds per datagram: [`Action::WriteToTunnel`]`{ len, .. }` means write
    /// `segment[DATA_HEADER_LEN..DATA_HEADER_LEN + len]` to the TUN, a reply
    /// ([`Action::WriteToNetwork`]`{ len, .. }`, for a handshake message) is `segment[..len]`,
    /// and a bad datagram is dropped, counted, and does not stop the ones after it. Results,
    /// counters, replay window, timers and events are those of the datagrams opened one by
    /// one in order; a datagram not reached (the iterator dropped early) is not processed.
    /// Allocates nothing.
    ///
    /// See [`encapsulate_batch`](Self::encapsulate_batch) for an example of both.
    pub fn decapsulate_batch<'d, 'b>(
        &'d mut self,
        now: Instant,
        src: SocketAddr,
        buf: &'b mut [u8],
        stride: usize,
    ) -> DecapsulateBatch<'d, 'b, R> {
        DecapsulateBatch {
            device: self,
            now,
            src,
            rest: buf,
            stride,
        }
    }
}

/// The datagrams of one received buffer, opened one at a time; from
/// [`Device::decapsulate_batch`]. Each item is the datagram's result and its part of the
/// buffer (which holds the plaintext or the reply the result names).
///
/// ```
/// # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
/// # use sealwire::crypto::x25519::StaticSecret;
/// use sealwire::time::Instant;
/// use sealwire::tunnel::{Device, DeviceConfig, DeviceError, DropReason};
/// let mut d = Device::new(StaticSecret::from_bytes([1; 32]), DeviceConfig::default(), ChaCha20Rng::seed_from_u64(0))?;
/// // Three 10-byte datagrams of noise, received as one buffer: three drops, counted.
/// let mut buf = [7u8; 30];
/// let results: Vec<_> = d.decapsulate_batch(Instant::ZERO, "192.0.2.1:1".parse().unwrap(), &mut buf, 10)
///     .map(|(result, segment)| (result, segment.len()))
///     .collect();
/// assert_eq!(results, [(Err(DeviceError::Dropped(DropReason::Malformed)), 10); 3]);
/// assert_eq!(d.stats().drops(DropReason::Malformed), 3);
/// # Ok::<(), DeviceError>(())
/// ```
#[derive(Debug)]
#[must_use = "the datagrams are opened only as the iterator is advanced"]
pub struct DecapsulateBatch<'d, 'b, R> {
    device: &'d mut Device<R>,
    now: Instant,
    src: SocketAddr,
    rest: &'b mut [u8],
    stride: usize,
}

impl<'b, R: rand_core::CryptoRng> Iterator for DecapsulateBatch<'_, 'b, R> {
    type Item = (Result<Action, DeviceError>, &'b mut [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = core::mem::take(&mut self.rest);
        let n = if self.stride == 0 {
            rest.len()
        } else {
            self.stride.min(rest.len())
        };
        let (segment, tail) = rest.split_at_mut(n);
        self.rest = tail;
        let result = self
            .device
            .decapsulate_in_place(self.now, self.src, segment, n);
        Some((result, segment))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match self.stride {
            _ if self.rest.is_empty() => 0,
            0 => 1,
            s => self.rest.len().div_ceil(s),
        };
        (n, Some(n))
    }
}
