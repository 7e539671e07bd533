//! Stage 4, tcp: reassembles each direction of a TCP connection into an
//! ordered sequence of [`Chunk`]s and hands them to a [`StreamConsumer`].
//! It is the only place that buffers stream bytes. It never waits forever:
//! missing bytes become a [`Chunk::Gap`] once a capture-time window or a
//! memory budget says so. It knows nothing about application protocols.
//!
//! - [`FlowTable`] (`table.rs`): one shard's flows, their budgets, idle
//!   timeout and gap window, in capture time.
//! - `half.rs`: one direction's sequence space, out-of-order buffer and gaps.
//! - [`export`]: the `--streams DIR` writer, a [`StreamConsumer`].
//! - [`harness`]: drives any consumer with scripted conversations for tests
//!   (split invariance), and a recording consumer.
//!
//! What a consumer can rely on, per direction: chunks in stream order with
//! continuous offsets (a `Gap` covers exactly the missing bytes); in-order
//! `Data` is a slice of the segment's payload (no copy); the chunk after an
//! overlap conflict carries `overlap_conflict`; every chunk of a direction
//! picked up without its SYN carries `midstream`; `on_close` comes once,
//! after every chunk. Overlap conflicts are detected against bytes still
//! buffered, not against bytes already delivered (those are not kept).

pub mod export;
mod half;
pub mod harness;
mod table;

pub use table::{guess_client_dir, FlowTable, NewFlow, TcpConfig, TcpStats};

use crate::capture::FrameRef;
use crate::net::Dir;
use crate::time::Timestamp;

/// A piece of one direction of a stream, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// Bytes, in stream order.
    Data(&'a [u8]),
    /// `len` bytes of the stream are missing here and will not come.
    Gap(u64),
}

/// Flags carried by a chunk, for the event built from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkFlags {
    /// A retransmission carried different bytes for part of this range (or of
    /// a range delivered since the previous chunk); the first bytes seen were kept.
    pub overlap_conflict: bool,
    /// The stream was picked up without its SYN.
    pub midstream: bool,
}

/// Where and when a chunk became deliverable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Direction of these bytes relative to the flow key.
    pub dir: Dir,
    /// Capture time of `frame`.
    pub ts: Timestamp,
    /// The frame that carried the chunk's last byte. For data that waited
    /// behind a hole this is the frame that brought it, not the one that
    /// filled (or gave up on) the hole: an event's time is that of the frame
    /// carrying its last byte. For a `Gap`, the frame at which it was declared.
    pub frame: FrameRef,
    /// The first frame that carried bytes of this chunk (a chunk is the
    /// payload of one segment, so this equals `frame` for data).
    pub first_frame: FrameRef,
    /// Stream offset (bytes since the initial sequence number) of the chunk's start.
    pub offset: u64,
    pub flags: ChunkFlags,
}

/// Why a direction or a whole flow ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    Fin,
    Rst,
    /// No segment for longer than the idle timeout (capture time).
    Idle,
    /// Evicted to stay within the flow budget.
    Evicted,
    /// End of input.
    EndOfInput,
}

/// What a consumer of a reassembled stream implements. One consumer serves
/// both directions of a flow; `ChunkInfo::dir` tells them apart.
pub trait StreamConsumer {
    /// Called for every chunk, in stream order per direction.
    fn on_chunk(&mut self, chunk: Chunk<'_>, info: &ChunkInfo);

    /// Called once when the flow ends; all chunks have been delivered before.
    fn on_close(&mut self, reason: CloseReason, ts: Timestamp, frame: FrameRef);

    /// False once the consumer needs no more bytes of this flow (e.g. it is
    /// not IM): the reassembler then stops buffering and delivering them for
    /// good (asked before each segment; a later `true` is not heeded), and
    /// only watches for the end of the flow.
    fn wants_data(&self) -> bool {
        true
    }
}

/// Two consumers fed the same chunks (a decoder and the stream exporter).
/// It wants data while either does; each sees every chunk regardless.
#[derive(Debug, Default)]
pub struct Tee<A, B>(pub A, pub B);

impl<A: StreamConsumer, B: StreamConsumer> StreamConsumer for Tee<A, B> {
    fn on_chunk(&mut self, chunk: Chunk<'_>, info: &ChunkInfo) {
        self.0.on_chunk(chunk, info);
        self.1.on_chunk(chunk, info);
    }

    fn on_close(&mut self, reason: CloseReason, ts: Timestamp, frame: FrameRef) {
        self.0.on_close(reason, ts, frame);
        self.1.on_close(reason, ts, frame);
    }

    fn wants_data(&self) -> bool {
        self.0.wants_data() || self.1.wants_data()
    }
}

/// A boxed consumer (keeps rarely used, large consumers out of the flow entry).
impl<C: StreamConsumer + ?Sized> StreamConsumer for Box<C> {
    fn on_chunk(&mut self, chunk: Chunk<'_>, info: &ChunkInfo) {
        (**self).on_chunk(chunk, info);
    }

    fn on_close(&mut self, reason: CloseReason, ts: Timestamp, frame: FrameRef) {
        (**self).on_close(reason, ts, frame);
    }

    fn wants_data(&self) -> bool {
        (**self).wants_data()
    }
}

/// An optional consumer (e.g. the stream exporter when `--streams` is off):
/// `None` takes nothing and wants no data.
impl<C: StreamConsumer> StreamConsumer for Option<C> {
    fn on_chunk(&mut self, chunk: Chunk<'_>, info: &ChunkInfo) {
        if let Some(c) = self {
            c.on_chunk(chunk, info);
        }
    }

    fn on_close(&mut self, reason: CloseReason, ts: Timestamp, frame: FrameRef) {
        if let Some(c) = self {
            c.on_close(reason, ts, frame);
        }
    }

    fn wants_data(&self) -> bool {
        self.as_ref().is_some_and(|c| c.wants_data())
    }
}

#[cfg(test)]
mod tests {
    use super::harness::{deliver_whole, Conversation, Recorder};
    use super::*;

    #[test]
    fn tee_feeds_both_and_wants_data_while_either_does() {
        struct Refuses;
        impl StreamConsumer for Refuses {
            fn on_chunk(&mut self, _: Chunk<'_>, _: &ChunkInfo) {}
            fn on_close(&mut self, _: CloseReason, _: Timestamp, _: FrameRef) {}
            fn wants_data(&self) -> bool {
                false
            }
        }
        let mut tee = Tee(Recorder::default(), Recorder::default());
        deliver_whole(&mut tee, &Conversation::new().client("hi").server("yo"));
        assert_eq!(tee.0, tee.1);
        assert_eq!(tee.0.data(Dir::HiToLo), b"yo");
        assert!(tee.0.closed.is_some());
        assert!(Tee(Refuses, Recorder::default()).wants_data());
        assert!(!Tee(Refuses, Refuses).wants_data());
    }
}
