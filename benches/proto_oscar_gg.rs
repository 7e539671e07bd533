//! OSCAR and Gadu-Gadu decoding throughput: one long generated all-chat
//! conversation per protocol (messages both ways, typing notices, HTML and
//! UTF-16 text for OSCAR, GG 8 and GG 11 messages for Gadu-Gadu), delivered
//! to a `FlowDecoder` in 1448-byte chunks as the reassembler would. The
//! throughput is in stream bytes; events are drained after every 32 chunks
//! as the engine drains after a batch (see `chat_bench`).

#[path = "../tests/support/mod.rs"]
mod support;
use support::oscar::{flap, snac, tlv};

#[path = "chat_bench/mod.rs"]
mod chat_bench;
use chat_bench::cpu_time_report;

use std::hint::black_box;

use criterion::{criterion_group, Criterion, Throughput};

/// Stream bytes per protocol: larger than the caches.
const STREAM_BYTES: usize = 32 << 20;
const MSS: usize = 1448;

fn icbm(subtype: u16, peer: &str, charset: u16, text: &[u8]) -> Vec<u8> {
    let mut d = b"12345678".to_vec();
    d.extend_from_slice(&[0, 1, peer.len() as u8]);
    d.extend_from_slice(peer.as_bytes());
    if subtype == 7 {
        d.extend_from_slice(&[0, 0, 0, 1]);
        d.extend(tlv(1, &[0, 0x50]));
    }
    let mut f = vec![0x05, 0x01, 0x00, 0x01, 0x01, 0x01, 0x01];
    f.extend_from_slice(&((text.len() + 4) as u16).to_be_bytes());
    f.extend_from_slice(&charset.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(text);
    d.extend(tlv(2, &f));
    snac(4, subtype, &d)
}

/// (client → server, server → client) byte streams of an OSCAR BOS session.
fn oscar_streams() -> (Vec<u8>, Vec<u8>) {
    let mut c = flap(1, 0, &[0, 0, 0, 1, 0, 6, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
    let mut s = flap(1, 0, &[0, 0, 0, 1]);
    let out_text = b"<HTML><BODY><FONT FACE=\"Arial\">See you at the harbour at seven, bring the charts &amp; the tea.</FONT></BODY></HTML>";
    let in_text: Vec<u8> = "Sure \u{2014} zażółć gęślą jaźń, see you there!"
        .encode_utf16()
        .flat_map(|u| u.to_be_bytes())
        .collect();
    let mut seq = [1u16, 1u16];
    while c.len() + s.len() < STREAM_BYTES {
        let mut typing = vec![0u8; 8];
        typing.extend_from_slice(&[0, 1, 9]);
        typing.extend_from_slice(b"461758769");
        typing.extend_from_slice(&[0, 2]);
        c.extend(flap(2, seq[0], &snac(4, 0x14, &typing)));
        c.extend(flap(
            2,
            seq[0].wrapping_add(1),
            &icbm(6, "461758769", 0, out_text),
        ));
        seq[0] = seq[0].wrapping_add(2);
        s.extend(flap(2, seq[1], &icbm(7, "461758769", 2, &in_text)));
        seq[1] = seq[1].wrapping_add(1);
    }
    (c, s)
}

fn gg_packet(t: u32, body: &[u8]) -> Vec<u8> {
    let mut v = t.to_le_bytes().to_vec();
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// (client → server, server → client) byte streams of a GG session mixing
/// GG 8 and GG 11 messages and typing notices.
fn gg_streams() -> (Vec<u8>, Vec<u8>) {
    let mut login = 1_234_567u32.to_le_bytes().to_vec();
    login.extend_from_slice(&[0u8; 120]);
    let mut c = gg_packet(0x31, &login);
    let mut s = gg_packet(0x01, &[1, 2, 3, 4]);
    let html = "<span style=\"color:#000000\">Cześć! Spotkajmy się o siódmej przy przystani, weź mapy.</span>";
    let plain = b"Czesc! Spotkajmy sie o siodmej przy przystani, wez mapy.";
    let mut m80 = 7_654_321u32.to_le_bytes().to_vec();
    m80.extend_from_slice(&[0, 0, 0, 0, 8, 0, 0, 0]);
    let off_plain = 20 + html.len() + 1;
    m80.extend_from_slice(&(off_plain as u32).to_le_bytes());
    m80.extend_from_slice(&((off_plain + plain.len() + 1) as u32).to_le_bytes());
    m80.extend_from_slice(html.as_bytes());
    m80.push(0);
    m80.extend_from_slice(plain);
    m80.push(0);
    let send80 = gg_packet(0x2D, &m80);
    let text = "Dobrze, będę! Пока, до вечера. Bis später!";
    let mut m110 = vec![0x0A, 9, 0, 7];
    m110.extend_from_slice(b"7654321");
    m110.extend_from_slice(&[0x10, 8, 0x18, 5, 0x25, 0, 0, 0, 0]);
    m110.push(0x2A);
    m110.push(text.len() as u8);
    m110.extend_from_slice(text.as_bytes());
    let x = format!("<span>{text}</span>");
    m110.push(0x32);
    m110.push(x.len() as u8);
    m110.extend_from_slice(x.as_bytes());
    let recv110 = gg_packet(0x7E, &m110);
    let mut typing = 5u16.to_le_bytes().to_vec();
    typing.extend_from_slice(&7_654_321u32.to_le_bytes());
    let typing = gg_packet(0x59, &typing);
    while c.len() + s.len() < STREAM_BYTES {
        c.extend_from_slice(&typing);
        c.extend_from_slice(&send80);
        s.extend_from_slice(&typing);
        s.extend_from_slice(&recv110);
    }
    (c, s)
}

/// Feed both directions in MSS-sized chunks, alternating; returns the event count.
fn decode(c2s: &[u8], s2c: &[u8], server: &str) -> usize {
    chat_bench::decode(c2s, s2c, "10.0.0.1:40000", server, MSS)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("proto");
    g.sample_size(10);
    let (oc, os) = oscar_streams();
    g.throughput(Throughput::Bytes((oc.len() + os.len()) as u64));
    g.bench_function("oscar_chat", |b| {
        b.iter(|| black_box(decode(&oc, &os, "10.0.0.2:5190")))
    });
    let (gc, gs) = gg_streams();
    g.throughput(Throughput::Bytes((gc.len() + gs.len()) as u64));
    g.bench_function("gadugadu_chat", |b| {
        b.iter(|| black_box(decode(&gc, &gs, "10.0.0.2:8074")))
    });
    g.finish();
}

fn cpu_times() {
    let (oc, os) = oscar_streams();
    cpu_time_report("oscar_chat", oc.len() + os.len(), || {
        decode(&oc, &os, "10.0.0.2:5190")
    });
    let (gc, gs) = gg_streams();
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
