//! What each fuzz target does with its input. Shared, through `#[path]`, by
//! the cargo-fuzz targets (`tests/fuzz/fuzz_targets/`) and by the crash
//! replay in `tests/hostile.rs`, so an input the fuzzer found replays under a
//! plain `cargo test` exactly as it ran. Every function accepts any bytes;
//! it panics only when imscan does, or when an invariant it checks (budgets,
//! offsets, close-once) breaks. Inputs are read as a little script (see each
//! function) so the fuzzer reaches deep states: many segments, gaps, splits.

// Each target uses one of these functions; the replay test uses them all.
#![allow(dead_code)]

use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use imscan::capture::{CaptureReader, Frame, FrameRef, LinkType, ReadOptions, MAX_FRAME_LEN};
use imscan::event::{FlowId, Protocol};
use imscan::net::{
    Endpoint, FlowKey, NetConfig, NetDecoder, Packet, TcpFlags, TcpSegment, Transport,
};
use imscan::policy::acl::Acl;
use imscan::policy::badwords::Badwords;
use imscan::proto::{FlowDecoder, FlowStart, ProtoConfig, PROBE_LIMIT};
use imscan::tcp::harness::{deliver_at, harness_flow, random_cuts, Conversation, Part, Side};
use imscan::tcp::{Chunk, ChunkInfo, CloseReason, FlowTable, StreamConsumer, TcpConfig};
use imscan::time::Timestamp;

/// Bytes of a script, consumed front to back; reads past the end give zeros.
struct Script<'a> {
    data: &'a [u8],
}

impl<'a> Script<'a> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }
}

/// The pcap/pcapng reader over the input as a whole file (through the
/// streaming path `-` uses; gzip is recognised by its magic).
pub fn capture(data: &[u8]) {
    let opened = CaptureReader::open_reader(
        Cursor::new(data.to_vec()),
        "fuzz",
        0,
        ReadOptions { hash: true },
    );
    let Ok(mut reader) = opened else { return };
    let mut last_index = 0u64;
    while let Some(batch) = reader.next_batch(64, 1 << 20) {
        for frame in batch.iter() {
            assert!(
                frame.data.len() <= MAX_FRAME_LEN as usize,
                "frame over the cap"
            );
            assert!(frame.index > last_index, "frame numbers go forward");
            last_index = frame.index;
        }
        let _ = reader.take_warnings();
    }
    let _ = reader.finish();
}

/// Link types the net stage knows, then whatever the script names.
const LINKS: [LinkType; 10] = [
    LinkType::ETHERNET,
    LinkType::RAW,
    LinkType::NULL,
    LinkType::LOOP,
    LinkType::LINUX_SLL,
    LinkType::LINUX_SLL2,
    LinkType::IPV4,
    LinkType::IPV6,
    LinkType::RAW_12,
    LinkType::RAW_14,
];

/// Link and IP decoding with fragment reassembly. Script: one config byte
/// (bit 0: tiny fragment limits so eviction and caps are reached), then
/// frames of `[link selector][time step][len u16][bytes]`.
pub fn net(data: &[u8]) {
    let mut s = Script { data };
    let cfg = if s.u8() & 1 == 1 {
        NetConfig {
            max_fragments: 4,
            max_datagram: 2048,
            fragment_timeout_ns: 2 * Timestamp::NANOS_PER_SEC,
            max_reassemblies: 3,
        }
    } else {
        NetConfig::default()
    };
    let mut dec = NetDecoder::new(cfg);
    let mut ts = Timestamp::from_secs_nanos(1_000_000_000, 0);
    let mut index = 0u64;
    while !s.is_empty() {
        let sel = s.u8();
        let link_type = LINKS
            .get(usize::from(sel))
            .copied()
            .unwrap_or(LinkType(u32::from(sel)));
        ts = ts.saturating_add_nanos(i64::from(s.u8()) * 100_000_000);
        let len = usize::from(s.u16());
        let bytes = s.bytes(len);
        index += 1;
        let frame = Frame {
            source: 0,
            index,
            ts,
            link_type,
            data: bytes,
            orig_len: bytes.len() as u32,
        };
        if let Some(Packet::Tcp(seg)) = dec.decode(&frame) {
            assert!(
                seg.payload.len() <= 65_535,
                "segment larger than an IP datagram"
            );
        }
        assert!(
            dec.open_reassemblies() <= cfg.max_reassemblies,
            "fragment budget"
        );
    }
    dec.finish();
    assert_eq!(dec.open_reassemblies(), 0);
}

/// Checks what a reassembler promises a consumer, per direction: offsets
/// continue, no empty gap, nothing after the close, one close.
#[derive(Default)]
struct Promises {
    next: [u64; 2],
    closed: bool,
}

impl StreamConsumer for Promises {
    fn on_chunk(&mut self, chunk: Chunk<'_>, info: &ChunkInfo) {
        assert!(!self.closed, "chunk after close");
        let d = info.dir.index();
        assert_eq!(info.offset, self.next[d], "offsets continue");
        self.next[d] += match chunk {
            Chunk::Data(b) => b.len() as u64,
            Chunk::Gap(n) => {
                assert!(n > 0, "empty gap");
                n
            }
        };
    }

    fn on_close(&mut self, _reason: CloseReason, _ts: Timestamp, _frame: FrameRef) {
        assert!(!self.closed, "closed twice");
        self.closed = true;
    }
}

/// The TCP reassembler under a sequence of arbitrary segments on four
/// flows with small budgets. Script: one config byte, then 12-byte
/// segments `[flow/dir/kind][flags][seq u32][ack u32][len][time step]`.
pub fn tcp(data: &[u8]) {
    let mut s = Script { data };
    let c = s.u8();
    let cfg = TcpConfig {
        ooo_bytes_per_dir: 256 << (c & 3),
        total_buffered_bytes: 1024 << ((c >> 2) & 3),
        max_flows: 1 + usize::from((c >> 4) & 3),
        gap_window_ns: Timestamp::NANOS_PER_SEC,
        idle_timeout_ns: 20 * Timestamp::NANOS_PER_SEC,
    };
    let mut table: FlowTable<Promises> = FlowTable::new(cfg.clone());
    let mut ts = Timestamp::from_secs_nanos(1_000_000_000, 0);
    let mut last_seq = [[0u32; 2]; 4];
    let mut payload = Vec::new();
    let mut index = 0u64;
    let mut closed = 0usize;
    while !s.is_empty() {
        let b0 = s.u8();
        let flags = TcpFlags(s.u8());
        let raw_seq = s.u32();
        let ack = s.u32();
        let len = usize::from(s.u8()) * if b0 & 0x40 != 0 { 8 } else { 1 };
        ts = ts.saturating_add_nanos(i64::from(s.u8()) * 50_000_000);
        let flow = usize::from(b0 & 3);
        let lo = Endpoint {
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            port: 1000 + flow as u16,
        };
        let hi = Endpoint {
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            port: 6667,
        };
        let (src, dst) = if b0 & 4 == 0 { (lo, hi) } else { (hi, lo) };
        let (key, dir) = FlowKey::new(Transport::Tcp, src, dst);
        // Relative sequence numbers (bit 3) keep the fuzzer near the stream.
        let seq = if b0 & 8 != 0 {
            last_seq[flow][dir.index()].wrapping_add(raw_seq & 0xFFFF)
        } else {
            raw_seq
        };
        last_seq[flow][dir.index()] = seq.wrapping_add(len as u32);
        // Bytes follow the sequence number, so retransmissions agree unless
        // bit 4 asks for different bytes (an overlap conflict).
        let salt = if b0 & 0x10 != 0 { 0xA5 } else { 0 };
        payload.clear();
        payload.extend((0..len).map(|i| (seq.wrapping_add(i as u32) as u8) ^ salt));
        index += 1;
        let frame = FrameRef { source: 0, index };
        let seg = TcpSegment {
            key,
            dir,
            seq,
            ack,
            flags,
            window: 65_535,
            payload: std::borrow::Cow::Borrowed(&payload),
            frame,
            ts,
        };
        if b0 & 0x20 != 0 {
            table.advance(ts, frame);
        }
        table.segment(&seg, |_| Promises::default());
        assert!(
            table.buffered_bytes() <= cfg.total_buffered_bytes,
            "table budget"
        );
        assert!(table.len() <= cfg.max_flows, "flow budget");
        closed += table.take_closed().len();
    }
    table.finish(FrameRef {
        source: 0,
        index: index + 1,
    });
    for c in table.take_closed() {
        assert!(c.closed, "every flow is closed at the end");
        closed += 1;
    }
    assert_eq!(table.buffered_bytes(), 0);
    let _ = closed;
}

/// A decoder with a check after every chunk that its buffer stays bounded.
struct Bounded {
    decoder: FlowDecoder,
    largest_chunk: usize,
}

/// The largest unit cap of any protocol (MSN's: an HTTP-gateway head and
/// body plus slack).
const LARGEST_UNIT_CAP: usize = imscan::proto::msn::session::UNIT_CAP;

impl StreamConsumer for Bounded {
    fn on_chunk(&mut self, chunk: Chunk<'_>, info: &ChunkInfo) {
        if let Chunk::Data(b) = chunk {
            self.largest_chunk = self.largest_chunk.max(b.len());
        }
        self.decoder.on_chunk(chunk, info);
        let bound = 2 * (PROBE_LIMIT.max(LARGEST_UNIT_CAP) + self.largest_chunk);
        assert!(
            self.decoder.buffered_bytes() <= bound,
            "decoder holds {} bytes",
            self.decoder.buffered_bytes()
        );
        let (mut events, mut facts) = (Vec::new(), Vec::new());
        self.decoder.drain(&mut events, &mut facts);
    }

    fn on_close(&mut self, reason: CloseReason, ts: Timestamp, frame: FrameRef) {
        self.decoder.on_close(reason, ts, frame);
        let (mut events, mut facts) = (Vec::new(), Vec::new());
        self.decoder.drain(&mut events, &mut facts);
    }
}

/// One protocol's `FlowDecoder` driven through the chunk interface (the
/// test harness's conversation driver) with random gaps and splits.
/// Script: `[options][split seed]`, then parts `[head][len][bytes]` where
/// head bit 0 is the side, bits 1-2 == 3 make a gap (length u16, or u32
/// with bit 3), bit 3 on data multiplies the length by 64.
pub fn proto(protocol: Protocol, data: &[u8]) {
    let mut s = Script { data };
    let opts = s.u8();
    let seed = u64::from(s.u8());
    let mut conv = Conversation::new();
    while !s.is_empty() {
        let head = s.u8();
        let side = if head & 1 == 0 {
            Side::Client
        } else {
            Side::Server
        };
        if (head >> 1) & 3 == 3 {
            let len = if head & 8 != 0 {
                u64::from(s.u32())
            } else {
                u64::from(s.u16())
            };
            conv.parts.push(Part::Gap(side, len.max(1)));
        } else {
            let len = usize::from(s.u8()) * if head & 8 != 0 { 64 } else { 1 };
            conv.parts.push(Part::Data(side, s.bytes(len).to_vec()));
        }
    }
    let flow = harness_flow();
    let config = ProtoConfig {
        protocols: if opts & 1 != 0 {
            Protocol::ALL.to_vec()
        } else {
            vec![protocol]
        },
        ports_only: opts & 2 != 0,
        raw: opts & 4 != 0,
        carve_dir: None,
    };
    let start = FlowStart {
        key: flow.key,
        flow: FlowId(flow.frame),
        source: 0,
        client_dir: if opts & 8 != 0 { None } else { flow.client_dir },
    };
    let mut consumer = Bounded {
        decoder: FlowDecoder::new(Arc::new(config), start),
        largest_chunk: 0,
    };
    let cuts = random_cuts(conv.data_len(), seed);
    deliver_at(&mut consumer, &conv, &cuts);
    let _ = consumer.decoder.stats();
}

/// The badwords and ACL parsers. Script: `[which]` then the file's bytes;
/// what parses is then applied to the same bytes as text and ids.
pub fn policy(data: &[u8]) {
    let Some((&which, file)) = data.split_first() else {
        return;
    };
    if which & 1 == 0 {
        if let Ok((words, _notes)) = Badwords::parse(file, b'*') {
            for (start, end) in words.hits(file) {
                assert!(start <= end && end <= file.len(), "hit out of range");
            }
        }
    } else if let Ok(acl) = Acl::parse(file) {
        let text = String::from_utf8_lossy(file);
        let mut mid = text.len() / 2;
        while !text.is_char_boundary(mid) {
            mid -= 1;
        }
        let (local, remote) = text.split_at(mid);
        let _ = acl.decide(local, remote);
        let _ = acl.decide(remote, local);
    }
}
