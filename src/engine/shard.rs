//! One shard: a flow table of its own and the decoders of its flows. A shard
//! sees only the segments whose flow key hashes to it, and never reads another
//! shard's state.

use std::borrow::Cow;
use std::sync::Arc;

use crate::capture::FrameRef;
use crate::event::{Event, FlowId, IdentityFact};
use crate::net::{Dir, FlowKey, TcpFlags, TcpSegment};
use crate::proto::{FlowDecoder, FlowStart, ProtoConfig, ProtoStats};
use crate::tcp::export::{FlowExport, StreamExport, StreamRecord};
use crate::tcp::{
    Chunk, ChunkInfo, CloseReason, FlowTable, NewFlow, StreamConsumer, TcpConfig, TcpStats, Tee,
};
use crate::time::Timestamp;

/// Where a segment's payload lives: a range of the batch's bytes (zero copy),
/// or its own buffer (reassembled from IP fragments).
#[derive(Clone, Debug)]
pub enum PayloadRef {
    Range { start: usize, len: usize },
    Owned(Vec<u8>),
}

/// A TCP segment detached from the frame borrow, so that it can cross to a
/// worker thread together with the batch that owns its bytes.
#[derive(Clone, Debug)]
pub struct SegWork {
    pub key: FlowKey,
    pub dir: Dir,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    pub payload: PayloadRef,
    pub frame: FrameRef,
    pub ts: Timestamp,
}

impl SegWork {
    /// Detach `seg` from its frame; `base` is the batch's bytes the frame
    /// borrows from.
    pub fn new(seg: &TcpSegment<'_>, base: &[u8]) -> SegWork {
        let payload = match &seg.payload {
            Cow::Borrowed(p) => {
                let start = (p.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
                if start <= base.len() && p.len() <= base.len() - start {
                    PayloadRef::Range {
                        start,
                        len: p.len(),
                    }
                } else {
                    // Not a slice of this batch (cannot happen with the
                    // net decoder, but stay correct if it ever does).
                    PayloadRef::Owned(p.to_vec())
                }
            }
            Cow::Owned(v) => PayloadRef::Owned(v.clone()),
        };
        SegWork {
            key: seg.key,
            dir: seg.dir,
            seq: seg.seq,
            ack: seg.ack,
            flags: seg.flags,
            window: seg.window,
            payload,
            frame: seg.frame,
            ts: seg.ts,
        }
    }

    /// Re-attach to the batch's bytes.
    pub fn segment<'a>(&'a self, base: &'a [u8]) -> TcpSegment<'a> {
        let payload: &[u8] = match &self.payload {
            PayloadRef::Range { start, len } => &base[*start..*start + *len],
            PayloadRef::Owned(v) => v,
        };
        TcpSegment {
            key: self.key,
            dir: self.dir,
            seq: self.seq,
            ack: self.ack,
            flags: self.flags,
            window: self.window,
            payload: Cow::Borrowed(payload),
            frame: self.frame,
            ts: self.ts,
        }
    }
}

/// What a shard's flow table holds per flow: the protocol decoder and the
/// stream exporter when `--streams` is on; or, for a reassemble-only run
/// (benchmarks of the stages below proto), a consumer that takes every byte
/// and keeps none.
pub enum FlowConsumer {
    Decode(Tee<FlowDecoder, Option<Box<FlowExport>>>),
    Discard,
}

impl StreamConsumer for FlowConsumer {
    fn on_chunk(&mut self, chunk: Chunk<'_>, info: &ChunkInfo) {
        if let FlowConsumer::Decode(c) = self {
            c.on_chunk(chunk, info);
        }
    }

    fn on_close(&mut self, reason: CloseReason, ts: Timestamp, frame: FrameRef) {
        if let FlowConsumer::Decode(c) = self {
            c.on_close(reason, ts, frame);
        }
    }

    fn wants_data(&self) -> bool {
        match self {
            FlowConsumer::Decode(c) => c.wants_data(),
            FlowConsumer::Discard => true,
        }
    }
}

#[allow(clippy::vec_box)] // boxed on purpose: see `proto::FlowDecoder`'s events
pub struct Shard {
    table: FlowTable<FlowConsumer>,
    proto: Arc<ProtoConfig>,
    export: Option<Arc<StreamExport>>,
    reassemble_only: bool,
    events: Vec<Box<Event>>,
    facts: Vec<IdentityFact>,
    proto_stats: ProtoStats,
    stream_records: Vec<StreamRecord>,
}

impl Shard {
    pub fn new(
        tcp: TcpConfig,
        proto: Arc<ProtoConfig>,
        export: Option<Arc<StreamExport>>,
        reassemble_only: bool,
    ) -> Shard {
        Shard {
            table: FlowTable::new(tcp),
            proto,
            export,
            reassemble_only,
            events: Vec::new(),
            facts: Vec::new(),
            proto_stats: ProtoStats::default(),
            stream_records: Vec::new(),
        }
    }

    /// Feed this shard's segments of one batch, then advance its clock to the
    /// batch's last frame (idle flows close, stale holes become gaps), and
    /// collect the events of every flow that was touched.
    pub fn process(&mut self, base: &[u8], segs: &[SegWork], end: Option<(Timestamp, FrameRef)>) {
        for work in segs {
            let seg = work.segment(base);
            let (proto, export) = (&self.proto, &self.export);
            if self.reassemble_only {
                self.table
                    .segment(&seg, |_: &NewFlow| FlowConsumer::Discard);
            } else {
                self.table
                    .segment(&seg, |nf: &NewFlow| make_consumer(proto, export, nf));
            }
        }
        if let Some((ts, frame)) = end {
            self.table.advance(ts, frame);
        }
        self.collect();
    }

    /// End of input: deliver everything still buffered and close every flow.
    pub fn finish(&mut self, frame: FrameRef) {
        self.table.finish(frame);
        self.collect();
    }

    fn collect(&mut self) {
        let (events, facts) = (&mut self.events, &mut self.facts);
        self.table.drain_touched(|c: &mut FlowConsumer| {
            if let FlowConsumer::Decode(Tee(decoder, _)) = c {
                decoder.drain_boxed(events, facts);
            }
        });
        for closed in self.table.take_closed() {
            let FlowConsumer::Decode(Tee(mut decoder, export)) = closed else {
                continue;
            };
            decoder.drain_boxed(&mut self.events, &mut self.facts);
            self.proto_stats.merge(decoder.stats());
            if let Some(export) = export {
                self.stream_records.push((*export).into_record());
            }
        }
    }

    #[allow(clippy::vec_box)]
    pub fn drain(&mut self, events: &mut Vec<Box<Event>>, facts: &mut Vec<IdentityFact>) {
        events.append(&mut self.events);
        facts.append(&mut self.facts);
    }

    /// Flows in this shard's table (for the live status line).
    pub fn flows(&self) -> usize {
        self.table.len()
    }

    pub fn tcp_stats(&self) -> &TcpStats {
        self.table.stats()
    }

    pub fn proto_stats(&self) -> &ProtoStats {
        &self.proto_stats
    }

    pub fn take_stream_records(&mut self) -> Vec<StreamRecord> {
        std::mem::take(&mut self.stream_records)
    }
}

fn make_consumer(
    proto: &Arc<ProtoConfig>,
    export: &Option<Arc<StreamExport>>,
    nf: &NewFlow,
) -> FlowConsumer {
    let start = FlowStart {
        key: nf.key,
        flow: FlowId(nf.frame),
        source: nf.frame.source,
        client_dir: nf.client_dir,
    };
    FlowConsumer::Decode(Tee(
        FlowDecoder::new(proto.clone(), start),
        export.as_ref().map(|e| Box::new(e.flow(nf))),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A half-open flow (SYN flood, port scan) costs one table entry: keep it
    /// small enough that the default flow budget fits the memory target.
    #[test]
    fn flow_entry_stays_small() {
        let entry = FlowTable::<FlowConsumer>::entry_bytes();
        assert!(entry <= 512, "flow entry grew to {entry} bytes");
    }
}
