//! One direction of a TCP connection: sequence tracking, the out-of-order
//! buffer, gaps and FIN. It owns the only copy of stream bytes that wait for
//! a hole to fill; in-order bytes go to the consumer as slices of the segment
//! payload, never copied. It knows nothing about flows, budgets across flows
//! or time windows: [`super::FlowTable`] decides when a hole becomes a gap.

use std::collections::BTreeMap;

use crate::capture::FrameRef;
use crate::net::Dir;
use crate::time::Timestamp;

use super::{Chunk, ChunkFlags, ChunkInfo, StreamConsumer, TcpStats};

/// The frame (and its capture time) being processed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct At {
    pub ts: Timestamp,
    pub frame: FrameRef,
}

/// Why a hole is given up on (counted separately in [`TcpStats`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GapCause {
    /// The hole stayed open longer than the gap window.
    Window,
    /// The peer acknowledged bytes the capture never saw.
    Acked,
    /// The out-of-order or total buffer budget bit.
    Budget,
    /// The flow closed (FIN, RST, idle, eviction, end of input).
    Close,
}

/// Where chunks of one direction go, and what they are counted in.
pub(crate) struct Sink<'s, C> {
    pub consumer: &'s mut C,
    pub stats: &'s mut TcpStats,
    /// Bytes buffered across the whole flow table.
    pub buffered: &'s mut usize,
    pub dir: Dir,
}

/// Out-of-order bytes of one direction: non-overlapping pieces by stream offset.
#[derive(Debug, Default)]
struct Reorder {
    pieces: BTreeMap<u64, Piece>,
    bytes: usize,
}

#[derive(Debug)]
struct Piece {
    data: Vec<u8>,
    first_frame: FrameRef,
    ts: Timestamp,
}

/// Reassembly state of one direction.
#[derive(Debug, Default)]
pub(crate) struct HalfStream {
    /// Sequence number of stream offset 0 (ISN + 1 when the SYN was seen).
    base: u32,
    /// Stream offset of the next byte to deliver.
    next: u64,
    started: bool,
    midstream: bool,
    /// Stream offset just past the last byte, once a FIN told it.
    fin_off: Option<u64>,
    /// Delivered everything up to the FIN.
    finished: bool,
    conflict_pending: bool,
    /// Capture time at which the current hole was first known.
    hole_since: Option<Timestamp>,
    reorder: Option<Box<Reorder>>,
}

impl HalfStream {
    pub fn started(&self) -> bool {
        self.started
    }

    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Picked up without its SYN.
    pub fn midstream(&self) -> bool {
        self.started && self.midstream
    }

    /// The direction ended (FIN) while its bytes are no longer reassembled.
    pub fn mark_finished(&mut self) {
        self.finished = true;
    }

    pub fn buffered(&self) -> usize {
        self.reorder.as_ref().map_or(0, |r| r.bytes)
    }

    /// Capture time since which bytes have been missing, if any are.
    pub fn hole_since(&self) -> Option<Timestamp> {
        self.hole_since
    }

    /// True when a SYN with sequence number `seq` cannot belong to this
    /// direction (it started mid-stream, or from another initial sequence):
    /// a new connection reuses the 4-tuple.
    pub fn is_new_syn(&self, seq: u32) -> bool {
        self.started && (self.midstream || self.base != seq.wrapping_add(1))
    }

    /// Fix the stream start: a SYN at `seq` (data starts at `seq + 1`), or a
    /// mid-stream pickup whose first byte is at `seq`.
    pub fn start(&mut self, seq: u32, syn: bool) {
        self.started = true;
        self.midstream = !syn;
        self.base = if syn { seq.wrapping_add(1) } else { seq };
        self.next = 0;
    }

    /// Sequence number of the next byte to deliver.
    fn next_seq(&self) -> u32 {
        self.base.wrapping_add(self.next as u32)
    }

    /// Stream offset of `seq`, taken as the nearest one to the delivery point
    /// (within ±2³¹, which is how TCP's own arithmetic wraps). Negative when
    /// it lies before the stream start.
    pub fn offset_of(&self, seq: u32) -> i64 {
        let delta = i64::from(seq.wrapping_sub(self.next_seq()) as i32);
        self.next as i64 + delta
    }

    /// How far `seq` lies from the next byte to deliver (negative: before
    /// it), within ±2³¹.
    pub fn distance(&self, seq: u32) -> i64 {
        i64::from(seq.wrapping_sub(self.next_seq()) as i32)
    }

    fn info(&mut self, dir: Dir, at: At, first_frame: FrameRef) -> ChunkInfo {
        let flags = ChunkFlags {
            overlap_conflict: std::mem::take(&mut self.conflict_pending),
            midstream: self.midstream,
        };
        ChunkInfo {
            dir,
            ts: at.ts,
            frame: at.frame,
            first_frame,
            offset: self.next,
            flags,
        }
    }

    /// Take the bytes `[off, off + payload.len())` of a segment (and its FIN).
    pub fn segment<C: StreamConsumer>(
        &mut self,
        off: i64,
        payload: &[u8],
        fin: bool,
        at: At,
        sink: &mut Sink<'_, C>,
    ) {
        let len = payload.len() as i64;
        let mut end = off.saturating_add(len);
        if fin && self.fin_off.is_none() && end >= self.next as i64 {
            self.fin_off = Some(end as u64);
            self.trim_after_fin(sink);
            if self.hole_since.is_none() && end as u64 > self.next {
                self.hole_since = Some(at.ts);
            }
        }
        if let Some(f) = self.fin_off {
            if end > f as i64 {
                let after = end - (f as i64).max(off);
                sink.stats.data_after_fin_bytes += after as u64;
                end = f as i64;
            }
        }
        let next = self.next as i64;
        if end <= off {
            // Nothing of this segment lies before the FIN.
            self.check_finished();
            return;
        }
        if end <= next {
            sink.stats.retransmitted_bytes += (end - off).max(0) as u64;
            self.check_finished();
            return;
        }
        let start = if off < next {
            sink.stats.retransmitted_bytes += (next - off) as u64;
            next
        } else {
            off
        };
        // In range of the payload: off <= start < end <= off + len.
        let bytes = &payload[(start - off) as usize..(end - off) as usize];
        let start = start as u64;
        if start == self.next {
            let limit = self
                .reorder
                .as_ref()
                .and_then(|r| r.pieces.keys().next().copied())
                .unwrap_or(u64::MAX);
            let take = ((limit - start).min(bytes.len() as u64)) as usize;
            let (now, rest) = bytes.split_at(take);
            if !now.is_empty() {
                let info = self.info(sink.dir, at, at.frame);
                self.next += now.len() as u64;
                sink.stats.delivered_bytes += now.len() as u64;
                sink.consumer.on_chunk(Chunk::Data(now), &info);
            }
            if !rest.is_empty() {
                self.insert(self.next, rest, at, sink);
            }
            self.drain(sink);
            if !now.is_empty() && self.reorder.is_some() {
                // The stream made progress: the hole that remains is timed
                // from now. A stray segment far ahead (a corrupt sequence
                // number) thus never turns a flowing stream into a gap; a
                // FIN or the end of input disposes of it.
                self.hole_since = Some(at.ts);
            }
        } else {
            self.insert(start, bytes, at, sink);
        }
        self.check_finished();
    }

    /// Drop buffered bytes at or past the FIN (a peer that contradicts itself).
    fn trim_after_fin<C>(&mut self, sink: &mut Sink<'_, C>) {
        let (Some(fin), Some(reorder)) = (self.fin_off, self.reorder.as_mut()) else {
            return;
        };
        let mut dropped = 0usize;
        for (_, piece) in reorder.pieces.split_off(&fin) {
            dropped += piece.data.len();
        }
        if let Some((&start, piece)) = reorder.pieces.iter_mut().next_back() {
            let keep = (fin - start) as usize;
            if piece.data.len() > keep {
                dropped += piece.data.len() - keep;
                piece.data.truncate(keep);
            }
        }
        reorder.bytes -= dropped;
        *sink.buffered -= dropped;
        sink.stats.data_after_fin_bytes += dropped as u64;
        if reorder.pieces.is_empty() {
            self.reorder = None;
            self.hole_since = None;
        }
    }

    fn check_finished(&mut self) {
        if self.fin_off == Some(self.next) && self.reorder.is_none() {
            self.finished = true;
            self.hole_since = None;
        }
    }

    /// Copy `bytes` at stream offset `start` (> delivery point or overlapping
    /// buffered pieces) into the buffer, keeping bytes already buffered.
    fn insert<C: StreamConsumer>(
        &mut self,
        start: u64,
        bytes: &[u8],
        at: At,
        sink: &mut Sink<'_, C>,
    ) {
        let end = start + bytes.len() as u64;
        let was_empty = self.reorder.is_none();
        let reorder = self.reorder.get_or_insert_with(Box::default);
        let mut fresh: Vec<(u64, u64)> = Vec::new();
        let mut cursor = start;
        let mut conflict = false;
        // The piece that starts before `start` may overlap it.
        let before = reorder
            .pieces
            .range(..start)
            .next_back()
            .map(|(&s, p)| (s, p));
        let overlapping = before
            .into_iter()
            .chain(reorder.pieces.range(start..end).map(|(&s, p)| (s, p)));
        for (s, p) in overlapping {
            let p_end = s + p.data.len() as u64;
            if p_end <= cursor {
                continue;
            }
            if s > cursor {
                fresh.push((cursor, s.min(end)));
            }
            let o_start = s.max(cursor);
            let o_end = p_end.min(end);
            if o_start < o_end {
                let old = &p.data[(o_start - s) as usize..(o_end - s) as usize];
                let new = &bytes[(o_start - start) as usize..(o_end - start) as usize];
                sink.stats.retransmitted_bytes += o_end - o_start;
                if old != new {
                    conflict = true;
                    sink.stats.overlap_conflict_bytes +=
                        old.iter().zip(new).filter(|(a, b)| a != b).count() as u64;
                }
                cursor = o_end;
            }
            if cursor >= end {
                break;
            }
        }
        if cursor < end {
            fresh.push((cursor, end));
        }
        if conflict {
            sink.stats.overlap_conflicts += 1;
            self.conflict_pending = true;
        }
        for (s, e) in fresh {
            let data = bytes[(s - start) as usize..(e - start) as usize].to_vec();
            reorder.bytes += data.len();
            *sink.buffered += data.len();
            sink.stats.reordered_bytes += data.len() as u64;
            reorder.pieces.insert(
                s,
                Piece {
                    data,
                    first_frame: at.frame,
                    ts: at.ts,
                },
            );
        }
        if reorder.pieces.is_empty() {
            self.reorder = None;
        } else if was_empty && self.hole_since.is_none() {
            self.hole_since = Some(at.ts);
        }
        sink.stats.peak_buffered_bytes = sink.stats.peak_buffered_bytes.max(*sink.buffered as u64);
    }

    /// Deliver buffered pieces that now continue the stream.
    fn drain<C: StreamConsumer>(&mut self, sink: &mut Sink<'_, C>) {
        let Some(reorder) = self.reorder.as_mut() else {
            return;
        };
        let mut delivered = false;
        while let Some(entry) = reorder.pieces.first_entry() {
            if *entry.key() != self.next {
                break;
            }
            let piece = entry.remove();
            reorder.bytes -= piece.data.len();
            *sink.buffered -= piece.data.len();
            let flags = ChunkFlags {
                overlap_conflict: std::mem::take(&mut self.conflict_pending),
                midstream: self.midstream,
            };
            // The chunk is stamped with the frame that carried its bytes,
            // not the one that made it deliverable (a retransmission filling
            // an earlier hole, or the frame whose time gave up on a hole): an
            // event's time is that of the frame carrying its last byte.
            let info = ChunkInfo {
                dir: sink.dir,
                ts: piece.ts,
                frame: piece.first_frame,
                first_frame: piece.first_frame,
                offset: self.next,
                flags,
            };
            self.next += piece.data.len() as u64;
            sink.stats.delivered_bytes += piece.data.len() as u64;
            sink.consumer.on_chunk(Chunk::Data(&piece.data), &info);
            delivered = true;
        }
        self.hole_since = match reorder.pieces.first_key_value() {
            // A new hole is timed from the first piece waiting behind it.
            Some((_, p)) if delivered || self.hole_since.is_none() => Some(p.ts),
            Some(_) => self.hole_since,
            None => {
                self.reorder = None;
                if self.fin_off.is_some_and(|f| f > self.next) {
                    self.hole_since
                } else {
                    None
                }
            }
        };
    }

    /// Stream offset where the first hole ends: the first buffered piece, or
    /// the FIN when bytes before it are missing.
    fn hole_end(&self) -> Option<u64> {
        match self.reorder.as_ref().and_then(|r| r.pieces.keys().next()) {
            Some(&s) => Some(s),
            None => self.fin_off.filter(|&f| f > self.next),
        }
    }

    /// Give up on the first hole: hand a `Gap` for it and deliver what follows.
    /// Returns false when there was no hole.
    pub fn skip_hole<C: StreamConsumer>(
        &mut self,
        cause: GapCause,
        at: At,
        sink: &mut Sink<'_, C>,
    ) -> bool {
        let Some(target) = self.hole_end() else {
            return false;
        };
        let len = target - self.next;
        let info = self.info(sink.dir, at, at.frame);
        self.next = target;
        sink.stats.gaps += 1;
        sink.stats.gap_bytes += len;
        match cause {
            GapCause::Window => sink.stats.gaps_window += 1,
            GapCause::Acked => sink.stats.gaps_acked += 1,
            GapCause::Budget => sink.stats.gaps_budget += 1,
            GapCause::Close => sink.stats.gaps_close += 1,
        }
        sink.consumer.on_chunk(Chunk::Gap(len), &info);
        // A fresh hole after the one just skipped is timed from its own first piece.
        self.hole_since = None;
        self.drain(sink);
        self.check_finished();
        true
    }

    /// Skip holes older than `window` at capture time `at.ts`.
    pub fn expire<C: StreamConsumer>(&mut self, window_ns: i64, at: At, sink: &mut Sink<'_, C>) {
        while let Some(since) = self.hole_since {
            if at.ts.nanos_since(since) < window_ns || !self.skip_hole(GapCause::Window, at, sink) {
                break;
            }
        }
    }

    /// The peer acknowledged up to `ack`: holes below it will never be filled.
    pub fn acked<C: StreamConsumer>(&mut self, ack: u32, at: At, sink: &mut Sink<'_, C>) {
        if !self.started || self.hole_since.is_none() {
            return;
        }
        let ack_off = self.offset_of(ack);
        while let Some(end) = self.hole_end() {
            if ack_off < end as i64 || !self.skip_hole(GapCause::Acked, at, sink) {
                break;
            }
        }
    }

    /// Skip holes until at most `budget` bytes stay buffered.
    pub fn shrink_to<C: StreamConsumer>(&mut self, budget: usize, at: At, sink: &mut Sink<'_, C>) {
        while self.buffered() > budget && self.skip_hole(GapCause::Budget, at, sink) {}
    }

    /// Deliver everything buffered, a `Gap` for every hole (the flow ends).
    pub fn flush<C: StreamConsumer>(&mut self, at: At, sink: &mut Sink<'_, C>) {
        while self.skip_hole(GapCause::Close, at, sink) {}
    }

    /// Drop buffered bytes without delivering them (the consumer wants no more).
    pub fn discard(&mut self, buffered: &mut usize) -> usize {
        let n = self.buffered();
        *buffered -= n;
        self.reorder = None;
        self.hole_since = None;
        n
    }
}
