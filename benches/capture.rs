//! Frame iteration speed of the capture stage: a generated 256 MB pcap (and
//! the same frames as pcapng) of Ethernet/IPv4/TCP frames of mixed sizes,
//! written to a temporary directory at bench time (never committed), read from
//! the page cache memory-mapped, as a stream, and memory-mapped with SHA-256.
//! Throughput is input bytes per second. Run: `cargo bench --bench capture`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use imscan::capture::{CaptureReader, ReadOptions};
use imscan::time::Timestamp;

#[allow(dead_code)]
#[path = "../tests/support/pcapfile.rs"]
mod pcapfile;

use pcapfile::{Interface, PcapFile, PcapNgFile, ETHERNET};

const TARGET_BYTES: u64 = 256 << 20;

/// An Ethernet/IPv4/TCP frame with `payload` bytes (headers are plausible;
/// checksums are not computed, nothing here reads them).
fn tcp_frame(seq: u32, payload: usize) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let total = (20 + 20 + payload) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend_from_slice(&5222u16.to_be_bytes());
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend((0..payload).map(|i| (i % 251) as u8));
    f
}

/// Writes about [`TARGET_BYTES`] of frames as pcap or (one interface) pcapng.
fn generate(path: &Path, ng: bool) -> u64 {
    // Mixed sizes as in chat traffic: bare ACKs, short messages, full segments.
    let sizes = [0usize, 0, 40, 120, 300, 700, 1460, 1460, 1460, 90];
    let frames: Vec<Vec<u8>> = sizes.iter().map(|&s| tcp_frame(1, s)).collect();
    let mut out = BufWriter::new(File::create(path).expect("create bench capture"));
    let mut pcap = PcapFile::new(false, false, ETHERNET, 262_144);
    let mut pcapng = PcapNgFile::new(false);
    pcapng.interface(Interface::new(ETHERNET).tsresol(9));
    let mut written = 0u64;
    let mut i = 0u64;
    let mut ts = Timestamp::from_secs_nanos(1_700_000_000, 0);
    while written < TARGET_BYTES {
        let frame = &frames[(i % frames.len() as u64) as usize];
        if ng {
            pcapng.epb(0, ts, frame, frame.len() as u32);
        } else {
            pcap.record(ts, frame, frame.len() as u32);
        }
        ts = ts.saturating_add_nanos(37_000);
        i += 1;
        if pcap.len() + pcapng.len() > 1 << 20 {
            let chunk = if ng { pcapng.take() } else { pcap.take() };
            written += chunk.len() as u64;
            out.write_all(&chunk).expect("write bench capture");
        }
    }
    let chunk = if ng { pcapng.take() } else { pcap.take() };
    written += chunk.len() as u64;
    out.write_all(&chunk).expect("write bench capture");
    out.flush().expect("flush bench capture");
    written
}

/// Iterates every frame, touching its first and last byte and length, as the
/// link decoder will. Returns a checksum so nothing is optimised away.
fn iterate(mut r: CaptureReader) -> u64 {
    let mut acc = 0u64;
    while let Some(batch) = r.next_batch(4096, 4 << 20) {
        for f in batch.iter() {
            acc = acc
                .wrapping_add(f.data.len() as u64)
                .wrapping_add(u64::from(*f.data.first().unwrap_or(&0)))
                .wrapping_add(u64::from(*f.data.last().unwrap_or(&0)));
        }
    }
    assert_eq!(r.stats().damaged, 0);
    acc
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap_path = dir.path().join("bench.pcap");
    let ng_path = dir.path().join("bench.pcapng");
    let pcap_size = generate(&pcap_path, false);
    let ng_size = generate(&ng_path, true);
    let pcap = pcap_path.to_str().expect("utf-8 temp path").to_owned();
    let ng = ng_path.to_str().expect("utf-8 temp path").to_owned();
    let open = |p: &str, hash: bool| CaptureReader::open(p, 0, ReadOptions { hash }).expect("open");
    // Warm the page cache once.
    iterate(open(&pcap, false));
    iterate(open(&ng, false));

    let mut g = c.benchmark_group("capture");
    g.sample_size(10);
    g.measurement_time(std::time::Duration::from_secs(8));
    g.throughput(Throughput::Bytes(pcap_size));
    g.bench_function("pcap_mapped_256MB", |b| {
        b.iter(|| iterate(open(&pcap, false)))
    });
    g.bench_function("pcap_stream_256MB", |b| {
        b.iter(|| {
            let file = File::open(&pcap).expect("open");
            let r = CaptureReader::open_reader(file, "bench", 0, ReadOptions::default());
            iterate(r.expect("open"))
        })
    });
    g.bench_function("pcap_mapped_sha256_256MB", |b| {
        b.iter(|| iterate(open(&pcap, true)))
    });
    g.throughput(Throughput::Bytes(ng_size));
    g.bench_function("pcapng_mapped_256MB", |b| {
        b.iter(|| iterate(open(&ng, false)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
