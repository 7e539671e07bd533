//! IP fragment reassembly (IPv4 and IPv6) under hard limits. It owns the
//! buffers of datagrams still waiting for fragments and the limits that bound
//! them: fragments per datagram, datagram size, open reassemblies (the oldest
//! is evicted) and a timeout measured in capture time. Overlaps keep the bytes
//! that arrived first and count a conflict when later bytes differ (the
//! "first wins" policy of BSD stacks). It never parses what is inside a
//! datagram and never reads the wall clock.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::time::Timestamp;

use super::stats::NetStats;

/// Limits of fragment reassembly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragLimits {
    pub max_fragments: usize,
    pub max_datagram: usize,
    pub timeout_ns: i64,
    pub max_reassemblies: usize,
}

/// Which datagram a fragment belongs to (RFC 791 §3.2; RFC 8200 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FragKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 protocol (part of the key); 0 for IPv6, where it is not.
    pub proto: u8,
    pub id: u32,
}

/// One fragment, as read from its IP header.
pub(crate) struct Fragment<'b> {
    /// Byte offset of `data` in the datagram's payload.
    pub offset: usize,
    /// More fragments follow.
    pub more: bool,
    /// The payload bytes present in the frame.
    pub data: &'b [u8],
    /// The payload length the header announces (more than `data.len()` when
    /// the frame was cut).
    pub claimed_len: usize,
    /// The protocol after this fragment's header (IPv6: the fragment header's
    /// next header, which counts from the first fragment).
    pub proto: u8,
}

struct Reassembly {
    serial: u64,
    /// Protocol from the fragment at offset 0, once seen.
    proto: Option<u8>,
    buf: Vec<u8>,
    /// Received byte ranges, sorted, disjoint and not touching.
    have: Vec<(usize, usize)>,
    /// Datagram payload length, known once the last fragment arrived.
    total: Option<usize>,
    fragments: usize,
}

/// The open reassemblies of one decoder.
pub(crate) struct Reassembler {
    limits: FragLimits,
    open: HashMap<FragKey, Reassembly>,
    /// Creation order, for timeouts and eviction; entries whose serial no
    /// longer matches an open reassembly are stale and skipped.
    order: VecDeque<(Timestamp, u64, FragKey)>,
    next_serial: u64,
}

/// How a fragment's bytes relate to bytes already held.
enum Merge {
    Clean,
    Conflict,
}

impl Reassembler {
    pub fn new(limits: FragLimits) -> Reassembler {
        Reassembler {
            limits,
            open: HashMap::new(),
            order: VecDeque::new(),
            next_serial: 0,
        }
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Drop reassemblies older than the timeout at capture time `now`.
    pub fn expire(&mut self, now: Timestamp, stats: &mut NetStats) {
        while let Some(&(created, serial, key)) = self.order.front() {
            let live = self.open.get(&key).is_some_and(|r| r.serial == serial);
            if !live {
                self.order.pop_front();
                continue;
            }
            if now.nanos_since(created) < self.limits.timeout_ns {
                break;
            }
            self.order.pop_front();
            self.open.remove(&key);
            stats.fragment_timeouts += 1;
        }
    }

    /// Count every open reassembly as unfinished and drop it (end of input).
    pub fn finish(&mut self, stats: &mut NetStats) {
        stats.fragment_unfinished += self.open.len() as u64;
        self.open.clear();
        self.order.clear();
    }

    /// Add one fragment. Returns the protocol and payload of the datagram
    /// when this fragment completed it.
    pub fn add(
        &mut self,
        key: FragKey,
        frag: &Fragment<'_>,
        now: Timestamp,
        stats: &mut NetStats,
    ) -> Option<(u8, Vec<u8>)> {
        self.expire(now, stats);
        let start = frag.offset;
        let claimed_end = start.saturating_add(frag.claimed_len);
        if claimed_end > self.limits.max_datagram {
            self.open.remove(&key);
            stats.fragment_drops_too_large += 1;
            return None;
        }
        if !self.open.contains_key(&key) {
            self.make_room(stats);
            let serial = self.next_serial;
            self.next_serial += 1;
            self.open.insert(
                key,
                Reassembly {
                    serial,
                    proto: None,
                    buf: Vec::new(),
                    have: Vec::new(),
                    total: None,
                    fragments: 0,
                },
            );
            self.order.push_back((now, serial, key));
            self.compact_order();
        }
        let r = self.open.get_mut(&key)?;
        r.fragments += 1;
        if r.fragments > self.limits.max_fragments {
            self.open.remove(&key);
            stats.fragment_drops_too_many += 1;
            return None;
        }
        // The announced end of this fragment decides the datagram length.
        if !frag.more {
            let held_end = r.have.last().map_or(0, |&(_, e)| e);
            match r.total {
                Some(t) if t != claimed_end => {
                    self.open.remove(&key);
                    stats.fragment_inconsistent += 1;
                    return None;
                }
                None if held_end > claimed_end => {
                    self.open.remove(&key);
                    stats.fragment_inconsistent += 1;
                    return None;
                }
                _ => r.total = Some(claimed_end),
            }
        } else if r.total.is_some_and(|t| claimed_end > t) {
            self.open.remove(&key);
            stats.fragment_inconsistent += 1;
            return None;
        }
        if start == 0 && r.proto.is_none() {
            r.proto = Some(frag.proto);
        }
        if let Merge::Conflict = r.merge(start, frag.data) {
            stats.fragment_overlap_conflicts += 1;
        }
        let total = r.total?;
        if r.have.as_slice() != [(0, total)] && !(total == 0 && r.have.is_empty()) {
            return None;
        }
        let done = self.open.remove(&key)?;
        let proto = done.proto?;
        let mut buf = done.buf;
        buf.truncate(total);
        stats.reassembled += 1;
        Some((proto, buf))
    }

    /// Evict the oldest open reassembly while the table is full.
    fn make_room(&mut self, stats: &mut NetStats) {
        while self.open.len() >= self.limits.max_reassemblies.max(1) {
            let Some((_, serial, key)) = self.order.pop_front() else {
                break;
            };
            if self.open.get(&key).is_some_and(|r| r.serial == serial) {
                self.open.remove(&key);
                stats.fragment_evictions += 1;
            }
        }
    }

    /// Keep the order queue bounded: drop stale entries when it grows far
    /// beyond the number of open reassemblies.
    fn compact_order(&mut self) {
        if self.order.len() > 4 * self.limits.max_reassemblies.max(16) {
            let open = &self.open;
            self.order
                .retain(|(_, serial, key)| open.get(key).is_some_and(|r| r.serial == *serial));
        }
    }
}

impl Reassembly {
    /// Copy `data` at `start` into the gaps of what is held; compare it with
    /// what is already held.
    fn merge(&mut self, start: usize, data: &[u8]) -> Merge {
        let end = start + data.len();
        if data.is_empty() {
            return Merge::Clean;
        }
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        let mut conflict = false;
        let mut pos = start;
        for &(hs, he) in &self.have {
            if he <= pos {
                continue;
            }
            if hs >= end {
                break;
            }
            if hs > pos {
                // Gap [pos, hs): new bytes.
                self.buf[pos..hs].copy_from_slice(&data[pos - start..hs - start]);
            }
            // Held [max(hs,pos), min(he,end)): compare, keep the first bytes.
            let os = hs.max(pos);
            let oe = he.min(end);
            if self.buf[os..oe] != data[os - start..oe - start] {
                conflict = true;
            }
            pos = oe;
            if pos >= end {
                break;
            }
        }
        if pos < end {
            self.buf[pos..end].copy_from_slice(&data[pos - start..]);
        }
        self.insert_range(start, end);
        if conflict {
            Merge::Conflict
        } else {
            Merge::Clean
        }
    }

    fn insert_range(&mut self, start: usize, end: usize) {
        let mut merged = (start, end);
        let mut out = Vec::with_capacity(self.have.len() + 1);
        let mut placed = false;
        for &(s, e) in &self.have {
            if e < merged.0 {
                out.push((s, e));
            } else if s > merged.1 {
                if !placed {
                    out.push(merged);
                    placed = true;
                }
                out.push((s, e));
            } else {
                merged = (merged.0.min(s), merged.1.max(e));
            }
        }
        if !placed {
            out.push(merged);
        }
        self.have = out;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn limits() -> FragLimits {
        FragLimits {
            max_fragments: 8,
            max_datagram: 1000,
            timeout_ns: 10,
            max_reassemblies: 2,
        }
    }

    fn key(id: u32) -> FragKey {
        FragKey {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            proto: 6,
            id,
        }
    }

    fn frag(offset: usize, more: bool, data: &[u8]) -> Fragment<'_> {
        Fragment {
            offset,
            more,
            data,
            claimed_len: data.len(),
            proto: 6,
        }
    }

    #[test]
    fn in_order_and_reversed_complete() {
        for order in [[0usize, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let mut r = Reassembler::new(limits());
            let mut st = NetStats::default();
            let pieces = [
                frag(0, true, b"01234567"),
                frag(8, true, b"89abcdef"),
                frag(16, false, b"XY"),
            ];
            let mut out = None;
            for i in order {
                out = r.add(key(1), &pieces[i], Timestamp(0), &mut st);
            }
            let (proto, buf) = out.expect("complete");
            assert_eq!(proto, 6);
            assert_eq!(buf, b"0123456789abcdefXY");
            assert_eq!(st.reassembled, 1);
            assert_eq!(r.open_count(), 0);
        }
    }

    #[test]
    fn overlap_same_bytes_is_silent_different_bytes_keeps_first() {
        let mut r = Reassembler::new(limits());
        let mut st = NetStats::default();
        assert!(r
            .add(key(1), &frag(0, true, b"01234567"), Timestamp(0), &mut st)
            .is_none());
        assert!(r
            .add(key(1), &frag(4, true, b"4567"), Timestamp(0), &mut st)
            .is_none());
        assert_eq!(st.fragment_overlap_conflicts, 0);
        assert!(r
            .add(key(1), &frag(4, true, b"45zz89ab"), Timestamp(0), &mut st)
            .is_none());
        assert_eq!(st.fragment_overlap_conflicts, 1);
        let (_, buf) = r
            .add(key(1), &frag(12, false, b"cd"), Timestamp(0), &mut st)
            .expect("complete");
        assert_eq!(buf, b"0123456789abcd");
    }

    #[test]
    fn limits_are_counted() {
        let mut r = Reassembler::new(limits());
        let mut st = NetStats::default();
        // Too large.
        assert!(r
            .add(key(1), &frag(996, true, b"12345678"), Timestamp(0), &mut st)
            .is_none());
        assert_eq!(st.fragment_drops_too_large, 1);
        // Too many.
        for i in 0..9 {
            r.add(
                key(2),
                &frag(i * 8, true, b"abcdefgh"),
                Timestamp(0),
                &mut st,
            );
        }
        assert_eq!(st.fragment_drops_too_many, 1);
        // Eviction: 3 open with a limit of 2.
        for id in 3..6 {
            r.add(key(id), &frag(0, true, b"abcdefgh"), Timestamp(1), &mut st);
        }
        assert_eq!(st.fragment_evictions, 1);
        assert_eq!(r.open_count(), 2);
        // Timeout.
        r.expire(Timestamp(11), &mut st);
        assert_eq!(st.fragment_timeouts, 2);
        assert_eq!(r.open_count(), 0);
        r.add(key(9), &frag(0, true, b"abcdefgh"), Timestamp(20), &mut st);
        r.finish(&mut st);
        assert_eq!(st.fragment_unfinished, 1);
    }

    #[test]
    fn inconsistent_last_fragment_drops_the_datagram() {
        let mut r = Reassembler::new(limits());
        let mut st = NetStats::default();
        r.add(key(1), &frag(0, true, b"abcdefgh"), Timestamp(0), &mut st);
        r.add(key(1), &frag(16, false, b"ab"), Timestamp(0), &mut st);
        assert!(r
            .add(key(1), &frag(24, true, b"abcdefgh"), Timestamp(0), &mut st)
            .is_none());
        assert_eq!(st.fragment_inconsistent, 1);
        assert_eq!(r.open_count(), 0);
    }

    #[test]
    fn order_queue_stays_bounded() {
        let mut r = Reassembler::new(limits());
        let mut st = NetStats::default();
        for id in 0..10_000 {
            r.add(key(id), &frag(0, true, b"abcdefgh"), Timestamp(0), &mut st);
            assert!(r
                .add(key(id), &frag(8, false, b"ab"), Timestamp(0), &mut st)
                .is_some());
        }
        assert!(r.order.len() <= 4 * 16 + 1, "{}", r.order.len());
    }
}
