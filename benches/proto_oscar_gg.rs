//! OSCAR and Gadu-Gadu decoding throughput: one long generated all-chat
//! conversation per protocol (messages both ways, typing notices, HTML and
//! UTF-16 text for OSCAR, GG 8 and GG 11 messages for Gadu-Gadu), delivered
//! to a `FlowDecoder` in 1448-byte chunks as the reassembler would. The
//! throughput is in stream bytes; events are drained after every 32 chunks
//! as the engine drains after a batch (see `chat_bench`).

#[path = "chat_bench/mod.rs"]
mod chat_bench;
use chat_bench::cpu_time_report;

#[path = "chat_bench/streams.rs"]
mod streams;
use streams::{gg_streams, oscar_streams};

use std::hint::black_box;

use criterion::{criterion_group, Criterion, Throughput};

/// Stream bytes per protocol: larger than the caches.
const STREAM_BYTES: usize = 32 << 20;
const MSS: usize = 1448;

/// Feed both directions in MSS-sized chunks, alternating; returns the event count.
fn decode(c2s: &[u8], s2c: &[u8], server: &str) -> usize {
    chat_bench::decode(c2s, s2c, "10.0.0.1:40000", server, MSS)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("proto");
    g.sample_size(10);
    let (oc, os) = oscar_streams(STREAM_BYTES);
    g.throughput(Throughput::Bytes((oc.len() + os.len()) as u64));
    g.bench_function("oscar_chat", |b| {
        b.iter(|| black_box(decode(&oc, &os, "10.0.0.2:5190")))
    });
    let (gc, gs) = gg_streams(STREAM_BYTES);
    g.throughput(Throughput::Bytes((gc.len() + gs.len()) as u64));
    g.bench_function("gadugadu_chat", |b| {
        b.iter(|| black_box(decode(&gc, &gs, "10.0.0.2:8074")))
    });
    g.finish();
}

fn cpu_times() {
    let (oc, os) = oscar_streams(STREAM_BYTES);
    cpu_time_report("oscar_chat", oc.len() + os.len(), || {
        decode(&oc, &os, "10.0.0.2:5190")
    });
    let (gc, gs) = gg_streams(STREAM_BYTES);
    cpu_time_report("gadugadu_chat", gc.len() + gs.len(), || {
        decode(&gc, &gs, "10.0.0.2:8074")
    });
}

criterion_group!(benches, bench);

fn main() {
    if std::env::var_os("PROTO_CPU_TIME").is_some() {
        cpu_times();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
