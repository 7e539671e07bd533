//! MSN and YMSG decoding throughput: an all-chat byte stream (text messages
//! both ways, typing notifications) cut into 1460-byte chunks and fed through
//! the proto framework's `FlowDecoder`, as the reassembler would hand it over.
//! Throughput is in stream bytes. The HTTP gateway is measured the same way.

#[path = "chat_bench/mod.rs"]
mod chat_bench;
use chat_bench::cpu_time_report;

#[path = "chat_bench/streams.rs"]
mod streams;
use streams::{gateway_stream, msn_stream, yahoo_stream};

use std::hint::black_box;

use criterion::{criterion_group, Criterion, Throughput};

/// About 32 MB per direction pair: larger than the caches.
const STREAM_BYTES: usize = 32 << 20;
const MSS: usize = 1460;

/// Feed both directions in MSS-sized chunks, alternating; returns the event count.
fn decode(c: &[u8], s: &[u8], client: &str, server: &str) -> usize {
    chat_bench::decode(c, s, client, server, MSS)
}

/// Name, (client bytes, server bytes), client address, server address.
type Case = (&'static str, (Vec<u8>, Vec<u8>), &'static str, &'static str);

fn cases() -> [Case; 3] {
    [
        (
            "msn_switchboard",
            msn_stream(STREAM_BYTES),
            "10.0.0.5:1042",
            "207.46.26.167:1863",
        ),
        (
            "msn_http_gateway",
            gateway_stream(STREAM_BYTES),
            "10.0.0.5:3000",
            "65.54.239.140:80",
        ),
        (
            "ymsg",
            yahoo_stream(STREAM_BYTES),
            "10.0.0.9:2201",
            "66.163.181.170:5050",
        ),
    ]
}

fn bench(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("proto_msn_yahoo");
    g.sample_size(10);
    g.measurement_time(std::time::Duration::from_secs(8));
    let cases = cases();
    for (name, (c, s), client, server) in &cases {
        assert!(
            decode(c, s, client, server) > 100_000,
            "{name} decodes events"
        );
        g.throughput(Throughput::Bytes((c.len() + s.len()) as u64));
        g.bench_function(*name, |b| {
            b.iter(|| black_box(decode(c, s, client, server)))
        });
    }
    g.finish();
}

fn cpu_times() {
    for (name, (c, s), client, server) in cases() {
        cpu_time_report(name, c.len() + s.len(), || decode(&c, &s, client, server));
    }
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
