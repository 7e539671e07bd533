//! Criterion bench of the whole pipeline (read, decode, shard, reassemble,
//! detect and decode IM, merge) on a generated mixed capture: IRC, XMPP and
//! non-IM (HTTP-like) flows interleaved, some with reordered, duplicated and
//! lost segments, at 1 and 2 threads. The large-capture figures (1 GB, 1M
//! SYNs, peak RSS) come from `cargo bench --bench pipeline`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use imscan::capture::CaptureWarning;
use imscan::engine::{self, EngineConfig, EngineOutput};
use imscan::event::Event;
use imscan::time::Timestamp;
use support::packet::{Conversation, Side};
use support::pcapfile::PcapFile;

/// Conversations of each kind in the capture.
const FLOWS: usize = 300;

struct Count(u64, [u64; 6]);

impl EngineOutput for Count {
    fn event(&mut self, ev: Event) {
        self.0 += 1;
        self.1[ev.protocol as usize] += 1;
    }
    fn warning(&mut self, _w: &CaptureWarning) {}
}

fn addr(s: String) -> SocketAddr {
    s.parse().expect("bench address")
}

fn conversation(i: usize, kind: usize) -> Conversation {
    let client = addr(format!(
        "10.{kind}.{}.{}:{}",
        i / 250,
        i % 250 + 1,
        30_000 + i
    ));
    let port = [6667, 5222, 80][kind];
    let server = addr(format!("192.0.2.{}:{port}", kind + 1));
    let mut c = Conversation::new(client, server).start_at(
        Timestamp::from_secs_nanos(1_700_000_000, (i * 7 + kind) as u32 * 1000),
        1_000_000,
    );
    c.handshake();
    if kind == 1 {
        let open = "<?xml version='1.0'?><stream:stream to='example.org' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
        c.send(Side::Client, open.as_bytes(), 1460);
        let reply = format!("<?xml version='1.0'?><stream:stream from='example.org' id='s{i}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
        c.send(Side::Server, reply.as_bytes(), 1460);
    }
    for round in 0..40 {
        let (up, down) = match kind {
            0 => (
                format!("PRIVMSG #room{} :line {round} of flow {i}, nothing special\r\n", i % 5),
                format!(":peer{round}!u@h PRIVMSG user{i} :answer {round} to you\r\n"),
            ),
            1 => (
                format!("<message to='bob@example.org' type='chat' id='m{round}'><body>message {round} from flow {i}</body></message>"),
                format!("<message from='bob@example.org/x' to='u{i}@example.org' type='chat'><body>reply {round}</body></message>"),
            ),
            _ => (
                format!("GET /page/{round} HTTP/1.1\r\nHost: example.org\r\n\r\n"),
                format!("HTTP/1.1 200 OK\r\nContent-Length: 600\r\n\r\n{}", "x".repeat(600)),
            ),
        };
        c.send(Side::Client, up.as_bytes(), 1460);
        c.send(Side::Server, down.as_bytes(), 1460);
    }
    c.close();
    // Every tenth flow: one reordering, one retransmission, one loss.
    if i % 10 == 0 {
        c.swap(5, 6).duplicate(9).drop_segment(20);
    }
    c
}

fn mixed_capture(path: &std::path::Path) -> u64 {
    let mut frames: Vec<_> = (0..FLOWS)
        .flat_map(|i| (0..3).map(move |kind| (i, kind)))
        .flat_map(|(i, kind)| conversation(i, kind).frames())
        .collect();
    frames.sort_by_key(|(ts, _, _)| *ts);
    let mut file = PcapFile::new(false, true, 1, 65_535);
    for (ts, data, _) in &frames {
        file.record(*ts, data, data.len() as u32);
    }
    file.write_to(path).expect("write bench capture");
    std::fs::metadata(path).expect("bench capture").len()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mixed.pcap");
    let bytes = mixed_capture(&path);
    let inputs = [path.to_string_lossy().into_owned()];
    // The capture must decode as intended: IRC and XMPP events both ways.
    let mut probe = Count(0, [0; 6]);
    engine::run(&inputs, &EngineConfig::default(), &mut probe).expect("engine run");
    assert!(
        probe.0 > (FLOWS * 2 * 40) as u64,
        "only {} events: {:?}",
        probe.0,
        probe.1
    );
    let mut g = c.benchmark_group("pipeline_mixed");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(bytes));
    for threads in [1, 2] {
        let config = EngineConfig {
            threads,
            ..EngineConfig::default()
        };
        g.bench_function(format!("threads_{threads}"), |b| {
            b.iter(|| {
                let mut out = Count(0, [0; 6]);
                engine::run(&inputs, &config, &mut out).expect("engine run");
                black_box(out.0)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
