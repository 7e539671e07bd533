//! Reassembler benches (criterion): in-order large flows (the zero-copy path,
//! target ≥ 3 GB/s on one core), heavy reordering, and a SYN flood of
//! 1 000 000 half-open flows within a flow budget (evictions counted).

use std::borrow::Cow;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use imscan::capture::FrameRef;
use imscan::net::{Dir, Endpoint, FlowKey, TcpFlags, TcpSegment, Transport};
use imscan::tcp::{Chunk, ChunkInfo, CloseReason, FlowTable, StreamConsumer, TcpConfig};
use imscan::time::Timestamp;

/// Counts delivered bytes: the cheapest consumer, so the reassembler is measured.
#[derive(Default)]
struct Count {
    bytes: u64,
    gaps: u64,
}

impl StreamConsumer for Count {
    fn on_chunk(&mut self, chunk: Chunk<'_>, _: &ChunkInfo) {
        match chunk {
            Chunk::Data(b) => self.bytes += b.len() as u64,
            Chunk::Gap(n) => self.gaps += n,
        }
    }
    fn on_close(&mut self, _: CloseReason, _: Timestamp, _: FrameRef) {}
}

const MSS: usize = 1448;

fn key(client: u32, port: u16) -> (FlowKey, Dir) {
    let c = Endpoint {
        ip: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + client)),
        port,
    };
    let s = Endpoint {
        ip: IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1)),
        port: 5190,
    };
    FlowKey::new(Transport::Tcp, c, s)
}

fn segment(key: (FlowKey, Dir), seq: u32, flags: u8, payload: &[u8], frame: u64) -> TcpSegment<'_> {
    TcpSegment {
        key: key.0,
        dir: key.1,
        seq,
        ack: 0,
        flags: TcpFlags(flags),
        window: 0,
        payload: Cow::Borrowed(payload),
        frame: FrameRef {
            source: 0,
            index: frame,
        },
        ts: Timestamp(frame as i64 * 1000),
    }
}

/// `flows` connections sending `per_flow` bytes each in MSS-sized segments,
/// interleaved round robin; every payload borrows from `data`.
fn in_order_segments(data: &[u8], flows: u32, per_flow: usize) -> Vec<TcpSegment<'_>> {
    let mut segs = Vec::new();
    let mut frame = 0u64;
    for f in 0..flows {
        frame += 1;
        segs.push(segment(
            key(f, 40000),
            1000 * f,
            TcpFlags::SYN,
            &data[..0],
            frame,
        ));
    }
    let mut off = 0;
    while off < per_flow {
        let end = (off + MSS).min(per_flow);
        for f in 0..flows {
            frame += 1;
            let seq = (1000 * f + 1).wrapping_add(off as u32);
            segs.push(segment(
                key(f, 40000),
                seq,
                TcpFlags::ACK,
                &data[off..end],
                frame,
            ));
        }
        off = end;
    }
    segs
}

fn run(segs: &[TcpSegment<'_>], cfg: &TcpConfig) -> FlowTable<Count> {
    let mut table = FlowTable::new(cfg.clone());
    for s in segs {
        table.segment(s, |_| Count::default());
    }
    table
}

fn in_order(c: &mut Criterion) {
    let total = 32 << 20;
    let data: Vec<u8> = (0..total).map(|i| i as u8).collect();
    let mut g = c.benchmark_group("reassembly");
    for flows in [1u32, 64] {
        let per = total / flows as usize;
        let segs = in_order_segments(&data, flows, per);
        g.throughput(Throughput::Bytes((per * flows as usize) as u64));
        g.bench_function(format!("in_order_{flows}_flows"), |b| {
            b.iter(|| {
                let mut t = run(&segs, &TcpConfig::default());
                let delivered: u64 = t.consumers_mut().map(|c| c.bytes).sum();
                assert_eq!(delivered, (per * flows as usize) as u64);
                black_box(t)
            })
        });
    }
    g.finish();
}

fn reordered(c: &mut Criterion) {
    let total = 8 << 20;
    let data: Vec<u8> = (0..total).map(|i| (i * 7) as u8).collect();
    let mut segs = in_order_segments(&data, 1, total);
    // Heavy reordering: every block of 8 data segments arrives reversed, and
    // every 16th segment is sent twice.
    let syn = segs.remove(0);
    for block in segs.chunks_mut(8) {
        block.reverse();
    }
    let mut sends = vec![syn];
    for (i, s) in segs.into_iter().enumerate() {
        if i % 16 == 0 {
            sends.push(s.clone());
        }
        sends.push(s);
    }
    let mut g = c.benchmark_group("reassembly");
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("reordered_blocks_of_8", |b| {
        b.iter(|| {
            let mut t = run(&sends, &TcpConfig::default());
            let c = t.consumers_mut().next().expect("one flow");
            assert_eq!((c.bytes, c.gaps), (total as u64, 0));
            black_box(t)
        })
    });
    g.finish();
}

fn syn_flood(c: &mut Criterion) {
    const FLOWS: u32 = 1_000_000;
    const BUDGET: usize = 100_000;
    let cfg = TcpConfig {
        max_flows: BUDGET,
        ..TcpConfig::default()
    };
    let segs: Vec<TcpSegment<'static>> = (0..FLOWS)
        .map(|i| {
            let k = key(i, 1024 + (i % 60_000) as u16);
            segment(
                k,
                i.wrapping_mul(2_654_435_761),
                TcpFlags::SYN,
                &[],
                u64::from(i) + 1,
            )
        })
        .collect();
    let t = run(&segs, &cfg);
    eprintln!(
        "syn_flood: {} flows created, {} evicted, {} entries left (budget {BUDGET}), peak {}, {} bytes per entry",
        t.stats().flows_created,
        t.stats().evictions,
        t.len(),
        t.stats().peak_flows,
        FlowTable::<Count>::entry_bytes()
    );
    assert_eq!(t.stats().evictions, u64::from(FLOWS) - BUDGET as u64);
    drop(t);
    let mut g = c.benchmark_group("reassembly");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(FLOWS)));
    g.bench_function("syn_flood_1m_half_open_budget_100k", |b| {
        b.iter(|| {
            let t = run(&segs, &cfg);
            assert!(t.len() <= BUDGET);
            black_box(t.stats().evictions)
        })
    });
    g.finish();
}

criterion_group!(benches, in_order, reordered, syn_flood);
criterion_main!(benches);
