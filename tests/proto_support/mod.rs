//! A small driver for the proto tests: feeds chunks straight into
//! `FlowDecoder`s (no capture, net or engine), replays the per-segment test
//! vectors extracted from real captures (`fixtures/real/*.chunks.tsv`, see
//! `extract-chunks.sh`) through a minimal in-order reassembler, and compares
//! events with the captures' independently made truth files.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use imscan::capture::FrameRef;
use imscan::capture::{CaptureReader, ReadOptions};
use imscan::event::{Event, FlowId, Kind};
use imscan::net::{Dir, Endpoint, FlowKey, Transport};
use imscan::net::{NetConfig, NetDecoder, Packet};
use imscan::proto::{FlowDecoder, FlowStart, ProtoConfig, ProtoStats};
use imscan::tcp::{
    Chunk, ChunkFlags, ChunkInfo, CloseReason, FlowTable, StreamConsumer, TcpConfig,
};
use imscan::time::Timestamp;

pub fn ep(s: &str) -> Endpoint {
    let a: SocketAddr = s.parse().expect("test address");
    Endpoint {
        ip: a.ip(),
        port: a.port(),
    }
}

/// A decoder for the flow `client` → `server`; `syn` says whether the
/// handshake was seen (then the client direction is known).
pub struct Flow {
    pub dec: FlowDecoder,
    pub key: FlowKey,
    pub c2s: Dir,
    frame: u64,
    offset: [u64; 2],
    pub flags: ChunkFlags,
}

impl Flow {
    pub fn new(config: ProtoConfig, client: &str, server: &str, syn: bool) -> Flow {
        let (key, c2s) = FlowKey::new(Transport::Tcp, ep(client), ep(server));
        let start = FlowStart {
            key,
            flow: FlowId(FrameRef {
                source: 0,
                index: 1,
            }),
            source: 0,
            client_dir: syn.then_some(c2s),
        };
        Flow {
            dec: FlowDecoder::new(Arc::new(config), start),
            key,
            c2s,
            frame: 0,
            offset: [0; 2],
            flags: ChunkFlags {
                overlap_conflict: false,
                midstream: !syn,
            },
        }
    }

    pub fn dir(&self, client_sent: bool) -> Dir {
        if client_sent {
            self.c2s
        } else {
            self.c2s.reverse()
        }
    }

    /// Deliver `bytes` as one chunk carried by the next frame.
    pub fn data(&mut self, client_sent: bool, bytes: &[u8]) {
        self.frame += 1;
        let dir = self.dir(client_sent);
        let info = self.info(dir);
        self.offset[dir.index()] += bytes.len() as u64;
        self.dec.on_chunk(Chunk::Data(bytes), &info);
    }

    /// Deliver a gap of `len` bytes.
    pub fn gap(&mut self, client_sent: bool, len: u64) {
        self.frame += 1;
        let dir = self.dir(client_sent);
        let info = self.info(dir);
        self.offset[dir.index()] += len;
        self.dec.on_chunk(Chunk::Gap(len), &info);
    }

    fn info(&self, dir: Dir) -> ChunkInfo {
        let frame = FrameRef {
            source: 0,
            index: self.frame,
        };
        ChunkInfo {
            dir,
            ts: Timestamp::from_secs_nanos(1_700_000_000 + self.frame as i64, 0),
            frame,
            first_frame: frame,
            offset: self.offset[dir.index()],
            flags: self.flags,
        }
    }

    pub fn close(&mut self) {
        self.frame += 1;
        self.dec.on_close(
            CloseReason::EndOfInput,
            Timestamp::from_secs_nanos(1_700_000_000 + self.frame as i64, 0),
            FrameRef {
                source: 0,
                index: self.frame,
            },
        );
    }

    pub fn events(&mut self) -> Vec<Event> {
        let mut ev = Vec::new();
        let mut facts = Vec::new();
        self.dec.drain(&mut ev, &mut facts);
        ev
    }
}

/// Feed a whole conversation, each element (client_sent, bytes) cut into
/// pieces at the given `cuts` (byte offsets into that element), and return
/// the events.
pub fn run_split(
    config: &ProtoConfig,
    client: &str,
    server: &str,
    syn: bool,
    script: &[(bool, &[u8])],
    cut: impl Fn(usize, usize) -> Vec<usize>,
) -> Vec<Event> {
    let mut f = Flow::new(config.clone(), client, server, syn);
    for (i, (c, bytes)) in script.iter().enumerate() {
        let mut last = 0;
        for at in cut(i, bytes.len()) {
            if at > last && at < bytes.len() {
                f.data(*c, &bytes[last..at]);
                last = at;
            }
        }
        f.data(*c, &bytes[last..]);
    }
    f.close();
    f.events()
}

/// What every split must keep: the events without their frame numbers,
/// times and sequence (those follow the chunking by design).
pub fn essence(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{:?} out={} local={:?} remote={} group={} sender={:?} text={:?} enc={:?} raw={:?} file={:?}/{:?} client={} server={} flags={:?} lost={}",
                e.kind,
                e.outgoing,
                e.local_id,
                e.remote_id,
                e.group,
                e.sender,
                e.text,
                e.text_encoding,
                e.raw,
                e.file_name,
                e.file_size,
                e.client,
                e.server,
                e.flags,
                e.lost_bytes
            )
        })
        .collect()
}

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

fn unhex(s: &str) -> Vec<u8> {
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

/// One row of a `*.truth.tsv` file.
#[derive(Clone, Debug)]
pub struct TruthRow {
    pub frame: u64,
    /// Epoch seconds with 6 decimals, as written in the file.
    pub timestamp: String,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub event: String,
    pub sender: String,
    pub recipient: String,
    pub text: Vec<u8>,
    /// Set by a test when the tcp stage delivers this row's bytes only at a
    /// later frame (data waiting behind a hole is released when the hole is
    /// given up): the event's last frame is then that frame, its first frame
    /// still the one that carried the bytes.
    pub released_at: Option<u64>,
}

/// Undo the truth files' escaping (`\n`, `\t`, `\\`, `\xNN`).
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                b'x' if i + 3 < b.len() => {
                    out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap());
                    i += 4;
                    continue;
                }
                c => {
                    out.push(b'\\');
                    out.push(c);
                }
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

pub fn read_truth(tsv: &str) -> Vec<TruthRow> {
    tsv.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.splitn(8, '\t').collect();
            TruthRow {
                frame: f[0].parse().unwrap(),
                timestamp: f[1].to_owned(),
                src: f[2].parse().unwrap(),
                dst: f[3].parse().unwrap(),
                event: f[4].to_owned(),
                sender: f[5].to_owned(),
                recipient: f[6].to_owned(),
                text: unescape(f.get(7).copied().unwrap_or("")),
                released_at: None,
            }
        })
        .collect()
}

/// Does `e` carry `row`'s text? The decoded text, or the original bytes
/// (CTCP ACTION and DCC offers keep their wire form in `raw`), or the file
/// name of a file offer.
fn same_text(e: &Event, row: &TruthRow) -> bool {
    let text = e.text.as_deref().map(str::as_bytes);
    text == Some(&row.text[..])
        || e.raw.as_deref() == Some(&row.text[..])
        || (e.kind == Kind::File
            && e.file_name.as_deref().map(str::as_bytes) == Some(&row.text[..]))
        || e.kind == Kind::Typing
}

fn bare(j: &str) -> &str {
    j.split('/').next().unwrap_or(j)
}

/// Check every truth row of the `message`, `file` and `typing` kinds against
/// `events`: same frame, direction, kind, text and ids. Returns the rows
/// that no event matched and the events no row matched.
pub fn compare(events: &[Event], rows: &[TruthRow]) -> (Vec<TruthRow>, Vec<Event>) {
    let mut used = vec![false; events.len()];
    let mut missing = Vec::new();
    for row in rows {
        let kind = match row.event.as_str() {
            "message" => Kind::Message,
            "file" => Kind::File,
            "typing" => Kind::Typing,
            _ => continue,
        };
        let found = events.iter().enumerate().position(|(i, e)| {
            let at_frame = match row.released_at {
                Some(f) => e.frames == (row.frame, f),
                None => e.frames.1 == row.frame && e.time.epoch_micros_string() == row.timestamp,
            };
            if used[i] || !at_frame || e.kind != kind || !same_text(e, row) {
                return false;
            }
            let c2s = e.client == row.src && e.server == row.dst;
            let s2c = e.client == row.dst && e.server == row.src;
            if !(c2s || s2c) {
                return false;
            }
            let sender_ok = match &e.sender {
                Some(s) => s == &row.sender || (row.sender == "?" && s.is_empty()),
                None => row.sender == "?",
            };
            let recipient_ok = if e.group || c2s || e.outgoing {
                bare(&e.remote_id) == bare(&row.recipient)
            } else {
                e.local_id_str().map(bare) == Some(bare(&row.recipient))
            };
            sender_ok && recipient_ok
        });
        match found {
            Some(i) => used[i] = true,
            None => missing.push(row.clone()),
        }
    }
    let extra = events
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(e, _)| e.clone())
        .collect();
    (missing, extra)
}

/// Truth rows that are the server's copy of a line the same connection sent
/// (IRCv3 echo-message, MUC reflection): imscan drops those copies.
pub fn is_echo(row: &TruthRow, rows: &[TruthRow]) -> bool {
    rows.iter().any(|o| {
        o.src == row.dst && o.dst == row.src && o.frame < row.frame && o.text == row.text && {
            let r = bare(&o.recipient);
            r == bare(&row.recipient)
        }
    })
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
                table.segment(&seg, |nf| {
                    FlowDecoder::new(
                        config.clone(),
                        FlowStart {
                            key: nf.key,
                            flow: FlowId(nf.frame),
                            source: nf.frame.source,
                            client_dir: nf.client_dir,
                        },
                    )
                });
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

/// Generated fixtures: a scripted conversation written as a pcap with the
/// project's fixture generator (`tests/support`), run through the `imscan`
/// binary, and compared with the JSON Lines checked in next to it
/// (`<case>.expected.jsonl`). `IMSCAN_BLESS=1` rewrites both files; review
/// the diff before committing it.
pub mod generated {
    use super::*;
    use crate::support::packet::Conversation as Script;
    use crate::support::pcapfile::pcap;

    /// Write (bless) or check `fixtures/<dir>/<name>.pcap`, then run the
    /// `imscan` binary on it and check its JSON Lines against
    /// `<name>.expected.jsonl`. Returns the events read back from the output.
    pub fn check(dir: &str, name: &str, script: &Script) -> Vec<Event> {
        let frames = script.frames();
        let records: Vec<(Timestamp, &[u8], u32)> = frames
            .iter()
            .map(|(ts, data, _)| (*ts, &data[..], data.len() as u32))
            .collect();
        let bytes = pcap(1, &records);
        let rel = format!("fixtures/{dir}/{name}.pcap");
        let path = format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"));
        if bless() {
            std::fs::write(&path, &bytes).unwrap();
        } else {
            let on_disk = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(
                on_disk == bytes,
                "{path} is not what the script generates (IMSCAN_BLESS=1 to rewrite)"
            );
        }
        expect_jsonl(&rel, &format!("fixtures/{dir}/{name}.expected.jsonl"))
    }
}

/// `IMSCAN_BLESS` is set: rewrite expected files instead of checking them.
pub fn bless() -> bool {
    std::env::var_os("IMSCAN_BLESS").is_some()
}

/// Run the `imscan` binary from the crate root with `args`; its stdout.
pub fn imscan(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imscan"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run imscan");
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "imscan {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("JSON Lines are UTF-8")
}

/// `imscan -F jsonl <capture>` at one and at two threads (the output must
/// not depend on it), compared with (or, blessing, written to) `expected`
/// (paths relative to the crate root). Returns the events read back.
pub fn expect_jsonl(capture: &str, expected: &str) -> Vec<Event> {
    let one = imscan(&["-F", "jsonl", "--threads", "1", "-q", capture]);
    let two = imscan(&["-F", "jsonl", "--threads", "2", "-q", capture]);
    assert_eq!(one, two, "{capture}: output depends on the thread count");
    let path = format!("{}/{expected}", env!("CARGO_MANIFEST_DIR"));
    if bless() {
        std::fs::write(&path, &one).unwrap();
    } else {
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(want == one, "{capture}: JSON Lines differ from {expected} (IMSCAN_BLESS=1 to rewrite)\n--- got\n{one}");
    }
    events_from_jsonl(&one)
}

/// Read `imscan -F jsonl` output back into events (the fields JSON Lines
/// carry; `seq` and `source` are not in it and stay 0).
pub fn events_from_jsonl(jsonl: &str) -> Vec<Event> {
    use imscan::event::{EventFlags, LocalId, Protocol};
    use serde_json::Value;
    let str_of = |v: &Value| v.as_str().map(str::to_owned);
    jsonl
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON object per line");
            let time: jiff::Timestamp = v["time"].as_str().unwrap().parse().unwrap();
            let protocol = Protocol::from_name(v["protocol"].as_str().unwrap()).unwrap();
            let kind = Kind::ALL
                .into_iter()
                .find(|k| k.name() == v["kind"].as_str().unwrap())
                .unwrap();
            let addr = |k: &str| v[k].as_str().unwrap().parse::<SocketAddr>().unwrap();
            let mut e = Event::new(
                Timestamp(time.as_nanosecond() as i64),
                protocol,
                kind,
                v["outgoing"].as_bool().unwrap(),
                addr("client"),
                addr("server"),
            );
            e.local_id = match str_of(&v["local_id"]) {
                Some(s) => LocalId::Known(s),
                None => LocalId::Unknown,
            };
            e.remote_id = str_of(&v["remote_id"]).unwrap_or_default();
            e.group = v["group"].as_bool().unwrap();
            e.sender = str_of(&v["sender"]);
            e.text = str_of(&v["text"]);
            e.text_encoding = match v["text_encoding"].as_str() {
                Some("utf-8") => Some("utf-8"),
                Some("windows-1252") => Some("windows-1252"),
                Some(other) => panic!("unexpected text_encoding {other}"),
                None => None,
            };
            e.raw = v["raw"].as_str().map(unhex);
            e.file_name = str_of(&v["file_name"]);
            e.file_size = v["file_size"].as_u64();
            e.frames = (
                v["frames"][0].as_u64().unwrap(),
                v["frames"][1].as_u64().unwrap(),
            );
            let names: Vec<&str> = v["flags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            e.flags = EventFlags {
                gap_before: names.contains(&"gap_before"),
                overlap_conflict: names.contains(&"overlap_conflict"),
                midstream: names.contains(&"midstream"),
                decode_error: names.contains(&"decode_error"),
            };
            e.lost_bytes = v["lost_bytes"].as_u64().unwrap();
            e
        })
        .collect()
}
