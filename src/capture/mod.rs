//! Stage 1, capture: turns input files (pcap, pcapng, gzip, stdin) into
//! batches of [`Frame`]s. It owns file reading, the memory map, frame numbering
//! and damage accounting for the container formats; it knows nothing about
//! link layers or protocols.

use std::sync::Arc;

use crate::time::Timestamp;

mod container;
mod damage;
#[cfg(feature = "live")]
pub mod live;
mod pcap;
mod pcapng;
mod reader;
mod source;

pub use container::{CaptureStats, MAX_BLOCK_LEN, MAX_FRAME_LEN};
pub use damage::{CaptureError, CaptureWarning, Damage, Recovery};
pub use reader::{CaptureReader, InputSummary, ReadOptions};

/// Index of an input in the capture set, in the order given on the command line.
pub type SourceId = u16;

/// A link-layer header type, as numbered by tcpdump.org `LINKTYPE_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkType(pub u32);

impl LinkType {
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    pub const RAW_12: LinkType = LinkType(12);
    pub const RAW_14: LinkType = LinkType(14);
    pub const RAW: LinkType = LinkType(101);
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);
}

/// Where a frame came from: which input and which 1-based frame number in it
/// (the number Wireshark shows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrameRef {
    pub source: SourceId,
    pub index: u64,
}

/// One captured frame, borrowed from its batch.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub source: SourceId,
    /// 1-based frame number within its input file.
    pub index: u64,
    /// Capture time. A pcapng Simple Packet Block carries none: its frame
    /// reuses the time of the previous frame of the file.
    pub ts: Timestamp,
    pub link_type: LinkType,
    /// The captured bytes (may be shorter than `orig_len` when snaplen cut it).
    pub data: &'a [u8],
    pub orig_len: u32,
}

impl Frame<'_> {
    pub fn frame_ref(&self) -> FrameRef {
        FrameRef {
            source: self.source,
            index: self.index,
        }
    }
}

/// Position of one frame inside a batch's bytes.
#[derive(Clone, Copy, Debug)]
pub struct FrameMeta {
    pub index: u64,
    pub ts: Timestamp,
    pub link_type: LinkType,
    pub orig_len: u32,
    /// Offset of the captured bytes in the batch data.
    pub offset: usize,
    pub len: u32,
}

/// The bytes a batch's frames point into: the memory map of a regular file
/// (zero copy) or a buffer filled from a stream (stdin, gzip).
#[derive(Clone)]
pub enum BatchData {
    Mapped(Arc<memmap2::Mmap>),
    Owned(Arc<Vec<u8>>),
}

impl BatchData {
    pub fn bytes(&self) -> &[u8] {
        match self {
            BatchData::Mapped(m) => &m[..],
            BatchData::Owned(v) => &v[..],
        }
    }
}

/// A run of consecutive frames of one input, cheap to send to another thread.
#[derive(Clone)]
pub struct Batch {
    pub source: SourceId,
    pub data: BatchData,
    pub frames: Vec<FrameMeta>,
    /// The capture clock at the end of this batch, when it ran past the last
    /// frame: a live capture sends an empty batch carrying the host's clock
    /// when the interface is quiet, so idle flows still close on time.
    /// `None` for files, where frame times are the only clock.
    pub clock: Option<Timestamp>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn frame(&self, i: usize) -> Frame<'_> {
        let m = &self.frames[i];
        let bytes = self.data.bytes();
        Frame {
            source: self.source,
            index: m.index,
            ts: m.ts,
            link_type: m.link_type,
            data: &bytes[m.offset..m.offset + m.len as usize],
            orig_len: m.orig_len,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Frame<'_>> + '_ {
        (0..self.frames.len()).map(move |i| self.frame(i))
    }

    /// Total captured bytes of the frames in this batch.
    pub fn captured_bytes(&self) -> u64 {
        self.frames.iter().map(|m| u64::from(m.len)).sum()
    }
}

/// Where the engine's batches come from: capture files read in order, or a
/// live capture handing over what it captured. The engine runs one loop over
/// either.
pub trait BatchSource: Send {
    /// The next batch, or `None` at the end of the input.
    fn next_batch(&mut self, max_frames: usize, max_bytes: usize) -> Option<Batch>;
    /// Damage found since the last call, in input order.
    fn take_warnings(&mut self) -> Vec<CaptureWarning> {
        Vec::new()
    }
    /// Input bytes consumed so far (drives a progress bar).
    fn consumed(&self) -> u64;
}

impl BatchSource for CaptureReader {
    fn next_batch(&mut self, max_frames: usize, max_bytes: usize) -> Option<Batch> {
        CaptureReader::next_batch(self, max_frames, max_bytes)
    }

    fn take_warnings(&mut self) -> Vec<CaptureWarning> {
        CaptureReader::take_warnings(self)
    }

    fn consumed(&self) -> u64 {
        self.stats().bytes_read
    }
}

/// Decides, frame by frame, whether a frame is analysed at all (`-f EXPR`
/// on capture files: a BPF program compiled by libpcap). Frames it rejects
/// are counted as deselected.
pub trait FrameFilter: Send + Sync + std::fmt::Debug {
    fn keep(&self, frame: &Frame<'_>) -> bool;
}
