//! What the three decoder benches share: feeding a generated conversation to
//! one `FlowDecoder` the way the tcp stage does, and the on-CPU time report
//! for a machine busy with other work. Included by each bench with `#[path]`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use imscan::capture::FrameRef;
use imscan::event::FlowId;
use imscan::net::{Endpoint, FlowKey, Transport};
use imscan::proto::{FlowDecoder, FlowStart, ProtoConfig};
use imscan::tcp::{Chunk, ChunkFlags, ChunkInfo, CloseReason, StreamConsumer};
use imscan::time::Timestamp;

fn endpoint(s: &str) -> Endpoint {
    let a: SocketAddr = s.parse().expect("bench address");
    Endpoint {
        ip: a.ip(),
        port: a.port(),
    }
}

/// Decode the client bytes `c` and server bytes `s` as one flow from `client`
/// to `server` (a SYN was seen), alternating `mss`-sized chunks, draining the
/// events every 32 frames as the engine drains after a batch; returns the
/// number of events.
pub fn decode(c: &[u8], s: &[u8], client: &str, server: &str, mss: usize) -> usize {
    let (key, client_dir) = FlowKey::new(Transport::Tcp, endpoint(client), endpoint(server));
    let mut dec = FlowDecoder::new(
        Arc::new(ProtoConfig::default()),
        FlowStart {
            key,
            flow: FlowId(FrameRef {
                source: 0,
                index: 1,
            }),
            source: 0,
            client_dir: Some(client_dir),
        },
    );
    let (mut events, mut facts) = (Vec::new(), Vec::new());
    let mut n = 0;
    let mut frame = 1u64;
    let mut chunks = [c.chunks(mss), s.chunks(mss)];
    let dirs = [client_dir, client_dir.reverse()];
    loop {
        let mut any = false;
        for side in 0..2 {
            if let Some(piece) = chunks[side].next() {
                any = true;
                frame += 1;
                let f = FrameRef {
                    source: 0,
                    index: frame,
                };
                let info = ChunkInfo {
                    dir: dirs[side],
                    ts: Timestamp(frame as i64 * 1000),
                    frame: f,
                    first_frame: f,
                    offset: 0,
                    flags: ChunkFlags::default(),
                };
                dec.on_chunk(Chunk::Data(piece), &info);
            }
        }
        if frame % 32 < 2 || !any {
            dec.drain_boxed(&mut events, &mut facts);
            n += events.len();
            events.clear();
            facts.clear();
        }
        if !any {
            break;
        }
    }
    let end = FrameRef {
        source: 0,
        index: frame,
    };
    dec.on_close(CloseReason::EndOfInput, Timestamp(frame as i64 * 1000), end);
    dec.drain_boxed(&mut events, &mut facts);
    n + events.len()
}

/// On-CPU nanoseconds of this thread so far, from `/proc/thread-self/schedstat`:
/// unlike wall time it does not grow when other processes share the cores.
fn thread_cpu_nanos() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// `PROTO_CPU_TIME=1 cargo bench --bench NAME`: each case decoded five
/// times on this thread, best on-CPU time. `PROTO_CPU_TIME=<part of a case
/// name>` runs only the matching cases. `PROTO_RUNS=N` decodes N times
/// instead of five, so that a profiler sees decoding rather than the
/// generation of the streams.
pub fn cpu_time_report(name: &str, bytes: usize, mut run: impl FnMut() -> usize) {
    let only = std::env::var("PROTO_CPU_TIME").unwrap_or_default();
    if only != "1" && !name.contains(only.as_str()) {
        return;
    }
    let mut best = u64::MAX;
    let mut events = 0;
    let runs: usize = std::env::var("PROTO_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    for _ in 0..runs.max(1) {
        let t0 = thread_cpu_nanos().unwrap_or(0);
        events = black_box(run());
        best = best.min(thread_cpu_nanos().unwrap_or(0).saturating_sub(t0));
    }
    let secs = best as f64 / 1e9;
    println!(
        "{name}: {bytes} bytes, {events} events, {:.1} ms on-CPU (best of {runs}): {:.0} MB/s, {:.0} MiB/s",
        secs * 1e3,
        bytes as f64 / secs / 1e6,
        bytes as f64 / secs / (1 << 20) as f64
    );
}
