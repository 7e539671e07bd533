//! Whole captures through the stages, for cross-stage tests: a capture file
//! through the real capture → net → tcp → proto chain on one thread
//! ([`pipeline`]), or a tshark test vector (`fixtures/real/*.chunks.tsv`,
//! see `extract-chunks.sh`) through a minimal in-order reassembler
//! ([`replay`]) when the capture is too large to keep. No merge stage:
//! identity tokens stay unresolved. Test-only code; it panics on what it
//! does not expect.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use imscan::capture::{CaptureReader, FrameRef, ReadOptions};
use imscan::event::{Event, FlowId};
use imscan::net::{Endpoint, FlowKey, NetConfig, NetDecoder, Packet, Transport};
use imscan::proto::{FlowDecoder, FlowStart, ProtoConfig, ProtoStats};
use imscan::tcp::{
    Chunk, ChunkFlags, ChunkInfo, CloseReason, FlowTable, NewFlow, StreamConsumer, TcpConfig,
};
use imscan::time::Timestamp;

/// One row of a `*.chunks.tsv` test vector.
struct Segment {
    frame: u64,
    ts: Timestamp,
    stream: u32,
    src: Endpoint,
    dst: Endpoint,
    flags: u16,
    seq: u32,
    payload: Vec<u8>,
}

fn parse_ts(s: &str) -> Timestamp {
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let mut nanos = frac.to_owned();
    nanos.truncate(9);
    while nanos.len() < 9 {
        nanos.push('0');
    }
    Timestamp::from_secs_nanos(secs.parse().unwrap(), nanos.parse().unwrap())
}

/// Bytes from lowercase or uppercase hex digits.
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn read_segments(tsv: &str) -> Vec<Segment> {
    tsv.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
            Segment {
                frame: f[0].parse().unwrap(),
                ts: parse_ts(f[1]),
                stream: f[2].parse().unwrap(),
                src: Endpoint {
                    ip: ip(f[3]),
                    port: f[4].parse().unwrap(),
                },
                dst: Endpoint {
                    ip: ip(f[5]),
                    port: f[6].parse().unwrap(),
                },
                flags: u16::from_str_radix(f[7].trim_start_matches("0x"), 16).unwrap(),
                seq: f[8].parse().unwrap(),
                payload: f.get(9).map(|p| unhex(p)).unwrap_or_default(),
            }
        })
        .collect()
}

/// Per flow of a replayed vector.
struct Replayed {
    dec: FlowDecoder,
    next: [Option<u32>; 2],
    midstream: bool,
}

/// The result of replaying a capture vector.
pub struct Replay {
    pub events: Vec<Event>,
    pub stats: ProtoStats,
    /// Protocol found per TCP stream index (None: not IM).
    pub detected: BTreeMap<u32, Option<imscan::event::Protocol>>,
}

/// Replay a capture vector through one `FlowDecoder` per TCP stream, with an
/// in-order reassembler: retransmitted bytes are dropped, holes become gaps.
pub fn replay(tsv: &str, config: ProtoConfig) -> Replay {
    let config = Arc::new(config);
    let mut flows: BTreeMap<u32, Replayed> = BTreeMap::new();
    let mut events = Vec::new();
    for s in read_segments(tsv) {
        let (key, dir) = FlowKey::new(Transport::Tcp, s.src, s.dst);
        let syn = s.flags & 0x02 != 0;
        let ack = s.flags & 0x10 != 0;
        let fl = flows.entry(s.stream).or_insert_with(|| Replayed {
            dec: FlowDecoder::new(
                config.clone(),
                FlowStart {
                    key,
                    flow: FlowId(FrameRef {
                        source: 0,
                        index: s.frame,
                    }),
                    source: 0,
                    client_dir: (syn && !ack).then_some(dir),
                },
            ),
            next: [None; 2],
            midstream: !syn || ack,
        });
        let di = dir.index();
        if syn {
            fl.next[di] = Some(s.seq.wrapping_add(1));
            continue;
        }
        if s.payload.is_empty() {
            continue;
        }
        let expected = *fl.next[di].get_or_insert(s.seq);
        let frame = FrameRef {
            source: 0,
            index: s.frame,
        };
        let diff = s.seq.wrapping_sub(expected) as i32;
        let mut payload = &s.payload[..];
        let info = ChunkInfo {
            dir,
            ts: s.ts,
            frame,
            first_frame: frame,
            offset: 0,
            flags: ChunkFlags {
                overlap_conflict: false,
                midstream: fl.midstream,
            },
        };
        if diff > 0 {
            fl.dec.on_chunk(Chunk::Gap(diff as u64), &info);
        } else if diff < 0 {
            let dup = (-diff) as usize;
            if dup >= payload.len() {
                continue;
            }
            payload = &payload[dup..];
        }
        fl.next[di] = Some(
            s.seq
                .wrapping_add(diff.min(0).unsigned_abs())
                .wrapping_add(payload.len() as u32),
        );
        fl.dec.on_chunk(Chunk::Data(payload), &info);
        let mut facts = Vec::new();
        fl.dec.drain(&mut events, &mut facts);
    }
    let mut stats = ProtoStats::default();
    let mut detected = BTreeMap::new();
    for (i, mut fl) in flows {
        detected.insert(i, fl.dec.protocol());
        fl.dec
            .on_close(CloseReason::EndOfInput, Timestamp(0), FrameRef::default());
        let mut facts = Vec::new();
        fl.dec.drain(&mut events, &mut facts);
        stats.merge(fl.dec.stats());
    }
    events.sort_by_key(|e| e.merge_key());
    Replay {
        events,
        stats,
        detected,
    }
}

/// Run a capture file through the real stages the engine will chain
/// (capture reader → net decoder → tcp flow table → one `FlowDecoder` per
/// flow), on one thread, and return the events in merge order with the
/// summed proto counters.
pub fn pipeline(path: &str, config: ProtoConfig) -> (Vec<Event>, ProtoStats) {
    let config = Arc::new(config);
    let mut reader = CaptureReader::open(path, 0, ReadOptions::default())
        .unwrap_or_else(|e| panic!("{path}: {e:?}"));
    let mut net = NetDecoder::new(NetConfig::default());
    let mut table: FlowTable<FlowDecoder> = FlowTable::new(TcpConfig::default());
    let mut events = Vec::new();
    let mut facts = Vec::new();
    let mut stats = ProtoStats::default();
    let mut last = FrameRef::default();
    while let Some(batch) = reader.next_batch(64, 1 << 20) {
        for frame in batch.iter() {
            last = frame.frame_ref();
            if let Some(Packet::Tcp(seg)) = net.decode(&frame) {
                table.segment(&seg, |nf| decoder_for(&config, nf));
            }
            table.advance(frame.ts, frame.frame_ref());
        }
        table.drain_touched(|d| d.drain(&mut events, &mut facts));
        for mut d in table.take_closed() {
            d.drain(&mut events, &mut facts);
            stats.merge(d.stats());
        }
    }
    table.finish(last);
    for mut d in table.take_closed() {
        d.drain(&mut events, &mut facts);
        stats.merge(d.stats());
    }
    events.sort_by_key(|e| e.merge_key());
    (events, stats)
}

/// The decoder the engine gives a flow the tcp stage has just seen.
pub fn decoder_for(config: &Arc<ProtoConfig>, nf: &NewFlow) -> FlowDecoder {
    FlowDecoder::new(
        config.clone(),
        FlowStart {
            key: nf.key,
            flow: FlowId(nf.frame),
            source: nf.frame.source,
            client_dir: nf.client_dir,
        },
    )
}
