//! One shard's TCP flow table: finds a segment's flow, creates flows, keeps
//! the flow budget (evicting the longest idle flow), the idle timeout, the
//! gap window and the total buffer budget, all in capture time. Per-direction
//! byte handling lives in [`super::half`]; this module never looks into
//! payload bytes and never reads the wall clock.
//!
//! Costs: a segment is one hash lookup plus O(1) list moves (the idle order is
//! an intrusive doubly linked list over slab indices), plus O(log n) in the
//! out-of-order buffer when bytes arrive out of order. A flow that carries no
//! out-of-order bytes owns no heap memory beyond its table entry (the slab
//! slot and the hash map entry) and whatever its consumer allocates.

use std::collections::HashMap;

use serde::Serialize;

use crate::capture::FrameRef;
use crate::net::{Dir, FlowKey, TcpSegment};
use crate::time::Timestamp;

use super::half::{At, GapCause, HalfStream, Sink};
use super::{CloseReason, StreamConsumer};

/// Limits of one flow table. Every limit that bites is counted in [`TcpStats`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// Out-of-order bytes one direction may buffer before its first hole is
    /// given up (a `Gap`). Default 1 MiB: several receive windows.
    pub ooo_bytes_per_dir: usize,
    /// Out-of-order bytes the whole table may buffer; past it the holes of the
    /// flow at hand, then of the other flows, become gaps. Default 64 MiB. The
    /// engine divides a global budget by its shard count.
    pub total_buffered_bytes: usize,
    /// Concurrent flows (closed flows kept to absorb their stray segments
    /// included); a new flow past it evicts the longest idle one. Default 262 144.
    pub max_flows: usize,
    /// Capture time a hole may stay open before it becomes a `Gap`. Default
    /// 10 s, longer than TCP's usual retransmission backoff.
    pub gap_window_ns: i64,
    /// Capture time without a segment after which a flow is closed
    /// (`CloseReason::Idle`). Default 30 min: IM clients keep idle connections
    /// open for minutes between keep-alives.
    pub idle_timeout_ns: i64,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            ooo_bytes_per_dir: 1 << 20,
            total_buffered_bytes: 64 << 20,
            max_flows: 262_144,
            gap_window_ns: 10 * Timestamp::NANOS_PER_SEC,
            idle_timeout_ns: 30 * 60 * Timestamp::NANOS_PER_SEC,
        }
    }
}

impl TcpConfig {
    /// Run-wide defaults, split over the engine's shards by [`TcpConfig::per_shard`]:
    /// 262 144 flows and 256 MiB of out-of-order bytes in all.
    pub fn run_wide() -> TcpConfig {
        TcpConfig {
            total_buffered_bytes: 256 << 20,
            ..TcpConfig::default()
        }
    }

    /// One table's share when `self` holds run-wide budgets spread over
    /// `shards` tables (each keeps at least one flow and one direction's worth
    /// of out-of-order bytes).
    pub fn per_shard(&self, shards: usize) -> TcpConfig {
        let shards = shards.max(1);
        TcpConfig {
            max_flows: (self.max_flows / shards).max(1),
            total_buffered_bytes: (self.total_buffered_bytes / shards).max(self.ooo_bytes_per_dir),
            ..self.clone()
        }
    }
}

/// Counters of one flow table (merge the shards' with [`TcpStats::merge`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TcpStats {
    /// TCP segments seen.
    pub segments: u64,
    /// Payload bytes seen, retransmissions included.
    pub payload_bytes: u64,
    /// Bytes handed to consumers as `Chunk::Data`.
    pub delivered_bytes: u64,
    /// Payload bytes that repeated bytes already delivered or buffered.
    pub retransmitted_bytes: u64,
    /// Bytes copied into an out-of-order buffer.
    pub reordered_bytes: u64,
    /// Segments whose bytes differed from buffered bytes of the same range.
    pub overlap_conflicts: u64,
    /// Bytes that differed (the first bytes seen were kept).
    pub overlap_conflict_bytes: u64,
    /// `Chunk::Gap`s delivered, and the bytes they stand for.
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Gaps by cause: hole older than the gap window; hole acknowledged by the
    /// peer; a buffer budget; the flow closed.
    pub gaps_window: u64,
    pub gaps_acked: u64,
    pub gaps_budget: u64,
    pub gaps_close: u64,
    /// Times a direction passed `ooo_bytes_per_dir`.
    pub ooo_budget_bites: u64,
    /// Times the table passed `total_buffered_bytes`.
    pub total_budget_bites: u64,
    /// Highest out-of-order bytes buffered at once (summed over shards when merged).
    pub peak_buffered_bytes: u64,
    pub flows_created: u64,
    /// Flows picked up without a SYN in at least one direction.
    pub midstream_flows: u64,
    pub closed_fin: u64,
    pub closed_rst: u64,
    pub closed_idle: u64,
    pub closed_evicted: u64,
    pub closed_end_of_input: u64,
    /// Live or closed flow entries removed to stay within `max_flows`
    /// (`closed_evicted` counts the live ones).
    pub evictions: u64,
    /// Highest number of table entries at once (summed over shards when merged).
    pub peak_flows: u64,
    /// Payload bytes past a direction's FIN, ignored.
    pub data_after_fin_bytes: u64,
    /// Segments of no known flow that could not start one (no SYN, no payload).
    pub segments_without_flow: u64,
    /// RSTs ignored because their sequence number lay far outside their
    /// sender's stream (forged, stale or a storm): the flow stays open.
    pub rst_out_of_window: u64,
    /// Live flows closed (as evicted) because a SYN with a new initial
    /// sequence number reused their 4-tuple.
    pub tuple_reuses: u64,
    /// Segments for a flow already closed by FIN or RST, ignored.
    pub segments_after_close: u64,
    /// Payload bytes not reassembled because the consumer wanted no more.
    pub unwanted_bytes: u64,
}

impl TcpStats {
    pub fn merge(&mut self, o: &TcpStats) {
        self.segments += o.segments;
        self.payload_bytes += o.payload_bytes;
        self.delivered_bytes += o.delivered_bytes;
        self.retransmitted_bytes += o.retransmitted_bytes;
        self.reordered_bytes += o.reordered_bytes;
        self.overlap_conflicts += o.overlap_conflicts;
        self.overlap_conflict_bytes += o.overlap_conflict_bytes;
        self.gaps += o.gaps;
        self.gap_bytes += o.gap_bytes;
        self.gaps_window += o.gaps_window;
        self.gaps_acked += o.gaps_acked;
        self.gaps_budget += o.gaps_budget;
        self.gaps_close += o.gaps_close;
        self.ooo_budget_bites += o.ooo_budget_bites;
        self.total_budget_bites += o.total_budget_bites;
        self.peak_buffered_bytes += o.peak_buffered_bytes;
        self.flows_created += o.flows_created;
        self.midstream_flows += o.midstream_flows;
        self.closed_fin += o.closed_fin;
        self.closed_rst += o.closed_rst;
        self.closed_idle += o.closed_idle;
        self.closed_evicted += o.closed_evicted;
        self.closed_end_of_input += o.closed_end_of_input;
        self.evictions += o.evictions;
        self.peak_flows += o.peak_flows;
        self.data_after_fin_bytes += o.data_after_fin_bytes;
        self.segments_without_flow += o.segments_without_flow;
        self.segments_after_close += o.segments_after_close;
        self.tuple_reuses += o.tuple_reuses;
        self.rst_out_of_window += o.rst_out_of_window;
        self.unwanted_bytes += o.unwanted_bytes;
    }

    fn count_close(&mut self, reason: CloseReason) {
        match reason {
            CloseReason::Fin => self.closed_fin += 1,
            CloseReason::Rst => self.closed_rst += 1,
            CloseReason::Idle => self.closed_idle += 1,
            CloseReason::Evicted => self.closed_evicted += 1,
            CloseReason::EndOfInput => self.closed_end_of_input += 1,
        }
    }
}

/// What the table knows about a flow when it asks for its consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewFlow {
    pub key: FlowKey,
    /// Direction of the segment that started the flow.
    pub dir: Dir,
    /// The first frame of the flow (its `FlowId`).
    pub frame: FrameRef,
    pub ts: Timestamp,
    /// Direction of client → server bytes, when a SYN (or SYN+ACK) told it.
    pub client_dir: Option<Dir>,
}

impl NewFlow {
    /// The known client direction, else the port-based guess.
    pub fn client_dir_or_guess(&self) -> Dir {
        self.client_dir
            .unwrap_or_else(|| guess_client_dir(&self.key))
    }
}

/// Port-based guess of the client → server direction when no SYN was seen:
/// the endpoint with the lower port is the server (well-known and registered
/// IM ports such as 1863, 5050, 5190, 5222, 6667 and 8074 sit below the
/// ephemeral ranges clients use). Equal ports: the lower endpoint is the client.
pub fn guess_client_dir(key: &FlowKey) -> Dir {
    if key.hi.port < key.lo.port {
        Dir::LoToHi
    } else if key.lo.port < key.hi.port {
        Dir::HiToLo
    } else {
        Dir::LoToHi
    }
}

const NIL: u32 = u32::MAX;

/// How far (bytes) a RST's sequence number may lie behind its sender's next
/// byte, or beyond what the table would buffer ahead of it, and still close
/// the flow: one unscaled receive window.
const RST_SLACK: i64 = 65_535;

/// The earlier of two optional times.
fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

struct Flow<C> {
    key: FlowKey,
    first_frame: FrameRef,
    last_ts: Timestamp,
    client_dir: Option<Dir>,
    half: [HalfStream; 2],
    /// None once closed by FIN or RST: the entry stays to absorb stray
    /// segments (final ACKs, retransmissions) until it idles out or is evicted.
    consumer: Option<C>,
    /// Idle order: towards the least recently seen (`prev`) and the most (`next`).
    prev: u32,
    next: u32,
    /// Position in `FlowTable::holes`, or NIL when not listed.
    hole_pos: u32,
    /// Listed in `FlowTable::touched`.
    touched: bool,
    /// The consumer said it wants no more bytes; stays so (the sequence
    /// tracking stopped, so delivery could not resume consistently).
    unwanted: bool,
}

/// One shard's flow table. `C` is the consumer of each flow's chunks.
pub struct FlowTable<C: StreamConsumer> {
    cfg: TcpConfig,
    /// Keyed with a per-process random seed (flow keys are attacker-chosen,
    /// so the hash must not be predictable); never iterated, so the seed cannot
    /// change the output.
    index: HashMap<FlowKey, u32, foldhash::fast::RandomState>,
    slots: Vec<Option<Flow<C>>>,
    free: Vec<u32>,
    /// Least recently seen entry, and most recently seen.
    head: u32,
    tail: u32,
    /// Slots of flows with bytes missing in some direction.
    holes: Vec<u32>,
    /// No hole is older than the gap window before this capture time: until
    /// then `advance` need not visit `holes`.
    next_sweep: Timestamp,
    /// Slots of flows that saw a segment or got chunks since `drain_touched`.
    touched: Vec<u32>,
    buffered: usize,
    closed: Vec<C>,
    stats: TcpStats,
}

impl<C: StreamConsumer> FlowTable<C> {
    pub fn new(cfg: TcpConfig) -> Self {
        FlowTable {
            cfg,
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            holes: Vec::new(),
            next_sweep: Timestamp(i64::MAX),
            touched: Vec::new(),
            buffered: 0,
            closed: Vec::new(),
            stats: TcpStats::default(),
        }
    }

    /// Bytes one flow occupies in the table (slab slot plus hash map entry,
    /// consumer included, before any out-of-order buffer or the consumer's own
    /// heap). A half-open flow costs this and nothing more.
    pub fn entry_bytes() -> usize {
        std::mem::size_of::<Option<Flow<C>>>()
            + std::mem::size_of::<(FlowKey, u32)>()
            + 1 // the hash map's control byte
            + std::mem::size_of::<u32>() // a free-list slot, once freed
    }

    pub fn config(&self) -> &TcpConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &TcpStats {
        &self.stats
    }

    /// Entries in the table (live flows and closed ones kept for stray segments).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Out-of-order bytes buffered across the table.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Client → server direction of a flow in the table: the SYN sender's when
    /// seen, else [`guess_client_dir`].
    pub fn client_dir(&self, key: &FlowKey) -> Option<Dir> {
        let slot = *self.index.get(key)?;
        let flow = self.slots.get(slot as usize)?.as_ref()?;
        Some(flow.client_dir.unwrap_or_else(|| guess_client_dir(key)))
    }

    /// Consumers of live flows, in slot order (deterministic for a given input).
    pub fn consumers_mut(&mut self) -> impl Iterator<Item = &mut C> + '_ {
        self.slots
            .iter_mut()
            .filter_map(|s| s.as_mut().and_then(|f| f.consumer.as_mut()))
    }

    /// Call `f` on the consumer of every live flow that saw a segment or got
    /// chunks since the last call, in the order they were first touched
    /// (deterministic; cheaper than [`Self::consumers_mut`] when few of many
    /// flows are active).
    pub fn drain_touched(&mut self, mut f: impl FnMut(&mut C)) {
        for slot in std::mem::take(&mut self.touched) {
            // A slot freed and reused since may be listed twice: the flag
            // lets only its first listing through.
            if let Some(flow) = self.slots[slot as usize].as_mut() {
                if std::mem::take(&mut flow.touched) {
                    if let Some(c) = flow.consumer.as_mut() {
                        f(c);
                    }
                }
            }
        }
    }

    /// Consumers of flows closed since the last call, in closing order.
    pub fn take_closed(&mut self) -> Vec<C> {
        std::mem::take(&mut self.closed)
    }

    /// Feed one segment. `make` builds the consumer when the segment starts a
    /// new flow; only a SYN or a segment with payload starts one.
    pub fn segment(&mut self, seg: &TcpSegment<'_>, make: impl FnOnce(&NewFlow) -> C) {
        self.stats.segments += 1;
        self.stats.payload_bytes += seg.payload.len() as u64;
        let at = At {
            ts: seg.ts,
            frame: seg.frame,
        };
        let syn_only = seg.flags.syn() && !seg.flags.ack();
        let slot = match self.index.get(&seg.key).copied() {
            Some(slot) => {
                let flow = self.flow(slot);
                let closed = flow.consumer.is_none();
                if !closed && syn_only && flow.half[seg.dir.index()].is_new_syn(seg.seq) {
                    // A new connection on a 4-tuple whose old one never showed
                    // its end: close the old one as evicted.
                    self.stats.tuple_reuses += 1;
                    self.close(slot, CloseReason::Evicted, at, false);
                    self.create(seg, make)
                } else if closed && syn_only {
                    // The 4-tuple is reused by a new connection.
                    self.remove(slot);
                    self.create(seg, make)
                } else if closed {
                    self.stats.segments_after_close += 1;
                    self.touch(slot, seg.ts);
                    return;
                } else {
                    slot
                }
            }
            None => {
                if !seg.flags.syn() && seg.payload.is_empty() {
                    self.stats.segments_without_flow += 1;
                    return;
                }
                self.create(seg, make)
            }
        };
        self.touch(slot, seg.ts);
        self.mark_touched(slot);
        self.feed(slot, seg, at);
    }

    fn flow(&self, slot: u32) -> &Flow<C> {
        self.slots[slot as usize]
            .as_ref()
            .expect("indexed slot is live")
    }

    fn create(&mut self, seg: &TcpSegment<'_>, make: impl FnOnce(&NewFlow) -> C) -> u32 {
        while self.index.len() >= self.cfg.max_flows.max(1) && self.head != NIL {
            let victim = self.head;
            self.stats.evictions += 1;
            self.close(
                victim,
                CloseReason::Evicted,
                At {
                    ts: seg.ts,
                    frame: seg.frame,
                },
                false,
            );
        }
        let client_dir = if seg.flags.syn() {
            Some(if seg.flags.ack() {
                seg.dir.reverse()
            } else {
                seg.dir
            })
        } else {
            None
        };
        let new = NewFlow {
            key: seg.key,
            dir: seg.dir,
            frame: seg.frame,
            ts: seg.ts,
            client_dir,
        };
        let consumer = make(&new);
        let flow = Flow {
            key: seg.key,
            first_frame: seg.frame,
            last_ts: seg.ts,
            client_dir,
            half: [HalfStream::default(), HalfStream::default()],
            consumer: Some(consumer),
            prev: NIL,
            next: NIL,
            hole_pos: NIL,
            touched: false,
            unwanted: false,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(flow);
                s
            }
            None => {
                self.slots.push(Some(flow));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(seg.key, slot);
        self.link_tail(slot);
        self.stats.flows_created += 1;
        self.stats.peak_flows = self.stats.peak_flows.max(self.index.len() as u64);
        slot
    }

    fn feed(&mut self, slot: u32, seg: &TcpSegment<'_>, at: At) {
        let cfg = &self.cfg;
        let flow = self.slots[slot as usize].as_mut().expect("live slot");
        let Flow {
            half,
            consumer,
            client_dir,
            unwanted,
            ..
        } = flow;
        let Some(consumer) = consumer.as_mut() else {
            return;
        };
        let d = seg.dir.index();
        if seg.flags.syn() && client_dir.is_none() {
            *client_dir = Some(if seg.flags.ack() {
                seg.dir.reverse()
            } else {
                seg.dir
            });
        }
        if seg.flags.rst() {
            // Only a RST near where its sender's stream stands can be real
            // (RFC 5961 §3: an out-of-window RST resets nothing): a storm of
            // forged or stale ones must not close a live flow and lose its
            // later bytes. Ahead, the sender may have sent up to the
            // out-of-order budget we would buffer.
            if half[d].started() {
                let dist = half[d].distance(seg.seq);
                if !(-RST_SLACK..=cfg.ooo_bytes_per_dir as i64 + RST_SLACK).contains(&dist) {
                    self.stats.rst_out_of_window += 1;
                    return;
                }
            }
            // RST ends both directions at once; its payload (if any) is not stream data.
            self.close(slot, CloseReason::Rst, at, true);
            return;
        }
        if *unwanted || !consumer.wants_data() {
            *unwanted = true;
            self.stats.unwanted_bytes += seg.payload.len() as u64;
            for h in half.iter_mut() {
                h.discard(&mut self.buffered);
            }
            if seg.flags.fin() {
                half[d].mark_finished();
            }
            if half[0].finished() && half[1].finished() {
                self.close(slot, CloseReason::Fin, at, true);
            }
            return;
        }
        let was_midstream = half.iter().any(|h| h.midstream());
        let o = seg.dir.reverse().index();
        if seg.flags.syn() && seg.flags.ack() && !half[o].started() {
            // A SYN+ACK acknowledges the peer's ISN + 1 even when the capture
            // missed the SYN itself: the peer's stream starts there.
            half[o].start(seg.ack.wrapping_sub(1), true);
        }
        if !half[d].started() {
            if seg.flags.syn() {
                half[d].start(seg.seq, true);
            } else if !seg.payload.is_empty() || seg.flags.fin() {
                // Mid-stream pickup: the first segment with bytes fixes the start
                // (a bare ACK may be a keep-alive one byte before the stream).
                half[d].start(seg.seq, false);
            }
        }
        if !was_midstream && half.iter().any(|h| h.midstream()) {
            self.stats.midstream_flows += 1;
        }
        let mut sink = Sink {
            consumer,
            stats: &mut self.stats,
            buffered: &mut self.buffered,
            dir: seg.dir,
        };
        if half[d].started() {
            let seq = if seg.flags.syn() {
                seg.seq.wrapping_add(1)
            } else {
                seg.seq
            };
            let off = half[d].offset_of(seq);
            half[d].segment(off, &seg.payload, seg.flags.fin(), at, &mut sink);
            if half[d].buffered() > cfg.ooo_bytes_per_dir {
                sink.stats.ooo_budget_bites += 1;
                half[d].shrink_to(cfg.ooo_bytes_per_dir, at, &mut sink);
            }
            half[d].expire(cfg.gap_window_ns, at, &mut sink);
        }
        if seg.flags.ack() {
            let o = seg.dir.reverse();
            sink.dir = o;
            half[o.index()].acked(seg.ack, at, &mut sink);
            half[o.index()].expire(cfg.gap_window_ns, at, &mut sink);
        }
        let oldest_hole = half.iter().fold(None, |o, h| earliest(o, h.hole_since()));
        let done = half[0].finished() && half[1].finished();
        if let Some(since) = oldest_hole {
            self.list_holes(slot, since);
        }
        if done {
            self.close(slot, CloseReason::Fin, at, true);
        } else if self.buffered > self.cfg.total_buffered_bytes {
            self.stats.total_budget_bites += 1;
            self.shrink_total(slot, at);
        }
    }

    /// Give up holes, the flow at hand first, then the other listed flows
    /// (each in full), until the table is within its total budget.
    fn shrink_total(&mut self, first: u32, at: At) {
        let budget = self.cfg.total_buffered_bytes;
        self.give_up_holes(first, Some(budget), at);
        while self.buffered > budget {
            let Some(&slot) = self.holes.first() else {
                break;
            };
            self.give_up_holes(slot, None, at);
        }
    }

    /// Skip the holes of one flow, until the table is within `budget` (or all
    /// of them); unlist the flow once it has none.
    fn give_up_holes(&mut self, slot: u32, budget: Option<usize>, at: At) {
        let Some(flow) = self.slots[slot as usize].as_mut() else {
            return;
        };
        if let Some(consumer) = flow.consumer.as_mut() {
            for (i, h) in flow.half.iter_mut().enumerate() {
                let mut sink = Sink {
                    consumer: &mut *consumer,
                    stats: &mut self.stats,
                    buffered: &mut self.buffered,
                    dir: if i == 0 { Dir::LoToHi } else { Dir::HiToLo },
                };
                while budget.map_or(true, |b| *sink.buffered > b)
                    && h.skip_hole(GapCause::Budget, at, &mut sink)
                {}
            }
        }
        match flow
            .half
            .iter()
            .fold(None, |o, h| earliest(o, h.hole_since()))
        {
            Some(since) => self.list_holes(slot, since),
            None => self.unlist_holes(slot),
        }
        self.mark_touched(slot);
    }

    fn list_holes(&mut self, slot: u32, since: Timestamp) {
        self.next_sweep = self
            .next_sweep
            .min(since.saturating_add_nanos(self.cfg.gap_window_ns));
        let flow = self.slots[slot as usize].as_mut().expect("live slot");
        if flow.hole_pos == NIL {
            flow.hole_pos = self.holes.len() as u32;
            self.holes.push(slot);
        }
    }

    fn unlist_holes(&mut self, slot: u32) {
        let Some(flow) = self.slots[slot as usize].as_mut() else {
            return;
        };
        let pos = std::mem::replace(&mut flow.hole_pos, NIL);
        if pos == NIL {
            return;
        }
        self.holes.swap_remove(pos as usize);
        if let Some(&moved) = self.holes.get(pos as usize) {
            if let Some(f) = self.slots[moved as usize].as_mut() {
                f.hole_pos = pos;
            }
        }
    }

    fn mark_touched(&mut self, slot: u32) {
        if let Some(flow) = self.slots[slot as usize].as_mut() {
            if !flow.touched {
                flow.touched = true;
                self.touched.push(slot);
            }
        }
    }

    /// Advance capture time: close flows idle past the timeout and give up
    /// holes older than the gap window. `frame` is the frame that brought `now`.
    pub fn advance(&mut self, now: Timestamp, frame: FrameRef) {
        let at = At { ts: now, frame };
        while self.head != NIL {
            let slot = self.head;
            let flow = self.flow(slot);
            if now.nanos_since(flow.last_ts) <= self.cfg.idle_timeout_ns {
                break;
            }
            if flow.consumer.is_some() {
                self.close(slot, CloseReason::Idle, at, false);
            } else {
                self.remove(slot);
            }
        }
        if now < self.next_sweep {
            return;
        }
        let window = self.cfg.gap_window_ns;
        let mut next_sweep = Timestamp(i64::MAX);
        let mut i = 0;
        while i < self.holes.len() {
            let slot = self.holes[i];
            let flow = self.slots[slot as usize]
                .as_mut()
                .expect("listed slot is live");
            let mut oldest = None;
            if let Some(consumer) = flow.consumer.as_mut() {
                for (d, h) in flow.half.iter_mut().enumerate() {
                    let mut sink = Sink {
                        consumer: &mut *consumer,
                        stats: &mut self.stats,
                        buffered: &mut self.buffered,
                        dir: if d == 0 { Dir::LoToHi } else { Dir::HiToLo },
                    };
                    h.expire(window, at, &mut sink);
                    oldest = earliest(oldest, h.hole_since());
                }
            }
            self.mark_touched(slot);
            match oldest {
                Some(since) => {
                    next_sweep = next_sweep.min(since.saturating_add_nanos(window));
                    i += 1;
                }
                // Unlisting moves the last entry to `i`: visit it next.
                None => self.unlist_holes(slot),
            }
        }
        self.next_sweep = next_sweep;
    }

    /// End of input: deliver everything buffered (gaps included) and close
    /// every flow (`EndOfInput`), in order of their first frame.
    pub fn finish(&mut self, frame: FrameRef) {
        let mut live: Vec<(FrameRef, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|f| (f.first_frame, i as u32)))
            .collect();
        live.sort_unstable();
        for (_, slot) in live {
            let flow = self.flow(slot);
            if flow.consumer.is_some() {
                let at = At {
                    ts: flow.last_ts,
                    frame,
                };
                self.close(slot, CloseReason::EndOfInput, at, false);
            } else {
                self.remove(slot);
            }
        }
    }

    /// Flush a flow, tell its consumer, and either keep a closed entry
    /// (`keep`, for FIN and RST) or remove it.
    fn close(&mut self, slot: u32, reason: CloseReason, at: At, keep: bool) {
        let flow = self.slots[slot as usize].as_mut().expect("live slot");
        if let Some(mut consumer) = flow.consumer.take() {
            for (d, h) in flow.half.iter_mut().enumerate() {
                let mut sink = Sink {
                    consumer: &mut consumer,
                    stats: &mut self.stats,
                    buffered: &mut self.buffered,
                    dir: if d == 0 { Dir::LoToHi } else { Dir::HiToLo },
                };
                h.flush(at, &mut sink);
                h.discard(sink.buffered);
            }
            consumer.on_close(reason, at.ts, at.frame);
            self.stats.count_close(reason);
            self.closed.push(consumer);
        }
        flow.half = [HalfStream::default(), HalfStream::default()];
        self.unlist_holes(slot);
        if !keep {
            self.remove(slot);
        }
    }

    /// Drop an entry whose consumer is gone or is being dropped.
    fn remove(&mut self, slot: u32) {
        self.unlink(slot);
        self.unlist_holes(slot);
        if let Some(flow) = self.slots[slot as usize].take() {
            self.index.remove(&flow.key);
            for mut h in flow.half {
                h.discard(&mut self.buffered);
            }
        }
        self.free.push(slot);
    }

    fn touch(&mut self, slot: u32, ts: Timestamp) {
        let flow = self.slots[slot as usize].as_mut().expect("live slot");
        flow.last_ts = flow.last_ts.max(ts);
        if self.tail != slot {
            self.unlink(slot);
            self.link_tail(slot);
        }
    }

    fn link_tail(&mut self, slot: u32) {
        let old_tail = self.tail;
        {
            let flow = self.slots[slot as usize].as_mut().expect("live slot");
            flow.prev = old_tail;
            flow.next = NIL;
        }
        if old_tail != NIL {
            self.slots[old_tail as usize]
                .as_mut()
                .expect("live slot")
                .next = slot;
        } else {
            self.head = slot;
        }
        self.tail = slot;
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let flow = self.slots[slot as usize].as_mut().expect("live slot");
            let pn = (flow.prev, flow.next);
            flow.prev = NIL;
            flow.next = NIL;
            pn
        };
        if prev != NIL {
            self.slots[prev as usize].as_mut().expect("live slot").next = next;
        } else if self.head == slot {
            self.head = next;
        }
        if next != NIL {
            self.slots[next as usize].as_mut().expect("live slot").prev = prev;
        } else if self.tail == slot {
            self.tail = prev;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::net::{Endpoint, TcpFlags, Transport};
    use crate::tcp::harness::{Recorded, Recorder};
    use crate::tcp::{Chunk, ChunkInfo};

    const C2S: Dir = Dir::LoToHi; // client 10.0.0.1:40000 is the lower endpoint
    const S2C: Dir = Dir::HiToLo;
    const SYN: u8 = TcpFlags::SYN;
    const ACK: u8 = TcpFlags::ACK;
    const FIN: u8 = TcpFlags::FIN;
    const RST: u8 = TcpFlags::RST;
    const MS: i64 = 1_000_000;

    fn ep(last: u8, port: u16) -> Endpoint {
        Endpoint {
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
            port,
        }
    }

    fn key_for(client_port: u16) -> FlowKey {
        FlowKey::new(Transport::Tcp, ep(1, client_port), ep(2, 5222)).0
    }

    /// A flow table of recorders, with a frame counter.
    struct Rig {
        table: FlowTable<Recorder>,
        key: FlowKey,
        frame: u64,
        created: Vec<NewFlow>,
    }

    impl Rig {
        fn new(cfg: TcpConfig) -> Self {
            Rig {
                table: FlowTable::new(cfg),
                key: key_for(40000),
                frame: 0,
                created: Vec::new(),
            }
        }

        // Every field of a segment a test sets, spelled out at each call.
        #[allow(clippy::too_many_arguments)]
        fn seg_on(
            &mut self,
            key: FlowKey,
            dir: Dir,
            seq: u32,
            ack: u32,
            flags: u8,
            data: &[u8],
            t_ms: i64,
        ) {
            self.frame += 1;
            let seg = TcpSegment {
                key,
                dir,
                seq,
                ack,
                flags: TcpFlags(flags),
                window: 1000,
                payload: Cow::Owned(data.to_vec()),
                frame: FrameRef {
                    source: 0,
                    index: self.frame,
                },
                ts: Timestamp(t_ms * MS),
            };
            let created = &mut self.created;
            self.table.segment(&seg, |n| {
                created.push(*n);
                Recorder::default()
            });
        }

        fn seg(&mut self, dir: Dir, seq: u32, flags: u8, data: &[u8], t_ms: i64) {
            self.seg_on(self.key, dir, seq, 0, flags, data, t_ms);
        }

        /// SYN, SYN+ACK, ACK with client ISN 1000 and server ISN 5000.
        fn handshake(&mut self) {
            self.seg(C2S, 1000, SYN, b"", 0);
            self.seg_on(self.key, S2C, 5000, 1001, SYN | ACK, b"", 1);
            self.seg_on(self.key, C2S, 1001, 5001, ACK, b"", 2);
        }

        fn finish(&mut self) -> Vec<Recorder> {
            self.frame += 1;
            self.table.finish(FrameRef {
                source: 0,
                index: self.frame,
            });
            self.table.take_closed()
        }

        fn stats(&self) -> TcpStats {
            self.table.stats().clone()
        }
    }

    fn one(mut v: Vec<Recorder>) -> Recorder {
        assert_eq!(v.len(), 1, "expected one closed flow");
        v.pop().unwrap()
    }

    #[test]
    fn in_order_data_after_handshake_is_delivered_without_copy() {
        struct Ptrs(Vec<(usize, usize)>);
        impl StreamConsumer for Ptrs {
            fn on_chunk(&mut self, chunk: Chunk<'_>, _: &ChunkInfo) {
                if let Chunk::Data(b) = chunk {
                    self.0.push((b.as_ptr() as usize, b.len()));
                }
            }
            fn on_close(&mut self, _: CloseReason, _: Timestamp, _: FrameRef) {}
        }
        let mut table: FlowTable<Ptrs> = FlowTable::new(TcpConfig::default());
        let key = key_for(40000);
        let payload = b"hello world".to_vec();
        let seg = |seq, flags, payload: &[u8]| TcpSegment {
            key,
            dir: C2S,
            seq,
            ack: 0,
            flags: TcpFlags(flags),
            window: 0,
            payload: Cow::Owned(payload.to_vec()),
            frame: FrameRef::default(),
            ts: Timestamp(0),
        };
        table.segment(&seg(1000, SYN, b""), |_| Ptrs(Vec::new()));
        let data = TcpSegment {
            payload: Cow::Borrowed(&payload[..]),
            ..seg(1001, ACK, b"")
        };
        table.segment(&data, |_| unreachable!("flow exists"));
        let got = &table.consumers_mut().next().unwrap().0;
        assert_eq!(got, &vec![(payload.as_ptr() as usize, payload.len())]);
        assert_eq!(table.stats().reordered_bytes, 0);
    }

    #[test]
    fn handshake_fixes_client_and_offsets() {
        let mut rig = Rig::new(TcpConfig::default());
        rig.handshake();
        rig.seg(C2S, 1001, ACK, b"abc", 3);
        rig.seg(S2C, 5001, ACK, b"xyz!", 4);
        rig.seg(C2S, 1004, ACK, b"def", 5);
        assert_eq!(rig.created[0].client_dir, Some(C2S));
        assert_eq!(rig.table.client_dir(&rig.key), Some(C2S));
        let r = one(rig.finish());
        assert_eq!(r.data(C2S), b"abcdef");
        assert_eq!(r.data(S2C), b"xyz!");
        let offsets: Vec<u64> = r.chunks.iter().map(|(_, i)| i.offset).collect();
        assert_eq!(offsets, vec![0, 0, 3]);
        assert!(r.chunks.iter().all(|(_, i)| !i.flags.midstream));
        assert_eq!(r.closed.unwrap().0, CloseReason::EndOfInput);
        assert_eq!(rig.table.stats().delivered_bytes, 10);
    }

    #[test]
    fn out_of_order_segments_wait_for_the_hole() {
        let mut rig = Rig::new(TcpConfig::default());
        rig.handshake();
        rig.seg(C2S, 1004, ACK, b"def", 3); // frame 4
        rig.seg(C2S, 1007, ACK, b"ghi", 4); // frame 5
        rig.seg(C2S, 1001, ACK, b"abc", 5); // frame 6 fills the hole
        let r = one(rig.finish());
        assert_eq!(r.stream(C2S), vec![Recorded::Data(b"abcdefghi".to_vec())]);
        let (_, second) = &r.chunks[1];
        // Stamped with the frame that carried "def", not the one that filled the hole.
        assert_eq!((second.first_frame.index, second.frame.index), (4, 4));
        assert_eq!(second.offset, 3);
        assert_eq!(rig.table.stats().reordered_bytes, 6);
        assert_eq!(rig.table.stats().gaps, 0);
    }

    #[test]
    fn retransmissions_and_same_byte_overlaps_are_silent() {
        let mut rig = Rig::new(TcpConfig::default());
        rig.handshake();
        rig.seg(C2S, 1001, ACK, b"abcd", 3);
        rig.seg(C2S, 1001, ACK, b"abcd", 4); // exact retransmission
        rig.seg(C2S, 1011, ACK, b"klm", 5); // out of order
        rig.seg(C2S, 1009, ACK, b"ijklmn", 6); // overlaps the buffered piece, same bytes
        rig.seg(C2S, 1003, ACK, b"cdefgh", 7); // overlaps delivered bytes, fills the hole
        let s = rig.stats();
        let r = one(rig.finish());
        assert_eq!(r.data(C2S), b"abcdefghijklmn");
        assert!(!r.any_conflict(C2S));
        assert_eq!(s.overlap_conflicts, 0);
        assert_eq!(s.retransmitted_bytes, 4 + 3 + 2);
    }

    #[test]
    fn overlap_with_different_bytes_keeps_the_first_and_flags_the_next_chunk() {
        let mut rig = Rig::new(TcpConfig::default());
        rig.handshake();
        rig.seg(C2S, 1005, ACK, b"EFGH", 3); // buffered first
        rig.seg(C2S, 1001, ACK, b"abcdXXGH", 4); // disagrees on 2 bytes
        rig.seg(C2S, 1009, ACK, b"ij", 5);
        let s = rig.stats();
        let r = one(rig.finish());
        assert_eq!(r.data(C2S), b"abcdEFGHij");
        assert_eq!(s.overlap_conflicts, 1);
        assert_eq!(s.overlap_conflict_bytes, 2);
        let flags: Vec<bool> = r
            .chunks
            .iter()
            .map(|(_, i)| i.flags.overlap_conflict)
            .collect();
        // The chunk that carries the disputed range is the one flagged.
        assert_eq!(flags, vec![false, true, false]);
    }

    #[test]
    fn sequence_numbers_wrap_around() {
        let mut rig = Rig::new(TcpConfig::default());
        let isn = u32::MAX - 4;
        rig.seg(C2S, isn, SYN, b"", 0);
        // Data starts at isn+1 = MAX-3: 8 bytes cross the wrap, sent out of order.
        rig.seg(C2S, 3, ACK, b"789", 1); // offsets 7..10, after the wrap
        rig.seg(C2S, isn.wrapping_add(1), ACK, b"0123", 2); // MAX-3..=MAX
        rig.seg(C2S, 0, ACK, b"456", 3);
        let r = one(rig.finish());
        assert_eq!(r.data(C2S), b"0123456789");
        assert_eq!(r.gaps(C2S), vec![]);
    }

    #[test]
    fn stream_offsets_pass_four_gigabytes() {
        /// Keeps only offsets, not bytes: the stream is 4 GiB long.
        #[derive(Default)]
        struct Offsets {
            next: u64,
            continuous: bool,
            last: Vec<u8>,
        }
        impl StreamConsumer for Offsets {
            fn on_chunk(&mut self, chunk: Chunk<'_>, info: &ChunkInfo) {
                self.continuous = info.offset == self.next;
                if let Chunk::Data(b) = chunk {
                    self.next += b.len() as u64;
                    self.last = b.to_vec();
                }
            }
            fn on_close(&mut self, _: CloseReason, _: Timestamp, _: FrameRef) {}
        }
        let mut table: FlowTable<Offsets> = FlowTable::new(TcpConfig::default());
        let key = key_for(40000);
        let block = vec![0u8; 65_000];
        let mut seg = TcpSegment {
            key,
            dir: C2S,
            seq: 7,
            ack: 0,
            flags: TcpFlags(SYN),
            window: 0,
            payload: Cow::Borrowed(&block[..0]),
            frame: FrameRef::default(),
            ts: Timestamp(0),
        };
        table.segment(&seg, |_| Offsets::default());
        seg.flags = TcpFlags(ACK);
        seg.seq = 8;
        seg.payload = Cow::Borrowed(&block[..]);
        let mut sent = 0u64;
        while sent < (1u64 << 32) + 100_000 {
            table.segment(&seg, |_| unreachable!());
            seg.seq = seg.seq.wrapping_add(block.len() as u32);
            sent += block.len() as u64;
        }
        seg.payload = Cow::Borrowed(b"end");
        table.segment(&seg, |_| unreachable!());
        let c = table.consumers_mut().next().unwrap();
        assert_eq!(c.last, b"end");
        assert!(c.continuous);
        assert_eq!(c.next, sent + 3);
        assert_eq!(table.stats().gaps, 0);
        assert_eq!(table.stats().reordered_bytes, 0);
    }

    #[test]
    fn syn_carrying_data_is_delivered_from_offset_zero() {
        let mut rig = Rig::new(TcpConfig::default());
        rig.seg(C2S, 300, SYN, b"early", 0);
        rig.seg(C2S, 300, SYN, b"early", 1); // retransmitted SYN
        rig.seg(C2S, 306, ACK, b"!", 2);
        let r = one(rig.finish());
        assert_eq!(r.data(C2S), b"early!");
        assert_eq!(r.chunks[0].1.offset, 0);
    }

    #[test]
    fn midstream_pickup_fixes_start_and_flags_chunks() {
        let mut rig = Rig::new(TcpConfig::default());
        rig.seg(C2S, 7777, ACK, b"", 0); // a bare ACK starts nothing
        assert!(rig.table.is_empty());
        rig.seg(S2C, 9000, ACK, b"pong", 1);
        rig.seg(C2S, 7777, ACK, b"ping", 2);
        assert_eq!(rig.created[0].client_dir, None);
        // Port guess: 5222 is the server, so the client sends LoToHi.
        assert_eq!(rig.created[0].client_dir_or_guess(), C2S);
        let s = rig.stats();
        let r = one(rig.finish());
        assert_eq!(r.data(S2C), b"pong");
        assert_eq!(r.data(C2S), b"ping");
        assert!(r.chunks.iter().all(|(_, i)| i.flags.midstream));
        assert_eq!(s.midstream_flows, 1);
        assert_eq!(s.segments_without_flow, 1);
    }

    #[test]
    fn syn_ack_first_names_the_client() {
        let mut rig = Rig::new(TcpConfig::default());
        rig.seg_on(rig.key, S2C, 5000, 1001, SYN | ACK, b"", 0);
        assert_eq!(rig.created[0].client_dir, Some(C2S));
    }

    #[test]
    fn port_guess_takes_the_lower_port_as_server() {
        let k = FlowKey::new(Transport::Tcp, ep(9, 1863), ep(1, 51000)).0;
        // lo is 10.0.0.1:51000 (the client), hi is 10.0.0.9:1863.
        assert_eq!(guess_client_dir(&k), Dir::LoToHi);
        let k = FlowKey::new(Transport::Tcp, ep(1, 6667), ep(9, 51000)).0;
        assert_eq!(guess_client_dir(&k), Dir::HiToLo);
        let k = FlowKey::new(Transport::Tcp, ep(1, 7000), ep(9, 7000)).0;
        assert_eq!(guess_client_dir(&k), Dir::LoToHi);
    }

    #[test]
    fn fin_both_ways_closes_and_later_segments_are_absorbed() {
        let mut rig = Rig::new(TcpConfig::default());
        rig.handshake();
        rig.seg(C2S, 1001, ACK | FIN, b"bye", 3);
        rig.seg(C2S, 1004, ACK, b"late", 4); // after FIN: ignored
        rig.seg(S2C, 5001, ACK | FIN, b"ok", 5);
        let closed = rig.table.take_closed();
        let r = one(closed);
        assert_eq!(r.closed.unwrap().0, CloseReason::Fin);
        assert_eq!(r.data(C2S), b"bye");
        assert_eq!(r.data(S2C), b"ok");
        rig.seg_on(rig.key, C2S, 1005, 5004, ACK, b"", 6); // final ACK
        rig.seg(C2S, 1001, ACK, b"bye", 7); // stray retransmission
        let s = rig.stats();
        assert_eq!(s.data_after_fin_bytes, 4);
        assert_eq!(s.segments_after_close, 2);
        assert_eq!(s.closed_fin, 1);
        assert_eq!(s.flows_created, 1);
        assert!(
            rig.finish().is_empty(),
            "the closed entry has no consumer left"
        );
        assert_eq!(r.after_close, 0);
    }

    #[test]
    fn bytes_past_a_fin_are_dropped_even_with_a_hole_before_it() {
        let mut rig = Rig::new(TcpConfig::default());
        rig.handshake();
        rig.seg(C2S, 1001, ACK, b"ab", 3);
        rig.seg(C2S, 1008, ACK, b"hijk", 4); // buffered: offsets 7..11
        rig.seg(C2S, 1010, ACK | FIN, b"", 5); // FIN at offset 9 contradicts it
        rig.seg(C2S, 1020, ACK, b"later", 6); // wholly past the FIN
        let s = rig.stats();
        assert_eq!(s.data_after_fin_bytes, 2 + 5);
        assert_eq!(rig.table.buffered_bytes(), 2);
        let r = one(rig.finish());
        assert_eq!(
            r.stream(C2S),
            vec![
                Recorded::Data(b"ab".to_vec()),
                Recorded::Gap(5),
                Recorded::Data(b"hi".to_vec())
            ]
        );
    }

    #[test]
    fn reused_four_tuple_starts_a_new_flow() {
        let mut rig = Rig::new(TcpConfig::default());
        rig.handshake();
        rig.seg(C2S, 1001, ACK | FIN, b"one", 3);
        rig.seg(S2C, 5001, ACK | FIN, b"", 4);
        rig.seg(C2S, 90_000, SYN, b"", 5);
        rig.seg(C2S, 90_001, ACK, b"two", 6);
        let first = one(rig.table.take_closed());
        let second = one(rig.finish());
        assert_eq!(first.data(C2S), b"one");
        assert_eq!(second.data(C2S), b"two");
        assert_eq!(rig.created.len(), 2);
        assert_eq!(rig.created[1].frame.index, 6);
    }

    #[test]
    fn a_new_syn_on_a_live_flow_replaces_it() {
        let mut rig = Rig::new(TcpConfig::default());
        rig.handshake();
        rig.seg(C2S, 1001, ACK, b"old", 3);
        rig.seg(C2S, 1000, SYN, b"", 4); // retransmitted SYN of the same connection
        assert!(rig.table.take_closed().is_empty());
        rig.seg(C2S, 777_000, SYN, b"", 5); // a new connection, the old end never seen
        rig.seg(C2S, 777_001, ACK, b"new", 6);
        let old = one(rig.table.take_closed());
        assert_eq!(old.data(C2S), b"old");
        assert_eq!(old.closed.unwrap().0, CloseReason::Evicted);
        let new = one(rig.finish());
        assert_eq!(new.data(C2S), b"new");
        assert_eq!(rig.stats().tuple_reuses, 1);
    }

    #[test]
    fn syn_ack_without_the_syn_still_starts_the_client_stream() {
        let mut rig = Rig::new(TcpConfig::default());
        rig.seg_on(rig.key, S2C, 5000, 1001, SYN | ACK, b"", 0); // the SYN was not captured
        rig.seg_on(rig.key, C2S, 1001, 5001, ACK, b"", 1);
        rig.seg(C2S, 1004, ACK, b"def", 2); // out of order
        rig.seg(C2S, 1001, ACK, b"abc", 3);
        let r = one(rig.finish());
        assert_eq!(r.stream(C2S), vec![Recorded::Data(b"abcdef".to_vec())]);
        assert!(r.chunks.iter().all(|(_, i)| !i.flags.midstream));
        assert_eq!(rig.stats().midstream_flows, 0);
    }

    #[test]
    fn rst_flushes_buffered_bytes_after_a_gap_and_closes() {
        let mut rig = Rig::new(TcpConfig::default());
        rig.handshake();
        rig.seg(C2S, 1001, ACK, b"ab", 3);
        rig.seg(C2S, 1005, ACK, b"ef", 4);
        rig.seg(S2C, 5001, RST, b"", 5);
        let r = one(rig.table.take_closed());
        assert_eq!(
            r.stream(C2S),
            vec![
                Recorded::Data(b"ab".to_vec()),
                Recorded::Gap(2),
                Recorded::Data(b"ef".to_vec())
            ]
        );
        assert_eq!(r.closed.unwrap().0, CloseReason::Rst);
        assert_eq!(rig.stats().closed_rst, 1);
        assert_eq!(rig.stats().gaps_close, 1);
        assert_eq!(rig.table.buffered_bytes(), 0);
    }

    #[test]
    fn rst_far_outside_the_window_is_ignored_and_counted() {
        let mut rig = Rig::new(TcpConfig::default());
        rig.handshake();
        rig.seg(C2S, 1001, ACK, b"ab", 3);
        // A forged RST half the sequence space away, from either side.
        rig.seg(C2S, 1003 ^ 0x8000_0000, RST, b"", 4);
        rig.seg(S2C, 5001u32.wrapping_sub(1 << 20), RST, b"", 5);
        rig.seg(C2S, 1003, ACK, b"cd", 6);
        assert!(rig.table.take_closed().is_empty(), "the flow stays open");
        assert_eq!(rig.stats().rst_out_of_window, 2);
        // A RST where the stream stands still closes it.
        rig.seg(S2C, 5001, RST, b"", 7);
        let r = one(rig.table.take_closed());
        assert_eq!(r.data(C2S), b"abcd");
        assert_eq!(rig.stats().closed_rst, 1);
    }

    #[test]
    fn keep_alives_and_window_probes_add_no_bytes() {
        let mut rig = Rig::new(TcpConfig::default());
        rig.handshake();
        rig.seg(C2S, 1001, ACK, b"abc", 3);
        rig.seg(C2S, 1003, ACK, b"?", 4); // keep-alive: 1 byte at seq-1 (garbage)
        rig.seg(C2S, 1004, ACK, b"", 5); // keep-alive without a byte
        rig.seg(C2S, 1004, ACK, b"d", 6); // zero-window probe: first byte of what follows
        rig.seg(C2S, 1004, ACK, b"defg", 7); // the window opens: resent with more
        let s = rig.stats();
        let r = one(rig.finish());
        assert_eq!(r.data(C2S), b"abcdefg");
        assert_eq!(s.retransmitted_bytes, 2);
        assert_eq!(s.gaps, 0);
    }

    #[test]
    fn a_hole_older_than_the_gap_window_becomes_a_gap() {
        let cfg = TcpConfig {
            gap_window_ns: 1000 * MS,
            ..TcpConfig::default()
        };
        let mut rig = Rig::new(cfg);
        rig.handshake();
        rig.seg(C2S, 1001, ACK, b"ab", 3);
        rig.seg(C2S, 1005, ACK, b"ef", 100); // bytes 2..4 lost
        rig.table.advance(Timestamp(900 * MS), FrameRef::default());
        assert_eq!(
            rig.table.consumers_mut().next().unwrap().chunks.len(),
            1,
            "still within the window"
        );
        rig.table.advance(
            Timestamp(1100 * MS),
            FrameRef {
                source: 0,
                index: 99,
            },
        );
        {
            let r = rig.table.consumers_mut().next().unwrap();
            assert_eq!(r.stream(C2S)[1], Recorded::Gap(2));
            assert_eq!(r.chunks[1].1.frame.index, 99);
        }
        // The stream goes on after the gap.
        rig.seg(C2S, 1007, ACK, b"gh", 1200);
        let s = rig.stats();
        let r = one(rig.finish());
        assert_eq!(r.data(C2S), b"abefgh");
        assert_eq!((s.gaps, s.gap_bytes, s.gaps_window), (1, 2, 1));
    }

    #[test]
    fn a_stray_segment_far_ahead_does_not_cut_a_flowing_stream() {
        let cfg = TcpConfig {
            gap_window_ns: 1000 * MS,
            ..TcpConfig::default()
        };
        let mut rig = Rig::new(cfg);
        rig.handshake();
        rig.seg(C2S, 1001 + 50_000_000, ACK, b"bogus", 3); // corrupt sequence number
        let mut seq = 1001u32;
        for t in 0..30 {
            rig.seg(C2S, seq, ACK, b"0123456789", 10 + t * 200);
            rig.table
                .advance(Timestamp((10 + t * 200) * MS), FrameRef::default());
            seq += 10;
        }
        assert_eq!(rig.stats().gaps, 0, "the stream kept flowing");
        rig.seg(C2S, seq, ACK | FIN, b"", 7000);
        let s = rig.stats();
        let r = one(rig.finish());
        assert_eq!(r.data(C2S), b"0123456789".repeat(30));
        assert_eq!(r.gaps(C2S), vec![]);
        assert_eq!(s.data_after_fin_bytes, 5);
    }

    #[test]
    fn a_segment_arriving_past_the_window_also_triggers_the_gap() {
        let cfg = TcpConfig {
            gap_window_ns: 1000 * MS,
            ..TcpConfig::default()
        };
        let mut rig = Rig::new(cfg);
        rig.handshake();
        rig.seg(C2S, 1005, ACK, b"ef", 10);
        rig.seg(C2S, 1007, ACK, b"gh", 2000);
        let r = rig.table.consumers_mut().next().unwrap();
        assert_eq!(
            r.stream(C2S),
            vec![Recorded::Gap(4), Recorded::Data(b"efgh".to_vec())]
        );
    }

    #[test]
    fn lost_segment_then_nothing_is_flushed_at_end_of_input() {
        let mut rig = Rig::new(TcpConfig::default());
        rig.handshake();
        rig.seg(C2S, 1001, ACK, b"ab", 3);
        rig.seg(C2S, 1005, ACK, b"ef", 4);
        rig.seg(C2S, 1009, ACK, b"ij", 5);
        let r = one(rig.finish());
        assert_eq!(
            r.stream(C2S),
            vec![
                Recorded::Data(b"ab".to_vec()),
                Recorded::Gap(2),
                Recorded::Data(b"ef".to_vec()),
                Recorded::Gap(2),
                Recorded::Data(b"ij".to_vec()),
            ]
        );
        assert_eq!(r.gaps(C2S), vec![(2, 2), (6, 2)]);
        assert_eq!(rig.stats().gaps_close, 2);
    }

    #[test]
    fn bytes_lost_before_a_fin_become_a_gap_on_close() {
        let mut rig = Rig::new(TcpConfig::default());
        rig.handshake();
        rig.seg(C2S, 1001, ACK, b"ab", 3);
        rig.seg(C2S, 1010, ACK | FIN, b"", 4); // 7 bytes lost before the FIN
        rig.seg(S2C, 5001, ACK | FIN, b"", 5);
        let r = one(rig.finish());
        assert_eq!(r.gaps(C2S), vec![(2, 7)]);
    }

    #[test]
    fn an_ack_past_a_hole_gives_it_up_at_once() {
        let mut rig = Rig::new(TcpConfig::default());
        rig.handshake();
        rig.seg(C2S, 1001, ACK, b"ab", 3);
        rig.seg(C2S, 1005, ACK, b"ef", 4);
        rig.seg_on(rig.key, S2C, 5001, 1005, ACK, b"", 5); // acks up to the hole's end
        let r = rig.table.consumers_mut().next().unwrap();
        assert_eq!(
            r.stream(C2S)[1..],
            [Recorded::Gap(2), Recorded::Data(b"ef".to_vec())]
        );
        assert_eq!(rig.stats().gaps_acked, 1);
    }

    #[test]
    fn an_ack_of_the_fin_gives_up_bytes_lost_before_it_and_closes() {
        let mut rig = Rig::new(TcpConfig::default());
        rig.handshake();
        rig.seg(C2S, 1001, ACK, b"ab", 3);
        rig.seg(C2S, 1010, ACK | FIN, b"", 4); // 7 bytes lost, then FIN
        rig.seg_on(rig.key, S2C, 5001, 1011, ACK | FIN, b"", 5);
        let r = one(rig.table.take_closed());
        assert_eq!(r.closed.unwrap().0, CloseReason::Fin);
        assert_eq!(r.gaps(C2S), vec![(2, 7)]);
        assert_eq!(rig.stats().gaps_acked, 1);
    }

    #[test]
    fn an_ack_short_of_the_hole_waits() {
        let mut rig = Rig::new(TcpConfig::default());
        rig.handshake();
        rig.seg(C2S, 1001, ACK, b"ab", 3);
        rig.seg(C2S, 1005, ACK, b"ef", 4);
        rig.seg_on(rig.key, S2C, 5001, 1003, ACK, b"", 5);
        assert_eq!(rig.stats().gaps, 0);
        rig.seg(C2S, 1003, ACK, b"cd", 6);
        let r = one(rig.finish());
        assert_eq!(r.data(C2S), b"abcdef");
    }

    #[test]
    fn per_direction_budget_bites_and_is_counted() {
        let cfg = TcpConfig {
            ooo_bytes_per_dir: 10,
            ..TcpConfig::default()
        };
        let mut rig = Rig::new(cfg);
        rig.handshake();
        rig.seg(C2S, 1003, ACK, b"cdefgh", 3); // 6 buffered, bytes 0..2 missing
        rig.seg(C2S, 1011, ACK, b"KLMNOP", 4); // 12 buffered: over budget
        let s = rig.stats();
        assert_eq!(s.ooo_budget_bites, 1);
        assert_eq!(s.gaps_budget, 1);
        let r = one(rig.finish());
        assert_eq!(
            r.stream(C2S),
            vec![
                Recorded::Gap(2),
                Recorded::Data(b"cdefgh".to_vec()),
                Recorded::Gap(2),
                Recorded::Data(b"KLMNOP".to_vec())
            ]
        );
        assert!(s.peak_buffered_bytes >= 12);
    }

    #[test]
    fn total_budget_bites_across_flows_and_is_counted() {
        let cfg = TcpConfig {
            total_buffered_bytes: 10,
            ..TcpConfig::default()
        };
        let mut rig = Rig::new(cfg);
        let other = key_for(40001);
        rig.seg_on(other, C2S, 1, 0, SYN, b"", 0);
        rig.seg_on(other, C2S, 10, 0, ACK, b"123456", 1); // 6 buffered in the other flow
        rig.handshake();
        rig.seg(C2S, 1005, ACK, b"efgh", 3); // 10 buffered: at the budget
        assert_eq!(rig.stats().total_budget_bites, 0);
        rig.seg(C2S, 1010, ACK, b"jk", 4); // 12: over, this flow gives up its holes first
        let s = rig.stats();
        assert_eq!(s.total_budget_bites, 1);
        // Its first hole sufficed: 6 + 2 bytes stay buffered.
        assert_eq!(rig.table.buffered_bytes(), 8);
        let closed = rig.finish();
        assert_eq!(closed.len(), 2);
        assert_eq!(closed[1].stream(C2S)[0], Recorded::Gap(4));
        assert_eq!(closed[1].stream(C2S)[2], Recorded::Gap(1));
        assert_eq!(closed[0].stream(C2S)[0], Recorded::Gap(8));
    }

    #[test]
    fn flow_budget_evicts_the_longest_idle_flow() {
        let cfg = TcpConfig {
            max_flows: 2,
            ..TcpConfig::default()
        };
        let mut rig = Rig::new(cfg);
        let (a, b, c) = (key_for(40001), key_for(40002), key_for(40003));
        rig.seg_on(a, C2S, 1, 0, SYN, b"", 0);
        rig.seg_on(b, C2S, 1, 0, SYN, b"", 1);
        rig.seg_on(a, C2S, 2, 0, ACK, b"a-data", 2); // a is now the most recent
        rig.seg_on(c, C2S, 1, 0, SYN, b"", 3); // evicts b
        let evicted = one(rig.table.take_closed());
        assert_eq!(evicted.closed.unwrap().0, CloseReason::Evicted);
        assert_eq!(rig.table.len(), 2);
        assert_eq!(rig.table.client_dir(&b), None);
        assert!(rig.table.client_dir(&a).is_some());
        let s = rig.stats();
        assert_eq!((s.evictions, s.closed_evicted, s.peak_flows), (1, 1, 2));
    }

    #[test]
    fn idle_flows_close_in_capture_time() {
        let cfg = TcpConfig {
            idle_timeout_ns: 60_000 * MS,
            ..TcpConfig::default()
        };
        let mut rig = Rig::new(cfg);
        rig.handshake();
        rig.seg(C2S, 1001, ACK, b"ab", 10);
        rig.seg(C2S, 1005, ACK, b"ef", 10);
        let other = key_for(40001);
        rig.seg_on(other, C2S, 1, 0, SYN, b"", 50_000);
        rig.table
            .advance(Timestamp(60_010 * MS), FrameRef::default());
        assert!(rig.table.take_closed().is_empty());
        rig.table
            .advance(Timestamp(60_011 * MS), FrameRef::default());
        let r = one(rig.table.take_closed());
        assert_eq!(r.closed.unwrap().0, CloseReason::Idle);
        assert_eq!(r.stream(C2S)[1], Recorded::Gap(2));
        assert_eq!(rig.table.len(), 1);
        assert_eq!(rig.stats().closed_idle, 1);
    }

    #[test]
    fn a_consumer_that_wants_no_more_bytes_gets_none() {
        #[derive(Default)]
        struct Done(usize, bool);
        impl StreamConsumer for Done {
            fn on_chunk(&mut self, _: Chunk<'_>, _: &ChunkInfo) {
                self.0 += 1;
            }
            fn on_close(&mut self, reason: CloseReason, _: Timestamp, _: FrameRef) {
                self.1 = reason == CloseReason::Fin;
            }
            fn wants_data(&self) -> bool {
                self.0 == 0
            }
        }
        let mut table: FlowTable<Done> = FlowTable::new(TcpConfig::default());
        let key = key_for(40000);
        let mk = |dir, seq, flags, p: &'static [u8]| TcpSegment {
            key,
            dir,
            seq,
            ack: 0,
            flags: TcpFlags(flags),
            window: 0,
            payload: Cow::Borrowed(p),
            frame: FrameRef::default(),
            ts: Timestamp(0),
        };
        table.segment(&mk(C2S, 1, SYN, b""), |_| Done::default());
        table.segment(&mk(C2S, 2, ACK, b"first"), |_| unreachable!());
        table.segment(&mk(C2S, 20, ACK, b"later"), |_| unreachable!());
        table.segment(&mk(C2S, 7, ACK | FIN, b"more"), |_| unreachable!());
        table.segment(&mk(S2C, 9, ACK | FIN, b""), |_| unreachable!());
        let done = table.take_closed();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].0, 1);
        assert!(done[0].1);
        assert_eq!(table.stats().unwanted_bytes, 9);
        assert_eq!(table.buffered_bytes(), 0);
    }

    #[test]
    fn finish_closes_flows_in_first_frame_order() {
        let mut rig = Rig::new(TcpConfig::default());
        for port in [40005, 40001, 40003] {
            rig.seg_on(key_for(port), C2S, 1, 0, SYN, b"", 0);
        }
        rig.seg_on(key_for(40005), C2S, 2, 0, ACK, b"x", 1);
        let closed = rig.finish();
        let frames: Vec<u64> = closed.iter().map(|r| r.closed.unwrap().2.index).collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(rig.stats().closed_end_of_input, 3);
        assert!(rig.table.is_empty());
        assert_eq!(closed[0].data(C2S), b"x", "first created flow closes first");
    }

    #[test]
    fn a_half_open_flow_is_small_and_owns_no_heap() {
        struct Nothing;
        impl StreamConsumer for Nothing {
            fn on_chunk(&mut self, _: Chunk<'_>, _: &ChunkInfo) {}
            fn on_close(&mut self, _: CloseReason, _: Timestamp, _: FrameRef) {}
        }
        let bytes = FlowTable::<Nothing>::entry_bytes();
        assert!(bytes < 320, "{bytes} bytes per flow entry");
        let mut rig = Rig::new(TcpConfig::default());
        rig.seg(C2S, 1, SYN, b"", 0);
        assert_eq!(rig.table.buffered_bytes(), 0);
        let flow = rig.table.slots[0].as_ref().unwrap();
        assert!(flow.half.iter().all(|h| h.buffered() == 0));
    }

    #[test]
    fn many_flows_with_holes_get_their_gaps_whatever_closes_in_between() {
        let cfg = TcpConfig {
            gap_window_ns: 1000 * MS,
            ..TcpConfig::default()
        };
        let mut rig = Rig::new(cfg);
        for port in 40000..40050u16 {
            let k = key_for(port);
            rig.seg_on(k, C2S, 1, 0, SYN, b"", 0);
            rig.seg_on(k, C2S, 5, 0, ACK, b"late", 10); // bytes 0..3 lost
        }
        // Every third flow is reset: the hole list must stay consistent.
        for port in (40000..40050u16).step_by(3) {
            rig.seg_on(key_for(port), S2C, 1, 0, RST, b"", 20);
        }
        let reset = rig.table.take_closed();
        assert_eq!(reset.len(), 17);
        assert!(reset.iter().all(|r| r.gaps(C2S) == vec![(0, 3)]));
        rig.table.advance(Timestamp(500 * MS), FrameRef::default());
        assert_eq!(rig.stats().gaps_window, 0);
        rig.table.advance(Timestamp(1011 * MS), FrameRef::default());
        assert_eq!(rig.stats().gaps_window, 33);
        assert_eq!(rig.table.buffered_bytes(), 0);
        let mut seen = 0;
        rig.table.drain_touched(|r| {
            assert_eq!(
                r.stream(C2S),
                vec![Recorded::Gap(3), Recorded::Data(b"late".to_vec())]
            );
            seen += 1;
        });
        assert_eq!(seen, 33);
        rig.table.drain_touched(|_| panic!("nothing touched since"));
        assert!(rig.table.holes.is_empty());
    }

    #[test]
    fn stats_merge_adds_counters() {
        let mut a = TcpStats {
            segments: 2,
            gaps: 1,
            ..TcpStats::default()
        };
        let b = TcpStats {
            segments: 3,
            evictions: 4,
            ..TcpStats::default()
        };
        a.merge(&b);
        assert_eq!((a.segments, a.gaps, a.evictions), (5, 1, 4));
    }
}
