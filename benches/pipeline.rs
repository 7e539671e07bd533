//! Whole-pipeline benchmark on large generated captures (issue "TCP stream
//! reassembly and the parallel, deterministic engine"):
//!
//! * `flows`: about 1 GB (IMSCAN_BENCH_MB, default 1024) of Ethernet/IPv4/TCP
//!   with 10 000 concurrent flows interleaved, read from page cache, decoded,
//!   sharded and reassembled, bytes discarded (`reassemble_only`), at 1 and at
//!   2 threads; then the same with the protocol decoders on.
//! * `synflood`: 1 000 000 half-open flows (one SYN each) against the default
//!   flow budget: evictions counted, peak RSS bounded.
//!
//! Each scenario runs in a child process so that its peak RSS (VmHWM) is its
//! own. Run with `cargo bench --bench pipeline`; the generated captures are
//! kept in `target/bench-captures/` between runs and never committed.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use imscan::capture::CaptureWarning;
use imscan::engine::{self, EngineConfig, EngineOutput};
use imscan::event::Event;
use imscan::time::Timestamp;
use support::packet::{frame, ip_tcp, Link, TcpFields, ACK, PSH, SYN};
use support::pcapfile::PcapFile;

const FLOWS: u32 = 10_000;
const PAYLOAD: usize = 1400;

struct Count {
    events: u64,
    warnings: u64,
}

impl EngineOutput for Count {
    fn event(&mut self, _ev: Event) {
        self.events += 1;
    }
    fn warning(&mut self, _w: &CaptureWarning) {
        self.warnings += 1;
    }
}

fn endpoints(i: u32) -> (SocketAddr, SocketAddr) {
    let client = SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8)),
        (20_000 + i % 40_000) as u16,
    );
    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 8000);
    (client, server)
}

fn flush(w: &mut impl Write, file: &mut PcapFile) {
    w.write_all(&file.take()).expect("write bench capture");
}

/// 10 000 concurrent flows, each opened with a handshake, then data segments
/// round-robin over the flows until the file reaches `bytes`.
fn generate_flows(path: &Path, bytes: u64) {
    let mut w = BufWriter::new(std::fs::File::create(path).expect("create bench capture"));
    let mut file = PcapFile::new(false, false, 1, 65_535);
    let mut written = 0u64;
    let mut ts = Timestamp::from_secs_nanos(1_700_000_000, 0);
    let mut tick = || {
        ts = ts.saturating_add_nanos(1_000);
        ts
    };
    let link = Link::Ethernet;
    for i in 0..FLOWS {
        let (c, s) = endpoints(i);
        let mut f = TcpFields::new(c.port(), s.port());
        f.flags = SYN;
        f.seq = 1000;
        let syn = frame(&link, &ip_tcp(c, s, &f, &[]));
        file.record(tick(), &syn, syn.len() as u32);
        let mut f = TcpFields::new(s.port(), c.port());
        f.flags = SYN | ACK;
        f.seq = 5000;
        f.ack = 1001;
        let synack = frame(&link, &ip_tcp(s, c, &f, &[]));
        file.record(tick(), &synack, synack.len() as u32);
    }
    let payload: Vec<u8> = (0..PAYLOAD).map(|i| b'a' + (i % 26) as u8).collect();
    let mut round = 0u32;
    while written < bytes {
        for i in 0..FLOWS {
            let (c, s) = endpoints(i);
            let mut f = TcpFields::new(c.port(), s.port());
            f.flags = ACK | PSH;
            f.seq = 1001u32.wrapping_add(round.wrapping_mul(PAYLOAD as u32));
            f.ack = 5001;
            let data = frame(&link, &ip_tcp(c, s, &f, &payload));
            file.record(tick(), &data, data.len() as u32);
            written += data.len() as u64 + 16;
        }
        flush(&mut w, &mut file);
        round += 1;
    }
    flush(&mut w, &mut file);
    w.flush().expect("flush bench capture");
}

/// One SYN for each of 1 000 000 distinct flows.
fn generate_synflood(path: &Path) {
    let mut w = BufWriter::new(std::fs::File::create(path).expect("create bench capture"));
    let mut file = PcapFile::new(false, false, 1, 65_535);
    let mut ts = Timestamp::from_secs_nanos(1_700_000_000, 0);
    for i in 0..1_000_000u32 {
        let (c, s) = endpoints(i);
        let mut f = TcpFields::new(c.port(), s.port());
        f.flags = SYN;
        f.seq = i;
        let syn = frame(&Link::Ethernet, &ip_tcp(c, s, &f, &[]));
        ts = ts.saturating_add_nanos(1_000);
        file.record(ts, &syn, syn.len() as u32);
        if i % 10_000 == 0 {
            flush(&mut w, &mut file);
        }
    }
    flush(&mut w, &mut file);
    w.flush().expect("flush bench capture");
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Reading plus link/IP decoding only, on this thread (the 2 GB/s
/// per core target for the capture and net stages).
fn child_read_decode(path: &str) {
    use imscan::capture::{CaptureReader, ReadOptions};
    use imscan::net::{NetConfig, NetDecoder};
    let size = std::fs::metadata(path).expect("bench capture").len();
    let start = Instant::now();
    let mut reader =
        CaptureReader::open(path, 0, ReadOptions { hash: false }).expect("open bench capture");
    let mut net = NetDecoder::new(NetConfig::default());
    let mut segments = 0u64;
    while let Some(batch) = reader.next_batch(8192, 16 << 20) {
        for frame in batch.iter() {
            if net.decode(&frame).is_some() {
                segments += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{:<10} read+decode only, 1 thread {:>8.1} MB in {secs:>6.2} s = {:>5.2} GB/s  peak RSS {:>6.1} MB  segments {segments}",
        Path::new(path).file_name().unwrap().to_string_lossy(),
        size as f64 / 1e6,
        size as f64 / secs / 1e9,
        peak_rss_mb(),
    );
}

/// Run one scenario in this process and print one result line.
fn child(path: &str, threads: usize, decode: bool) {
    let config = EngineConfig {
        threads,
        reassemble_only: !decode,
        ..EngineConfig::default()
    };
    let size = std::fs::metadata(path).expect("bench capture").len();
    let mut out = Count {
        events: 0,
        warnings: 0,
    };
    let start = Instant::now();
    let summary = engine::run(&[path.to_string()], &config, &mut out).expect("engine run");
    let secs = start.elapsed().as_secs_f64();
    let tcp = &summary.stats.tcp;
    println!(
        "{:<10} threads={threads} decode={decode:<5} {:>8.1} MB in {secs:>6.2} s = {:>5.2} GB/s  peak RSS {:>6.1} MB  flows {} evictions {} delivered {} MB events {}",
        Path::new(path).file_name().unwrap().to_string_lossy(),
        size as f64 / 1e6,
        size as f64 / secs / 1e9,
        peak_rss_mb(),
        tcp.flows_created,
        tcp.evictions,
        tcp.delivered_bytes / 1_000_000,
        out.events,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let path = &args[i + 1];
        if args[i + 3] == "read-decode" {
            child_read_decode(path);
            return;
        }
        let threads: usize = args[i + 2].parse().expect("threads");
        let decode = args[i + 3] == "decode";
        child(path, threads, decode);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list` asks for test names; there are none.
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-captures");
    std::fs::create_dir_all(&dir).expect("bench capture dir");
    let mb: u64 = std::env::var("IMSCAN_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let flows = dir.join(format!("flows-{mb}MB.pcap"));
    if !flows.exists() {
        eprintln!("generating {} ...", flows.display());
        generate_flows(&flows, mb << 20);
    }
    let flood = dir.join("synflood-1M.pcap");
    if !flood.exists() {
        eprintln!("generating {} ...", flood.display());
        generate_synflood(&flood);
    }
    println!(
        "pipeline bench on {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let me = std::env::current_exe().expect("bench binary");
    let scenarios: [(&Path, usize, &str); 7] = [
        (&flows, 1, "read-decode"),
        (&flows, 1, "discard"),
        (&flows, 2, "discard"),
        (&flows, 1, "decode"),
        (&flows, 2, "decode"),
        (&flood, 1, "discard"),
        (&flood, 2, "decode"),
    ];
    for (path, threads, mode) in scenarios {
        // Warm the page cache so the figure is not a disk figure.
        let _ = std::fs::read(path).map(|v| v.len());
        let status = Command::new(&me)
            .arg("--child")
            .arg(path)
            .arg(threads.to_string())
            .arg(mode)
            .status()
            .expect("run bench child");
        assert!(status.success(), "bench child failed");
    }
}
