//! Link/IP decoding throughput of `NetDecoder` on generated frames: a typical
//! mix (Ethernet/IPv4/TCP, some IPv6, some VLAN-tagged, a few UDP), and the
//! same mix read from an in-memory pcap with pcap-parser first (reading plus
//! decoding), and a worst case of bare 54-byte ACKs. Throughput is in bytes
//! of captured frames (or of the pcap file, for the read+decode bench).

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use imscan::capture::{Frame, LinkType};
use imscan::net::{NetConfig, NetDecoder, Packet};
use imscan::time::Timestamp;
use support::packet::{frame, ip_tcp, ip_udp, Link, TcpFields, ACK, PSH};

/// About 32 MB of frames: larger than the caches, so memory traffic counts.
const MIX_BYTES: usize = 32 << 20;

/// A small deterministic generator (xorshift), so every run decodes the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One generated frame: its bytes and link type.
type Generated = (Vec<u8>, LinkType);

/// The typical mix: per 100 frames, 40 bare ACKs, 45 full-size data segments,
/// 10 mid-size segments, 5 UDP; 10% IPv6 and 10% VLAN-tagged; 1000 flows.
fn typical_mix(total_bytes: usize) -> Vec<Generated> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let payload = vec![0x5au8; 1460];
    let mut out = Vec::new();
    let mut size = 0;
    while size < total_bytes {
        let r = rng.next();
        let flow = (r >> 8) % 1000;
        let v6 = r % 10 == 0;
        let tagged = (r >> 4) % 10 == 0;
        let (c, s): (SocketAddr, SocketAddr) = if v6 {
            (
                format!("[2001:db8::{}]:{}", flow + 1, 40_000 + flow)
                    .parse()
                    .expect("v6"),
                "[2001:db8:ffff::1]:443".parse().expect("v6"),
            )
        } else {
            (
                format!("10.0.{}.{}:{}", flow / 250, flow % 250 + 1, 40_000 + flow)
                    .parse()
                    .expect("v4"),
                "192.168.1.1:5190".parse().expect("v4"),
            )
        };
        let link = if tagged {
            Link::EthernetTagged(vec![(0x8100, 42)])
        } else {
            Link::Ethernet
        };
        let kind = (r >> 16) % 100;
        let f = TcpFields {
            sport: 0,
            dport: 0,
            seq: r as u32,
            ack: (r >> 32) as u32,
            flags: ACK,
            window: 512,
        };
        let ip = match kind {
            0..=39 => ip_tcp(s, c, &f, &[]),
            40..=84 => ip_tcp(
                c,
                s,
                &TcpFields {
                    flags: ACK | PSH,
                    ..f
                },
                &payload[..1460 - if v6 { 20 } else { 0 }],
            ),
            85..=94 => ip_tcp(c, s, &f, &payload[..(r >> 24) as usize % 600 + 1]),
            _ => ip_udp(c, s, &payload[..(r >> 24) as usize % 300 + 1]),
        };
        let bytes = frame(&link, &ip);
        size += bytes.len();
        out.push((bytes, link.link_type()));
    }
    out
}

fn bare_acks(total_bytes: usize) -> Vec<Generated> {
    let c: SocketAddr = "10.0.0.1:40000".parse().expect("v4");
    let s: SocketAddr = "10.0.0.2:5190".parse().expect("v4");
    let one = frame(
        &Link::Ethernet,
        &ip_tcp(c, s, &TcpFields::new(c.port(), s.port()), &[]),
    );
    (0..total_bytes / one.len())
        .map(|_| (one.clone(), LinkType::ETHERNET))
        .collect()
}

/// Frames laid end to end in one buffer, as a batch points into a memory map.
struct Laid {
    data: Vec<u8>,
    frames: Vec<(usize, usize, LinkType)>,
}

fn lay_out(gen: &[Generated]) -> Laid {
    let mut data = Vec::new();
    let mut frames = Vec::new();
    for (bytes, lt) in gen {
        frames.push((data.len(), bytes.len(), *lt));
        data.extend_from_slice(bytes);
    }
    Laid { data, frames }
}

/// A little-endian, nanosecond pcap of Ethernet frames, in memory.
fn pcap_bytes(gen: &[Generated]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_3c4du32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&262_144u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, (bytes, _)) in gen.iter().enumerate() {
        out.extend_from_slice(&(1_209_643_200u32 + (i / 1000) as u32).to_le_bytes());
        out.extend_from_slice(&((i % 1000) as u32 * 1000).to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

fn decode_all(laid: &Laid) -> u64 {
    let mut d = NetDecoder::new(NetConfig::default());
    let mut sum = 0u64;
    for (i, &(off, len, lt)) in laid.frames.iter().enumerate() {
        let f = Frame {
            source: 0,
            index: i as u64 + 1,
            ts: Timestamp(i as i64),
            link_type: lt,
            data: &laid.data[off..off + len],
            orig_len: len as u32,
        };
        if let Some(p) = d.decode(&f) {
            sum += match &p {
                Packet::Tcp(s) => s.payload.len() as u64 + u64::from(s.seq & 1),
                Packet::Udp(u) => u.payload.len() as u64,
            };
        }
    }
    black_box(d.stats().frames) + sum
}

fn read_and_decode(pcap: &[u8]) -> u64 {
    let mut d = NetDecoder::new(NetConfig::default());
    let mut rest = &pcap[24..];
    let mut index = 0u64;
    let mut sum = 0u64;
    while let Ok((next, block)) = pcap_parser::pcap::parse_pcap_frame(rest) {
        index += 1;
        let f = Frame {
            source: 0,
            index,
            ts: Timestamp::from_secs_nanos(i64::from(block.ts_sec), block.ts_usec),
            link_type: LinkType::ETHERNET,
            data: block.data,
            orig_len: block.origlen,
        };
        if let Some(p) = d.decode(&f) {
            sum += p.key().lo.port as u64;
        }
        rest = next;
    }
    black_box(d.stats().frames) + sum
}

fn bench_net(c: &mut Criterion) {
    let mix = typical_mix(MIX_BYTES);
    let laid = lay_out(&mix);
    let mut g = c.benchmark_group("net");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(laid.data.len() as u64));
    g.bench_function("decode_typical_mix", |b| b.iter(|| decode_all(&laid)));

    let pcap = pcap_bytes(&mix);
    g.throughput(Throughput::Bytes(pcap.len() as u64));
    g.bench_function("pcap_read_and_decode_typical_mix", |b| {
        b.iter(|| read_and_decode(&pcap))
    });

    let acks = lay_out(&bare_acks(MIX_BYTES / 4));
    g.throughput(Throughput::Bytes(acks.data.len() as u64));
    g.bench_function("decode_bare_acks", |b| b.iter(|| decode_all(&acks)));
    g.finish();
}

criterion_group!(benches, bench_net);
criterion_main!(benches);
