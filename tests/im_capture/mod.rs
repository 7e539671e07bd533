//! Generated and real captures for the MSN and Yahoo tests: read a capture back (Ethernet, IPv4), hand each TCP flow to a
//! `FlowDecoder` in sequence order (first copy of a byte wins, holes become
//! gaps), and compare the events with a checked-in expected table
//! (`frame timestamp src dst event sender recipient text`, the truth-file
//! format). Test-only code; it panics on what it does not expect.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use imscan::capture::FrameRef;
use imscan::event::{Event, FlowId};
use imscan::net::{Endpoint, FlowKey, Transport};
use imscan::proto::{FlowDecoder, FlowStart, ProtoConfig};
use imscan::tcp::{Chunk, ChunkFlags, ChunkInfo, CloseReason, StreamConsumer};
use imscan::time::Timestamp;

/// One TCP segment read from a capture.
pub struct Segment {
    pub frame: u64,
    pub ts: Timestamp,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub syn: bool,
    pub payload: Vec<u8>,
}

pub fn read_pcap(data: &[u8]) -> Vec<Segment> {
    let (_, cap) = pcap_parser::pcap::parse_pcap(data).expect("pcap");
    let mut out = Vec::new();
    for (i, b) in cap.blocks.iter().enumerate() {
        let p = etherparse::SlicedPacket::from_ethernet(b.data).expect("ethernet");
        let (src, dst) = match p.net.expect("ip") {
            etherparse::NetSlice::Ipv4(v4) => (
                IpAddr::V4(v4.header().source_addr()),
                IpAddr::V4(v4.header().destination_addr()),
            ),
            _ => panic!("IPv4 only"),
        };
        let Some(etherparse::TransportSlice::Tcp(tcp)) = p.transport else {
            continue;
        };
        out.push(Segment {
            frame: i as u64 + 1,
            ts: Timestamp::from_secs_nanos(i64::from(b.ts_sec), b.ts_usec * 1000),
            src: SocketAddr::new(src, tcp.source_port()),
            dst: SocketAddr::new(dst, tcp.destination_port()),
            seq: tcp.sequence_number(),
            syn: tcp.syn(),
            payload: tcp.payload().to_vec(),
        });
    }
    out
}

fn endpoint(a: SocketAddr) -> Endpoint {
    Endpoint {
        ip: a.ip(),
        port: a.port(),
    }
}

/// Decode every TCP flow of a capture; events of all flows in merge order.
pub fn decode_capture(data: &[u8]) -> Vec<Event> {
    let segs = read_pcap(data);
    struct F {
        dec: FlowDecoder,
        next: BTreeMap<SocketAddr, u32>,
        midstream: bool,
    }
    let mut flows: BTreeMap<FlowKey, F> = BTreeMap::new();
    for s in &segs {
        let (key, dir) = FlowKey::new(Transport::Tcp, endpoint(s.src), endpoint(s.dst));
        let f = flows.entry(key).or_insert_with(|| {
            let client_dir = s.syn.then_some(dir);
            F {
                dec: FlowDecoder::new(
                    Arc::new(ProtoConfig::default()),
                    FlowStart {
                        key,
                        flow: FlowId(FrameRef {
                            source: 0,
                            index: s.frame,
                        }),
                        source: 0,
                        client_dir,
                    },
                ),
                next: BTreeMap::new(),
                midstream: !s.syn,
            }
        });
        if s.syn {
            f.next.insert(s.src, s.seq.wrapping_add(1));
            continue;
        }
        if s.payload.is_empty() {
            continue;
        }
        let want = *f.next.entry(s.src).or_insert(s.seq);
        let frame = FrameRef {
            source: 0,
            index: s.frame,
        };
        let info = ChunkInfo {
            dir,
            ts: s.ts,
            frame,
            first_frame: frame,
            offset: 0,
            flags: ChunkFlags {
                midstream: f.midstream,
                ..ChunkFlags::default()
            },
        };
        let ahead = s.seq.wrapping_sub(want);
        if ahead != 0 && ahead < 1 << 30 {
            // Bytes between `want` and this segment were never captured.
            f.dec.on_chunk(Chunk::Gap(u64::from(ahead)), &info);
        }
        let skip = want.wrapping_sub(s.seq) as usize;
        let skip = if ahead != 0 && ahead < 1 << 30 {
            0
        } else {
            skip
        };
        if skip >= s.payload.len() {
            continue;
        }
        f.next
            .insert(s.src, s.seq.wrapping_add(s.payload.len() as u32));
        f.dec.on_chunk(Chunk::Data(&s.payload[skip..]), &info);
    }
    let mut events = Vec::new();
    let mut facts = Vec::new();
    for (_, mut f) in flows {
        f.dec.on_close(
            CloseReason::EndOfInput,
            Timestamp::default(),
            FrameRef::default(),
        );
        f.dec.drain(&mut events, &mut facts);
    }
    events.sort_by_key(|e| e.merge_key());
    events
}

/// An event as a truth-file row.
pub fn row(e: &Event) -> String {
    let local = e.local_id_str().unwrap_or("?");
    let (src, dst, sender, recipient) = if e.outgoing {
        (
            e.client,
            e.server,
            e.sender.as_deref().unwrap_or(local),
            e.remote_id.as_str(),
        )
    } else {
        (
            e.server,
            e.client,
            e.sender.as_deref().unwrap_or(e.remote_id.as_str()),
            local,
        )
    };
    let recipient = if e.group {
        e.remote_id.as_str()
    } else {
        recipient
    };
    let text = match e.kind {
        imscan::event::Kind::File => format!(
            "{} {} bytes",
            e.file_name.as_deref().unwrap_or(""),
            e.file_size.map(|n| n.to_string()).unwrap_or_default()
        ),
        _ => e.text.clone().unwrap_or_default(),
    };
    let text = text
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\t', "\\t");
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        e.frames.1,
        e.time.epoch_micros_string(),
        src,
        dst,
        e.kind.name(),
        sender,
        recipient,
        text
    )
}

pub const HEADER: &str = "frame\ttimestamp\tsrc\tdst\tevent\tsender\trecipient\ttext";

/// Compare generated capture bytes and decoded rows with the checked-in
/// fixture `<dir>/<name>.pcap` and `<name>.expected.tsv`; with
/// `IMSCAN_REGEN_FIXTURES=1` write them instead.
pub fn check_fixture(dir: &str, name: &str, capture: &[u8]) -> Vec<Event> {
    let root = env!("CARGO_MANIFEST_DIR");
    let pcap_path = format!("{root}/{dir}/{name}.pcap");
    let tsv_path = format!("{root}/{dir}/{name}.expected.tsv");
    let events = decode_capture(capture);
    let mut table = String::from(HEADER);
    table.push('\n');
    for e in &events {
        table.push_str(&row(e));
        table.push('\n');
    }
    if std::env::var_os("IMSCAN_REGEN_FIXTURES").is_some() {
        std::fs::write(&pcap_path, capture).unwrap();
        std::fs::write(&tsv_path, &table).unwrap();
    }
    let on_disk = std::fs::read(&pcap_path).unwrap_or_else(|_| panic!("missing {pcap_path}"));
    assert!(
        on_disk == capture,
        "{pcap_path} is stale: regenerate with IMSCAN_REGEN_FIXTURES=1"
    );
    assert_eq!(
        table,
        std::fs::read_to_string(&tsv_path).unwrap(),
        "{tsv_path}"
    );
    check_outputs(dir, name, &events);
    events
}

/// Compare what the JSON Lines and IMSpector sinks make of `events` with the
/// checked-in `<dir>/<name>.expected.jsonl` and `<name>.imspector.txt`
/// (rewritten with `IMSCAN_REGEN_FIXTURES=1`). The input is named
/// `<dir>/<name>.pcap`, as on a command line run from the repository root.
pub fn check_outputs(dir: &str, name: &str, events: &[Event]) {
    let root = env!("CARGO_MANIFEST_DIR");
    let jsonl = render_jsonl(&format!("{dir}/{name}.pcap"), events);
    let tree = render_imspector(events);
    let jsonl_path = format!("{root}/{dir}/{name}.expected.jsonl");
    let tree_path = format!("{root}/{dir}/{name}.imspector.txt");
    if std::env::var_os("IMSCAN_REGEN_FIXTURES").is_some() {
        std::fs::write(&jsonl_path, &jsonl).unwrap();
        std::fs::write(&tree_path, &tree).unwrap();
    }
    assert_eq!(
        jsonl,
        std::fs::read_to_string(&jsonl_path).unwrap(),
        "{jsonl_path}"
    );
    assert_eq!(
        tree,
        std::fs::read_to_string(&tree_path).unwrap(),
        "{tree_path}"
    );
}

/// The events as the JSON Lines sink writes them (input named `input`).
pub fn render_jsonl(input: &str, events: &[Event]) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    let ctx = imscan::sink::SinkContext {
        inputs: vec![input.to_string()],
        ..Default::default()
    };
    let mut sink = imscan::sink::jsonl(Box::new(file.reopen().unwrap()), ctx);
    for e in events {
        sink.write(e).unwrap();
    }
    sink.finish().unwrap();
    drop(sink);
    std::fs::read_to_string(file.path()).unwrap()
}

/// The IMSpector log tree (UTC dates) the events make, flattened to
/// `== <path>` headers each followed by the file's lines, paths sorted.
pub fn render_imspector(events: &[Event]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut sink =
        imscan::sink::imspector(dir.path(), imscan::sink::ImspectorOptions::default()).unwrap();
    for e in events {
        sink.write(e).unwrap();
    }
    sink.finish().unwrap();
    drop(sink);
    flatten_tree(dir.path())
}

/// A log tree flattened to `== <path>` headers each followed by the file's
/// lines, paths sorted.
pub fn flatten_tree(root: &std::path::Path) -> String {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "imscan-manifest.json") {
                // The run manifest (arguments, paths, counters) is not a log.
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = String::new();
    for f in files {
        let rel = f.strip_prefix(root).unwrap();
        out.push_str(&format!("== {}\n", rel.display()));
        out.push_str(&String::from_utf8_lossy(&std::fs::read(&f).unwrap()));
    }
    out
}

/// Run the `imscan` binary from the repository root on `<fixture>.pcap` and
/// check that `-F jsonl` gives `<fixture>.expected.jsonl` and `-F imspector`
/// gives `<fixture>.imspector.txt`, at one, two and five threads; returns the
/// exit code (0 clean, 1 when the capture has damage such as lost segments).
pub fn check_binary(fixture: &str) -> i32 {
    let root = env!("CARGO_MANIFEST_DIR");
    let exe = env!("CARGO_BIN_EXE_imscan");
    let input = format!("{fixture}.pcap");
    let want_jsonl = std::fs::read_to_string(format!("{root}/{fixture}.expected.jsonl")).unwrap();
    let want_tree = std::fs::read_to_string(format!("{root}/{fixture}.imspector.txt")).unwrap();
    let mut codes = Vec::new();
    for threads in ["1", "2", "5"] {
        let out = std::process::Command::new(exe)
            .current_dir(root)
            .args(["-F", "jsonl", "--threads", threads, &input])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            want_jsonl,
            "{fixture} at {threads} threads; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        codes.push(out.status.code().unwrap_or(-1));
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().to_path_buf();
        let out = std::process::Command::new(exe)
            .current_dir(root)
            .args(["-F", "imspector", "--threads", threads, "-o"])
            .arg(&tree)
            .arg(&input)
            .output()
            .unwrap();
        assert!(
            out.status.code().unwrap_or(-1) <= 1,
            "{fixture}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            flatten_tree(&tree),
            want_tree,
            "{fixture} IMSpector tree at {threads} threads"
        );
    }
    assert!(codes.windows(2).all(|w| w[0] == w[1]));
    codes[0]
}
