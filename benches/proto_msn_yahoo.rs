//! MSN and YMSG decoding throughput: an all-chat byte stream (text messages
//! both ways, typing notifications) cut into 1460-byte chunks and fed through
//! the proto framework's `FlowDecoder`, as the reassembler would hand it over.
//! Throughput is in stream bytes. The HTTP gateway is measured the same way.

#[path = "chat_bench/mod.rs"]
mod chat_bench;
use chat_bench::cpu_time_report;

use std::hint::black_box;

use criterion::{criterion_group, Criterion, Throughput};

/// About 32 MB per direction pair: larger than the caches.
const STREAM_BYTES: usize = 32 << 20;
const MSS: usize = 1460;

fn mime_text(t: &str) -> String {
    format!("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nX-MMS-IM-Format: FN=Segoe%20UI; EF=; CO=0; CS=0; PF=0\r\n\r\n{t}")
}

/// (from_client, bytes) for an MSNP switchboard chat of about `total` bytes.
fn msn_stream(total: usize) -> (Vec<u8>, Vec<u8>) {
    let mut c = b"USR 1 alice@hotmail.com 1234.5678.9012\r\n".to_vec();
    let mut s = b"USR 1 OK alice@hotmail.com Alice\r\nJOI bob@hotmail.com Bob 0\r\n".to_vec();
    let typing = "MIME-Version: 1.0\r\nContent-Type: text/x-msmsgscontrol\r\nTypingUser: alice@hotmail.com\r\n\r\n\r\n";
    let mut i = 2u64;
    while c.len() + s.len() < total {
        let out = mime_text(&format!(
            "message number {i}, which says something of ordinary length"
        ));
        c.extend_from_slice(format!("MSG {i} U {}\r\n{typing}", typing.len()).as_bytes());
        c.extend_from_slice(format!("MSG {i} N {}\r\n{out}", out.len()).as_bytes());
        let inc = mime_text(&format!("reply {i}: sure, sounds good to me"));
        s.extend_from_slice(format!("MSG bob@hotmail.com Bob {}\r\n{inc}", inc.len()).as_bytes());
        i += 1;
    }
    (c, s)
}

fn ymsg(service: u16, pairs: &[(u32, &[u8])]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (k, v) in pairs {
        payload.extend_from_slice(k.to_string().as_bytes());
        payload.extend_from_slice(&[0xC0, 0x80]);
        payload.extend_from_slice(v);
        payload.extend_from_slice(&[0xC0, 0x80]);
    }
    let mut p = b"YMSG\x00\x10\x00\x00".to_vec();
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&service.to_be_bytes());
    p.extend_from_slice(&[0x5A, 0x55, 0xAA, 0x56, 0, 0x42, 0x13, 0x37]);
    p.extend_from_slice(&payload);
    p
}

fn yahoo_stream(total: usize) -> (Vec<u8>, Vec<u8>) {
    let mut c = ymsg(0x57, &[(1, b"alice_y")]);
    let mut s = Vec::new();
    let mut i = 0u64;
    while c.len() + s.len() < total {
        let t = format!("message number {i}, which says something of ordinary length");
        c.extend_from_slice(&ymsg(
            0x4B,
            &[
                (49, b"TYPING"),
                (1, b"alice_y"),
                (14, b" "),
                (13, b"1"),
                (5, b"bob_y"),
            ],
        ));
        c.extend_from_slice(&ymsg(
            6,
            &[
                (1, b"alice_y"),
                (5, b"bob_y"),
                (97, b"1"),
                (14, t.as_bytes()),
            ],
        ));
        let r = format!("reply {i}: sure, sounds good to me");
        s.extend_from_slice(&ymsg(
            6,
            &[
                (4, b"bob_y"),
                (5, b"alice_y"),
                (97, b"1"),
                (14, r.as_bytes()),
            ],
        ));
        i += 1;
    }
    (c, s)
}

fn gateway_stream(total: usize) -> (Vec<u8>, Vec<u8>) {
    let (mc, ms) = msn_stream(total);
    let wrap_req = |body: &[u8]| {
        let mut v = format!("POST /gateway/gateway.dll?SessionID=1234.5 HTTP/1.1\r\nContent-Type: application/x-msn-messenger\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        v.extend_from_slice(body);
        v
    };
    let wrap_resp = |body: &[u8]| {
        let mut v = format!("HTTP/1.1 200 OK\r\nX-MSN-Messenger: SessionID=1234.6; GW-IP=1.2.3.4\r\nContent-Type: application/x-msn-messenger\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        v.extend_from_slice(body);
        v
    };
    let c: Vec<u8> = mc.chunks(4000).flat_map(wrap_req).collect();
    let s: Vec<u8> = ms.chunks(4000).flat_map(wrap_resp).collect();
    (c, s)
}

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
