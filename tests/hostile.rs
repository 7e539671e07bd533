//! Hostile captures through the binary (`--stats`): damaged containers,
//! fragment and flow floods, out-of-order and sequence-space abuse, protocol
//! units with maximal or lying lengths, ids built to escape the output
//! directory; and one test per budget showing that it bites and is counted.
//! Each test checks: no panic (exit 0, 1 or 2, never a signal or 101), a
//! bounded peak RSS (`peak_rss_kib`), the damage in the counters, every
//! intact event before and after the damage, nothing outside the output dir.
//! It also replays every input the fuzzers found (`fixtures/hostile/fuzz/`)
//! through the same drivers the fuzz targets use (`tests/fuzz/drive.rs`).
//!
//! Small captures are checked in under `fixtures/hostile/` (regenerate with
//! `IMSCAN_BLESS=1 cargo test --test hostile`; a test fails when a file no
//! longer matches its generator). Bombs are generated at test time into a
//! temporary directory, frame by frame as they are built (`BigCapture`,
//! `Conversation::stream`), never held whole: the sizes (a 100 MiB
//! IRC line, 1 GiB behind a TCP hole, a million SYNs) cost disk and seconds,
//! not memory.

mod support;

#[path = "fuzz/drive.rs"]
mod drive;

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use imscan::time::Timestamp;
use serde_json::Value;
use support::oscar::flap;
use support::packet::{
    fragment, frame, ip_tcp, ipv4, Conversation, Ipv4Fields, Link, Side, TcpFields, ACK, PROTO_TCP,
    RST, SYN,
};
use support::pcapfile::{Interface, PcapFile, PcapNgFile, ETHERNET};

// ---------------------------------------------------------------- running

/// One run of the binary: exit code, events (JSON Lines on stdout), counters.
struct Run {
    code: i32,
    stderr: String,
    events: Vec<Value>,
    stats: Value,
}

impl Run {
    /// A counter by path, e.g. `counter("tcp.evictions")`; 0 when absent.
    fn counter(&self, path: &str) -> u64 {
        let mut v = &self.stats["counters"];
        for part in path.split('.') {
            v = &v[part];
        }
        v.as_u64().unwrap_or(0)
    }

    fn peak_rss_mib(&self) -> u64 {
        self.counter("peak_rss_kib") / 1024
    }

    /// Texts of every event, in output order.
    fn texts(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| e["text"].as_str().map(str::to_owned))
            .collect()
    }

    fn has_text(&self, text: &str) -> bool {
        self.texts().iter().any(|t| t == text)
    }

    /// No panic, no signal, a designed exit code, memory under `max_mib`.
    fn assert_sane(&self, max_mib: u64) {
        eprintln!(
            "exit {}, peak RSS {} KiB, {} events",
            self.code,
            self.counter("peak_rss_kib"),
            self.events.len()
        );
        assert!(
            matches!(self.code, 0..=2),
            "exit code {} (panic or signal); stderr:\n{}",
            self.code,
            self.stderr
        );
        assert!(
            self.peak_rss_mib() <= max_mib,
            "peak RSS {} MiB over the {} MiB budget",
            self.peak_rss_mib(),
            max_mib
        );
    }
}

fn imscan<S: AsRef<OsStr>>(args: &[S]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imscan"));
    cmd.args(["--stats", "-q"]);
    if !args.iter().any(|a| a.as_ref() == "-F") {
        cmd.args(["-F", "jsonl"]);
    }
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run imscan");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stats = stderr
        .find("{\n")
        .and_then(|at| serde_json::from_str(&stderr[at..]).ok())
        .unwrap_or(Value::Null);
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    Run {
        code: out.status.code().unwrap_or(-1),
        stderr,
        events,
        stats,
    }
}

// ---------------------------------------------------------------- fixtures

fn hostile_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hostile")
}

/// The checked-in fixture `name`, which must equal what `bytes` generates
/// (written instead when `IMSCAN_BLESS` is set). Keeps files < 1 MB.
fn fixture(name: &str, bytes: Vec<u8>) -> PathBuf {
    assert!(bytes.len() < 1 << 20, "{name}: fixtures stay under 1 MB");
    let path = hostile_dir().join(name);
    if std::env::var_os("IMSCAN_BLESS").is_some() {
        std::fs::create_dir_all(hostile_dir()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
    } else {
        let on_disk = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (IMSCAN_BLESS=1 writes it)", path.display()));
        assert!(
            on_disk == bytes,
            "{name} differs from its generator (IMSCAN_BLESS=1 rewrites it)"
        );
    }
    path
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn t0() -> Timestamp {
    Timestamp::from_secs_nanos(1_209_643_200, 0)
}

fn at(secs: i64) -> Timestamp {
    t0().saturating_add_nanos(secs * Timestamp::NANOS_PER_SEC)
}

/// An IRC session on its own flow, starting at `start`: login, one
/// PRIVMSG per text, both FINs. Its texts are the intact events around a
/// piece of damage.
fn irc_chat(client_port: u16, start: Timestamp, texts: &[&str]) -> Conversation {
    let mut c = irc_open(client_port, start);
    for t in texts {
        c.send(
            Side::Client,
            format!("PRIVMSG bob :{t}\r\n").as_bytes(),
            1400,
        );
    }
    c.close();
    c
}

/// An IRC session logged in and left open.
fn irc_open(client_port: u16, start: Timestamp) -> Conversation {
    let mut c = Conversation::new(
        addr(&format!("192.0.2.10:{client_port}")),
        addr("198.51.100.1:6667"),
    )
    .start_at(start, 1_000_000);
    c.handshake();
    c.send(
        Side::Client,
        b"NICK alice\r\nUSER alice 0 * :Alice\r\n",
        1400,
    );
    c.send(Side::Server, b":irc.example 001 alice :Welcome\r\n", 1400);
    c
}

type Frames = Vec<(Timestamp, Vec<u8>)>;

fn frames_of(c: &Conversation) -> Frames {
    c.frames().into_iter().map(|(ts, f, _)| (ts, f)).collect()
}

fn pcap_of(frames: &[(Timestamp, Vec<u8>)]) -> PcapFile {
    let mut p = PcapFile::new(false, false, ETHERNET, 65_535);
    for (ts, f) in frames {
        p.record(*ts, f, f.len() as u32);
    }
    p
}

/// A capture file written piece by piece into `dir` (for bombs).
struct BigCapture {
    out: BufWriter<File>,
    path: PathBuf,
}

impl BigCapture {
    fn new(dir: &Path, name: &str) -> BigCapture {
        let path = dir.join(name);
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&path).unwrap());
        out.write_all(&PcapFile::new(false, false, ETHERNET, 65_535).bytes())
            .unwrap();
        BigCapture { out, path }
    }

    fn frame(&mut self, ts: Timestamp, f: &[u8]) {
        let mut head = Vec::with_capacity(16);
        head.extend_from_slice(&(ts.secs() as u32).to_le_bytes());
        head.extend_from_slice(&ts.subsec_micros().to_le_bytes());
        head.extend_from_slice(&(f.len() as u32).to_le_bytes());
        head.extend_from_slice(&(f.len() as u32).to_le_bytes());
        self.out.write_all(&head).unwrap();
        self.out.write_all(f).unwrap();
    }

    fn frames(&mut self, frames: &[(Timestamp, Vec<u8>)]) {
        for (ts, f) in frames {
            self.frame(*ts, f);
        }
    }

    /// Writes the frames `c` scripted so far and forgets them, so that a
    /// long connection is never held whole (see [`Conversation::stream`]).
    fn conversation(&mut self, c: &mut Conversation) {
        for (ts, f, _) in c.take_frames() {
            self.frame(ts, &f);
        }
    }

    /// A frame sink for [`Conversation::stream`].
    fn sink(&mut self) -> impl FnMut(Timestamp, Vec<u8>) + '_ {
        |ts, f| self.frame(ts, &f)
    }

    fn finish(mut self) -> PathBuf {
        self.out.flush().unwrap();
        self.path
    }
}

// ---------------------------------------------------------------- capture

#[test]
fn bad_magic_is_a_clear_error() {
    let mut bytes = b"NOT A CAPTURE FILE\n".to_vec();
    bytes.extend((0..200u8).map(|i| i.wrapping_mul(37)));
    let path = fixture("bad-magic.pcap", bytes);
    let run = imscan(&[&path]);
    assert_eq!(run.code, 2, "nothing could be read: {}", run.stderr);
    assert!(run.stderr.contains("bad-magic.pcap"), "{}", run.stderr);
    assert!(run.events.is_empty());
}

/// Before and after: the intact sessions around every container test.
fn around() -> (Frames, Frames) {
    (
        frames_of(&irc_chat(40_001, at(0), &["before"])),
        frames_of(&irc_chat(40_002, at(100), &["after"])),
    )
}

fn assert_around(run: &Run) {
    assert!(
        run.has_text("before"),
        "lost the event before: {:?}",
        run.texts()
    );
    assert!(
        run.has_text("after"),
        "lost the event after: {:?}",
        run.texts()
    );
}

/// Runs `middle` between the intact sessions of [`around`] as fixture `name`:
/// no panic, peak RSS under `max_mib`, and the intact events before and after
/// the damage still reported.
fn run_between(name: &str, middle: &[&Conversation], max_mib: u64) -> Run {
    let (before, after) = around();
    let mut frames = before;
    for c in middle {
        frames.extend(frames_of(c));
    }
    frames.extend(after);
    let run = imscan(&[fixture(name, pcap_of(&frames).bytes())]);
    run.assert_sane(max_mib);
    assert_around(&run);
    run
}

#[test]
fn pcap_snaplen_zero_and_max_are_replaced_by_the_built_in_maximum() {
    for (name, snaplen) in [
        ("pcap-snaplen-0.pcap", 0u32),
        ("pcap-snaplen-max.pcap", u32::MAX),
    ] {
        let (before, after) = around();
        let mut p = PcapFile::new(false, false, ETHERNET, snaplen);
        for (ts, f) in before.iter().chain(&after) {
            p.record(*ts, f, f.len() as u32);
        }
        let run = imscan(&[fixture(name, p.bytes())]);
        run.assert_sane(64);
        assert_around(&run);
        assert_eq!(run.counter("capture.damaged"), 1, "{name}: one bad header");
        assert_eq!(run.code, 1);
    }
}

#[test]
fn pcap_record_of_4_gb_is_skipped_and_reading_resumes() {
    let (before, after) = around();
    let mut p = pcap_of(&before);
    p.raw_record(at(50).secs() as u32, 0, u32::MAX, u32::MAX, b"junk");
    for (ts, f) in &after {
        p.record(*ts, f, f.len() as u32);
    }
    let run = imscan(&[fixture("pcap-record-4gb.pcap", p.bytes())]);
    run.assert_sane(64);
    assert_around(&run);
    assert!(run.counter("capture.damaged") >= 1);
    assert!(run.counter("capture.resyncs") >= 1);
    assert_eq!(run.code, 1);
}

#[test]
fn pcap_truncated_last_record_keeps_every_whole_one() {
    let (before, after) = around();
    let mut all = before;
    all.extend(after);
    let mut p = pcap_of(&all);
    // A last record that claims 1000 bytes and has 10: the capture stopped mid-write.
    p.raw_record(at(200).secs() as u32, 0, 1000, 1000, &[0xAB; 10]);
    let bytes = p.bytes();
    let run = imscan(&[fixture("pcap-truncated-record.pcap", bytes)]);
    run.assert_sane(64);
    assert_around(&run);
    assert_eq!(run.counter("capture.damaged"), 1);
    assert_eq!(run.code, 1);
}

/// A pcapng section with one Ethernet interface holding `before`, then
/// `damage` appended raw or as blocks, then `after`.
fn pcapng_around(damage: impl FnOnce(&mut PcapNgFile)) -> Vec<u8> {
    let (before, after) = around();
    let mut p = PcapNgFile::new(false);
    p.interface(Interface::new(ETHERNET));
    for (ts, f) in &before {
        p.epb(0, *ts, f, f.len() as u32);
    }
    damage(&mut p);
    for (ts, f) in &after {
        p.epb(0, *ts, f, f.len() as u32);
    }
    p.bytes()
}

#[test]
fn pcapng_block_length_not_a_multiple_of_4() {
    let bytes = pcapng_around(|p| {
        let mut b = 6u32.to_le_bytes().to_vec();
        b.extend_from_slice(&45u32.to_le_bytes());
        b.extend_from_slice(&[0xEE; 37]);
        p.raw(&b);
    });
    let run = imscan(&[fixture("pcapng-unaligned-block.pcapng", bytes)]);
    run.assert_sane(64);
    assert_around(&run);
    assert!(run.counter("capture.damaged") >= 1);
    assert_eq!(run.code, 1);
}

#[test]
fn pcapng_block_length_smaller_than_its_header() {
    let bytes = pcapng_around(|p| {
        let mut b = 6u32.to_le_bytes().to_vec();
        b.extend_from_slice(&8u32.to_le_bytes());
        p.raw(&b);
    });
    let run = imscan(&[fixture("pcapng-short-block.pcapng", bytes)]);
    run.assert_sane(64);
    assert_around(&run);
    assert!(run.counter("capture.damaged") >= 1);
    assert_eq!(run.code, 1);
}

#[test]
fn pcapng_packet_on_an_interface_that_does_not_exist() {
    let bytes = pcapng_around(|p| {
        let f = frames_of(&irc_chat(40_003, at(50), &["nowhere"]));
        p.raw_epb(7, 0, f[0].1.len() as u32, f[0].1.len() as u32, &f[0].1);
    });
    let run = imscan(&[fixture("pcapng-no-such-interface.pcapng", bytes)]);
    run.assert_sane(64);
    assert_around(&run);
    assert_eq!(run.counter("capture.damaged"), 1);
    assert_eq!(run.code, 1);
}

#[test]
fn pcapng_interface_of_an_unknown_link_type() {
    let bytes = pcapng_around(|p| {
        let odd = p.interface(Interface::new(4242));
        for (ts, f) in frames_of(&irc_chat(40_003, at(50), &["odd link"])) {
            p.epb(odd, ts, &f, f.len() as u32);
        }
    });
    let run = imscan(&[fixture("pcapng-unknown-link-type.pcapng", bytes)]);
    run.assert_sane(64);
    assert_around(&run);
    assert!(!run.has_text("odd link"));
    let unsupported = &run.stats["counters"]["net"]["unsupported_link_types"]["4242"];
    assert!(unsupported.as_u64().unwrap_or(0) > 0, "{}", run.stats);
}

#[test]
fn pcapng_section_of_the_other_byte_order_halfway() {
    let (before, after) = around();
    let mut p = PcapNgFile::new(false);
    p.interface(Interface::new(ETHERNET));
    for (ts, f) in &before {
        p.epb(0, *ts, f, f.len() as u32);
    }
    p.section(true);
    p.interface(Interface::new(ETHERNET));
    for (ts, f) in &after {
        p.epb(0, *ts, f, f.len() as u32);
    }
    let run = imscan(&[fixture("pcapng-byte-order-switch.pcapng", p.bytes())]);
    run.assert_sane(64);
    assert_around(&run);
    assert_eq!(run.counter("capture.damaged"), 0);
    assert_eq!(run.code, 0);
}

// ---------------------------------------------------------------- IP fragments

/// An IPv4 fragment from `src` with id `id`: 8 bytes at `offset`, more to come.
fn lone_fragment(src: Ipv4Addr, id: u16, offset: usize) -> Vec<u8> {
    let f = Ipv4Fields {
        id,
        more_fragments: true,
        frag_offset: offset,
        ..Ipv4Fields::default()
    };
    let ip = ipv4(
        src,
        Ipv4Addr::new(198, 51, 100, 1),
        PROTO_TCP,
        &f,
        &[0x5A; 8],
    );
    frame(&Link::Ethernet, &ip)
}

#[test]
fn hundred_thousand_fragments_that_never_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let (before, after) = around();
    let mut cap = BigCapture::new(tmp.path(), "fragments.pcap");
    cap.frames(&before);
    // 50 000 first fragments of distinct datagrams (the open-reassembly
    // budget evicts), then 50 000 pieces of one datagram (the fragment
    // count budget drops it, again and again).
    for i in 0..50_000u32 {
        let src = Ipv4Addr::from(0x0A00_0000 | (i >> 16) << 8 | 1);
        cap.frame(at(10), &lone_fragment(src, i as u16, 0));
    }
    for i in 0..50_000usize {
        let src = Ipv4Addr::new(10, 200, 0, 1);
        cap.frame(at(20), &lone_fragment(src, 7, 8 * (i % 8000)));
    }
    cap.frames(&after);
    let run = imscan(&[cap.finish()]);
    run.assert_sane(128);
    assert_around(&run);
    assert_eq!(run.counter("net.fragments"), 100_000);
    assert!(
        run.counter("net.fragment_evictions") >= 48_000,
        "{}",
        run.stats
    );
    assert!(
        run.counter("net.fragment_drops_too_many") >= 700,
        "{}",
        run.stats
    );
    assert_eq!(run.code, 1);
}

#[test]
fn overlapping_fragments_with_different_bytes_keep_the_first() {
    let (before, after) = around();
    let mut mid = irc_open(40_003, at(50));
    mid.send(
        Side::Client,
        b"PRIVMSG bob :split in three pieces\r\n",
        1400,
    );
    let mut frames = before;
    for (i, s) in mid.segments().iter().enumerate() {
        let ts = at(50).saturating_add_nanos(i as i64 * 1_000_000);
        let ip = mid.ip_packet(s);
        if s.payload.starts_with(b"PRIVMSG") {
            let pieces = fragment(&ip, 3, 99);
            // A second copy of the middle piece with other bytes, first.
            let mut evil = pieces[1].clone();
            let n = evil.len();
            evil[n - 4..].copy_from_slice(b"EVIL");
            for p in [&evil, &pieces[0], &pieces[1], &pieces[2]] {
                frames.push((ts, frame(&Link::Ethernet, p)));
            }
        } else {
            frames.push((ts, frame(&Link::Ethernet, &ip)));
        }
    }
    frames.extend(after);
    let run = imscan(&[fixture(
        "ipv4-overlapping-fragments.pcap",
        pcap_of(&frames).bytes(),
    )]);
    run.assert_sane(64);
    assert_around(&run);
    assert!(
        run.counter("net.fragment_overlap_conflicts") >= 1,
        "{}",
        run.stats
    );
    // The copy captured first wins, as in TCP reassembly; never both.
    assert!(run.has_text("split in thEVILpieces"), "{:?}", run.texts());
    assert!(!run.has_text("split in three pieces"));
}

// ---------------------------------------------------------------- TCP

#[test]
fn syn_flood_of_a_million_flows() {
    let tmp = tempfile::tempdir().unwrap();
    let (before, after) = around();
    let mut cap = BigCapture::new(tmp.path(), "syn-flood.pcap");
    cap.frames(&before);
    let server = addr("198.51.100.1:6667");
    let n: u32 = 1_000_000;
    // One SYN template; only the source address and port change (the
    // checksums are not verified by imscan, and every SYN stays distinct).
    let f = TcpFields {
        flags: SYN,
        ..TcpFields::new(1, server.port())
    };
    let template = frame(
        &Link::Ethernet,
        &ip_tcp(addr("10.0.0.1:1"), server, &f, &[]),
    );
    let mut syn = template.clone();
    for i in 0..n {
        let ip = 0x0A00_0000u32 | (i >> 10);
        let port = 1024 + (i & 1023) as u16;
        syn[26..30].copy_from_slice(&ip.to_be_bytes());
        syn[34..36].copy_from_slice(&port.to_be_bytes());
        cap.frame(at(10).saturating_add_nanos(i64::from(i) * 1000), &syn);
    }
    cap.frames(&after);
    let run = imscan(&[cap.finish()]);
    run.assert_sane(400);
    assert_around(&run);
    assert!(run.counter("tcp.flows_created") >= u64::from(n));
    assert!(run.counter("tcp.peak_flows") <= 262_144, "{}", run.stats);
    assert!(
        run.counter("tcp.evictions") >= u64::from(n) - 262_144,
        "{}",
        run.stats
    );
    assert_eq!(run.code, 1);
}

/// A flow whose second data segment is lost, then `ahead` bytes (rounded
/// up to whole lines) of IRC lines behind the hole: the per-direction budget
/// must give the hole up. Frames go to `out` as they are built (10 µs apart),
/// so `ahead` may be far larger than memory.
fn hole_then_ahead(
    port: u16,
    start: Timestamp,
    ahead: usize,
    out: &mut impl FnMut(Timestamp, Vec<u8>),
) {
    let mut c = irc_open(port, start);
    c.step_ns = 10_000;
    c.send(Side::Client, b"PRIVMSG bob :before the hole\r\n", 1400);
    let hole = c.segments().len();
    c.send(Side::Client, b"PRIVMSG bob :lost\r\n", 1400);
    c.drop_segment(hole);
    // Keep-alives, not messages: the bytes held are the reassembler's, not events'.
    let line = b"PING :far ahead of the hole, waiting for bytes that never come\r\n";
    let bulk = ahead.div_ceil(line.len()) * line.len();
    c.stream(Side::Client, line, bulk, 1400, out);
    c.send(Side::Client, b"PRIVMSG bob :end of the flow\r\n", 1400);
    c.close();
    for (ts, f, _) in c.take_frames() {
        out(ts, f);
    }
}

#[test]
fn out_of_order_data_that_never_fills_its_hole_is_bounded() {
    // 1 GiB behind one hole (1 024 times the per-direction budget), written
    // to the capture as it is built.
    let tmp = tempfile::tempdir().unwrap();
    let (before, after) = around();
    let mut cap = BigCapture::new(tmp.path(), "ooo.pcap");
    cap.frames(&before);
    hole_then_ahead(40_003, at(50), 1 << 30, &mut cap.sink());
    cap.frames(&after);
    let run = imscan(&[cap.finish()]);
    // Mapped pages are released behind the batches in flight: the peak does
    // not grow with the input (it was 258 MB when they piled up).
    run.assert_sane(128);
    assert!(run.counter("tcp.payload_bytes") > 1 << 30, "{}", run.stats);
    assert_around(&run);
    assert!(run.has_text("before the hole"));
    assert!(run.has_text("end of the flow"));
    assert!(!run.has_text("lost"));
    assert!(run.counter("tcp.ooo_budget_bites") >= 1, "{}", run.stats);
    assert!(run.counter("tcp.peak_buffered_bytes") <= (1 << 20) + 1400);
    assert_eq!(run.code, 1);
}

#[test]
fn sequence_numbers_jumping_by_2_pow_31() {
    let (before, after) = around();
    let mut c = irc_open(40_003, at(50));
    c.send(Side::Client, b"PRIVMSG bob :before the jump\r\n", 1400);
    let client_next = c
        .segments()
        .iter()
        .rfind(|s| s.from == Side::Client)
        .map(|s| s.seq.wrapping_add(s.payload.len() as u32))
        .unwrap();
    let mut jumped = Conversation::new(c.client, c.server)
        .start_at(at(51), 1_000_000)
        .isn(client_next.wrapping_add(1 << 31), 5000);
    jumped.send(
        Side::Client,
        b"PRIVMSG bob :half the sequence space away\r\n",
        1400,
    );
    let mut frames = before;
    frames.extend(frames_of(&c));
    frames.extend(frames_of(&jumped));
    frames.extend(after);
    let run = imscan(&[fixture("tcp-seq-jump-2-31.pcap", pcap_of(&frames).bytes())]);
    run.assert_sane(64);
    assert_around(&run);
    assert!(run.has_text("before the jump"));
    // The jump is either a gap of 2^31 bytes or data from the past: either
    // way it is counted, never buffered.
    assert!(
        run.counter("tcp.gaps") + run.counter("tcp.retransmitted_bytes") >= 1,
        "{}",
        run.stats
    );
    assert!(run.counter("tcp.peak_buffered_bytes") <= 1 << 20);
}

#[test]
fn rst_storm_does_not_create_flows_or_lose_events() {
    let tmp = tempfile::tempdir().unwrap();
    let before = frames_of(&irc_chat(40_001, at(0), &["before"]));
    let mut live = irc_open(40_002, at(1));
    live.send(Side::Client, b"PRIVMSG bob :during\r\n", 1400);
    let mut cap = BigCapture::new(tmp.path(), "rst-storm.pcap");
    cap.frames(&before);
    cap.frames(&frames_of(&live));
    // 100 000 RSTs to flows that do not exist, and with sequence numbers far
    // out of the live flow's window.
    let server = addr("198.51.100.1:6667");
    for i in 0..100_000u32 {
        let (src, seq) = if i % 2 == 0 {
            (
                addr(&format!(
                    "10.9.{}.{}:{}",
                    i >> 16 & 255,
                    i >> 8 & 255,
                    1024 + (i & 255)
                )),
                i,
            )
        } else {
            (live.client, 0x8000_0000 ^ i)
        };
        let f = TcpFields {
            flags: RST | ACK,
            seq,
            ..TcpFields::new(src.port(), server.port())
        };
        cap.frame(
            at(2),
            &frame(&Link::Ethernet, &ip_tcp(src, server, &f, &[])),
        );
    }
    let mut rest = live.clone();
    let sent = rest.segments().len();
    rest.send(Side::Client, b"PRIVMSG bob :after\r\n", 1400);
    rest.close();
    let tail: Frames = frames_of(&rest)
        .into_iter()
        .skip(sent)
        .map(|(ts, f)| (ts.saturating_add_nanos(3 * Timestamp::NANOS_PER_SEC), f))
        .collect();
    cap.frames(&tail);
    let run = imscan(&[cap.finish()]);
    run.assert_sane(128);
    assert!(run.has_text("before"));
    assert!(run.has_text("during"));
    assert!(run.has_text("after"), "{:?} {}", run.texts(), run.stats);
    assert!(run.counter("tcp.flows_created") <= 3, "{}", run.stats);
    assert!(
        run.counter("tcp.segments_without_flow") >= 50_000,
        "{}",
        run.stats
    );
    // The 50 000 aimed at the live flow, half the sequence space away, are
    // not believed (the flow lives on to say "after").
    assert!(
        run.counter("tcp.rst_out_of_window") >= 50_000,
        "{}",
        run.stats
    );
}

// ---------------------------------------------------------------- protocol units

#[test]
fn irc_line_without_newline_hits_the_line_cap() {
    // 100 MiB without a newline (6 400 times the 16 KiB line cap), written
    // to the capture as it is built.
    let tmp = tempfile::tempdir().unwrap();
    let (before, after) = around();
    let mut cap = BigCapture::new(tmp.path(), "irc-long-line.pcap");
    cap.frames(&before);
    let mut c = irc_open(40_003, at(50));
    c.step_ns = 10_000;
    c.send(Side::Client, b"PRIVMSG bob :short\r\n", 1400);
    c.send(Side::Client, b"PRIVMSG bob :", 1400);
    c.stream(Side::Client, b"A", 100 << 20, 1400, &mut cap.sink());
    c.send(
        Side::Client,
        b"\r\nPRIVMSG bob :after the long line\r\n",
        1400,
    );
    c.close();
    cap.conversation(&mut c);
    cap.frames(&after);
    let run = imscan(&[cap.finish()]);
    run.assert_sane(128);
    assert!(
        run.counter("tcp.payload_bytes") > 100 << 20,
        "{}",
        run.stats
    );
    assert_around(&run);
    assert!(run.has_text("short"));
    assert!(run.has_text("after the long line"));
    assert!(run.counter("proto.caps_hit") >= 1, "{}", run.stats);
    assert!(!run.texts().iter().any(|t| t.len() > 16 * 1024));
}

const XMPP_CLIENT_OPEN: &[u8] = b"<?xml version='1.0'?><stream:stream to='imscan.test' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
const XMPP_SERVER_OPEN: &[u8] = b"<?xml version='1.0'?><stream:stream from='imscan.test' id='s1' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

fn xmpp_message(body: &str) -> Vec<u8> {
    format!("<message to='erin@imscan.test' type='chat'><body>{body}</body></message>").into_bytes()
}

/// An XMPP client stream: open, a message, `middle`, a message, close.
fn xmpp_around(port: u16, middle: &[u8]) -> Conversation {
    let mut c = Conversation::new(
        addr(&format!("192.0.2.20:{port}")),
        addr("198.51.100.1:5222"),
    )
    .start_at(at(50), 1_000_000);
    c.handshake();
    c.send(Side::Client, XMPP_CLIENT_OPEN, 1400);
    c.send(Side::Server, XMPP_SERVER_OPEN, 1400);
    c.send(Side::Client, &xmpp_message("xmpp before"), 1400);
    c.send(Side::Client, middle, 1400);
    c.send(Side::Client, &xmpp_message("xmpp after"), 1400);
    c.send(Side::Client, b"</stream:stream>", 1400);
    c.close();
    c
}

#[test]
fn xmpp_billion_laughs_is_not_expanded() {
    let mut bomb = b"<!DOCTYPE lolz [<!ENTITY lol \"lol\">".to_vec();
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_string()
        } else {
            format!("lol{}", i - 1)
        };
        let refs = format!("&{prev};").repeat(10);
        bomb.extend_from_slice(format!("<!ENTITY lol{i} \"{refs}\">").as_bytes());
    }
    bomb.extend_from_slice(b"]>");
    bomb.extend(xmpp_message("&lol9;"));
    let run = run_between(
        "xmpp-billion-laughs.pcap",
        &[&xmpp_around(40_010, &bomb)],
        64,
    );
    assert!(run.has_text("xmpp before"));
    assert!(run.has_text("xmpp after"));
    assert!(
        !run.texts().iter().any(|t| t.contains("lollol")),
        "entity expanded"
    );
    // The undeclared-by-XMPP entity is kept as written, and counted.
    assert!(run.has_text("&lol9;"), "{:?}", run.texts());
    assert!(run.counter("proto.decode_errors") >= 1, "{}", run.stats);
}

#[test]
fn xmpp_hundred_thousand_nested_elements() {
    // Never closed: 300 KB of `<a>` outgrow the 256 KiB stanza cap.
    let mut open = b"<message to='erin@imscan.test'>".to_vec();
    open.extend(b"<a>".repeat(100_000));
    let run = run_between(
        "xmpp-nested-100000.pcap",
        &[&xmpp_around(40_011, &open)],
        64,
    );
    assert!(run.has_text("xmpp before"));
    assert!(run.has_text("xmpp after"), "{:?}", run.texts());
    assert!(run.counter("proto.caps_hit") >= 1, "{}", run.stats);
}

#[test]
fn xmpp_deep_but_closed_nesting_within_the_cap() {
    // 30 000 levels, closed: fits the cap, so the parser must walk it
    // without recursion trouble.
    let mut deep = b"<message to='erin@imscan.test' type='chat'><body>deep</body>".to_vec();
    deep.extend(b"<a>".repeat(30_000));
    deep.extend(b"</a>".repeat(30_000));
    deep.extend_from_slice(b"</message>");
    let mut c = xmpp_around(40_012, &deep);
    c.close();
    let tmp = tempfile::tempdir().unwrap();
    let mut cap = BigCapture::new(tmp.path(), "xmpp-deep.pcap");
    cap.frames(&frames_of(&c));
    let run = imscan(&[cap.finish()]);
    run.assert_sane(64);
    assert!(run.has_text("xmpp before"));
    assert!(run.has_text("xmpp after"));
    assert_eq!(run.counter("proto.caps_hit"), 0);
}

/// An outgoing MSN text message (MSG with a plain-text payload).
fn msn_msg(trid: u32, text: &str) -> Vec<u8> {
    let payload =
        format!("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{text}");
    format!("MSG {trid} N {}\r\n{payload}", payload.len()).into_bytes()
}

fn msn_switchboard(port: u16, middle: &[u8]) -> Conversation {
    let msg = msn_msg;
    let mut c = Conversation::new(
        addr(&format!("192.0.2.30:{port}")),
        addr("198.51.100.2:1863"),
    )
    .start_at(at(50), 1_000_000);
    c.handshake();
    c.send(
        Side::Client,
        b"ANS 1 alice@hotmail.com 849102291.520491113 11752013\r\n",
        1400,
    );
    c.send(
        Side::Server,
        b"IRO 1 1 1 bob@hotmail.com Bob 1342177280\r\nANS 1 OK\r\n",
        1400,
    );
    c.send(Side::Client, &msg(2, "msn before"), 1400);
    c.send(Side::Client, middle, 1400);
    c.send(Side::Client, &msg(4, "msn after"), 1400);
    c.close();
    c
}

#[test]
fn msn_command_line_longer_than_the_cap() {
    // 20 KiB without a CRLF, then a MSG in the same segment as the line's
    // end: the overlong line is a cap hit, the MSG right after it is kept,
    // and its event says bytes were dropped before it.
    let mut middle = b"MSG 3 N ".to_vec();
    middle.resize(20 * 1024, b'9');
    middle.extend_from_slice(b"\r\n");
    let line_end = middle.len();
    middle.extend(msn_msg(4, "right after the long line"));
    assert!(line_end % 1400 + 100 < 1400, "the line ends mid-segment");
    let c = msn_switchboard(40_021, &middle);
    let run = run_between("msn-line-over-cap.pcap", &[&c], 64);
    for t in ["msn before", "right after the long line", "msn after"] {
        assert!(run.has_text(t), "{t}: {:?} {}", run.texts(), run.stats);
    }
    assert!(run.counter("proto.caps_hit") >= 1, "{}", run.stats);
    assert_eq!(run.counter("proto.decode_errors"), 0, "{}", run.stats);
    let next = run
        .events
        .iter()
        .find(|e| e["text"] == "right after the long line")
        .unwrap();
    let flags = next["flags"].as_array().unwrap();
    assert!(flags.iter().any(|f| f == "gap_before"), "{next}");
    assert_eq!(run.code, 1);
}

#[test]
fn msn_msg_length_4294967295() {
    let run = run_between(
        "msn-msg-length-max.pcap",
        &[&msn_switchboard(
            40_020,
            b"MSG 3 N 4294967295\r\nMIME-Version: 1.0\r\n\r\nlies\r\n",
        )],
        64,
    );
    assert!(run.has_text("msn before"));
    assert!(run.has_text("msn after"), "{:?} {}", run.texts(), run.stats);
    assert!(
        run.counter("proto.decode_errors") + run.counter("proto.caps_hit") >= 1,
        "{}",
        run.stats
    );
}

fn ymsg(service: u16, len: u16, pairs: &[(u32, &[u8])]) -> Vec<u8> {
    let len = (len != 0).then_some(len);
    support::ymsg::packet(service, 0, 0x0042_1337, len, pairs)
}

#[test]
fn ymsg_header_with_maximal_length() {
    let message = |t: &str| ymsg(6, 0, &[(1, b"alice_y"), (5, b"bob_y"), (14, t.as_bytes())]);
    // Header says 65 535 body bytes; they all come (junk), then intact packets.
    let mut huge = ymsg(6, u16::MAX, &[]);
    huge.resize(huge.len() + 0xFFFF, b'x');
    let mut c = Conversation::new(addr("192.0.2.40:40030"), addr("198.51.100.3:5050"))
        .start_at(at(50), 1_000_000);
    c.handshake();
    c.send(Side::Client, &message("ymsg before"), 1400);
    c.send(Side::Client, &huge, 1400);
    c.send(Side::Client, &message("ymsg after"), 1400);
    c.close();
    let run = run_between("ymsg-length-max.pcap", &[&c], 64);
    assert!(run.has_text("ymsg before"), "{:?}", run.texts());
    assert!(
        run.has_text("ymsg after"),
        "{:?} {}",
        run.texts(),
        run.stats
    );
}

/// An ICBM channel-1 send (SNAC 4/6) of `text` to `to`.
fn icbm_send(to: &str, text: &str) -> Vec<u8> {
    let mut frag = vec![0x05, 0x01, 0x00, 0x01, 0x01, 0x01, 0x01];
    frag.extend_from_slice(&((text.len() + 4) as u16).to_be_bytes());
    frag.extend_from_slice(&[0, 0, 0, 0]);
    frag.extend_from_slice(text.as_bytes());
    let mut d = vec![0, 4, 0, 6, 0, 0, 0, 0, 0, 7];
    d.extend_from_slice(b"12345678");
    d.extend_from_slice(&1u16.to_be_bytes());
    d.push(to.len() as u8);
    d.extend_from_slice(to.as_bytes());
    d.extend_from_slice(&2u16.to_be_bytes());
    d.extend_from_slice(&(frag.len() as u16).to_be_bytes());
    d.extend_from_slice(&frag);
    d
}

#[test]
fn flap_header_with_maximal_length() {
    let mut huge = vec![0x2A, 2, 0, 3, 0xFF, 0xFF];
    huge.resize(6 + 0xFFFF, 0);
    let mut c = Conversation::new(addr("192.0.2.50:40040"), addr("198.51.100.4:5190"))
        .start_at(at(50), 1_000_000);
    c.handshake();
    c.send(Side::Server, &flap(1, 100, &[0, 0, 0, 1]), 1400);
    c.send(Side::Client, &flap(1, 1, &[0, 0, 0, 1]), 1400);
    c.send(
        Side::Client,
        &flap(2, 2, &icbm_send("bob", "flap before")),
        1400,
    );
    c.send(Side::Client, &huge, 1400);
    c.send(
        Side::Client,
        &flap(2, 4, &icbm_send("bob", "flap after")),
        1400,
    );
    c.close();
    let run = run_between("flap-length-max.pcap", &[&c], 64);
    assert!(run.has_text("flap before"), "{:?}", run.texts());
    assert!(
        run.has_text("flap after"),
        "{:?} {}",
        run.texts(),
        run.stats
    );
}

fn gg_packet(t: u32, len: u32, body: &[u8]) -> Vec<u8> {
    let mut v = t.to_le_bytes().to_vec();
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// GG 6 SEND_MSG: recipient, sequence, class, NUL-terminated text.
fn gg_send(to: u32, text: &str) -> Vec<u8> {
    let mut b = to.to_le_bytes().to_vec();
    b.extend_from_slice(&7u32.to_le_bytes());
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(text.as_bytes());
    b.push(0);
    gg_packet(0x0B, b.len() as u32, &b)
}

#[test]
fn gadu_gadu_header_with_maximal_length() {
    let mut login = (1234u32 | 0x4000_0000).to_le_bytes().to_vec();
    login.extend_from_slice(&[0x11; 4]);
    login.extend_from_slice(&2u32.to_le_bytes());
    login.extend_from_slice(&[0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let mut c = Conversation::new(addr("192.0.2.60:40050"), addr("198.51.100.5:8074"))
        .start_at(at(50), 1_000_000);
    c.handshake();
    c.send(
        Side::Server,
        &gg_packet(0x01, 4, &0x1234_5678u32.to_le_bytes()),
        1400,
    );
    c.send(
        Side::Client,
        &gg_packet(0x15, login.len() as u32, &login),
        1400,
    );
    c.send(Side::Server, &gg_packet(0x03, 0, &[]), 1400);
    c.send(Side::Client, &gg_send(7777, "gg before"), 1400);
    // A SEND_MSG header claiming 4 GiB, with a few bytes after it.
    c.send(
        Side::Client,
        &gg_packet(0x0B, u32::MAX, b"\x61\x1e\0\0garbage"),
        1400,
    );
    c.send(Side::Client, &gg_send(7777, "gg after"), 1400);
    c.close();
    let run = run_between("gadugadu-length-max.pcap", &[&c], 64);
    assert!(run.has_text("gg before"), "{:?}", run.texts());
    assert!(run.has_text("gg after"), "{:?} {}", run.texts(), run.stats);
    assert!(run.counter("proto.decode_errors") >= 1, "{}", run.stats);
}

// ---------------------------------------------------------------- ids and paths

/// Every path under `root`, relative.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().to_path_buf());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn hostile_ids_stay_inside_the_output_directory() {
    let long = "A".repeat(10 * 1024);
    let targets: Vec<String> = vec![
        "../../../../../../tmp/imscan-escape".into(),
        "..".into(),
        "/etc/passwd".into(),
        "a\0b\0../c".into(),
        "bell\x07esc\x1b[31mred\x01\x02\x7f".into(),
        long.clone(),
        format!("../{long}/../x"),
    ];
    let mut c = Conversation::new(addr("192.0.2.10:40060"), addr("198.51.100.1:6667"))
        .start_at(at(0), 1_000_000);
    c.handshake();
    c.send(Side::Client, b"NICK ../../..\r\nUSER x 0 * :x\r\n", 1400);
    c.send(
        Side::Server,
        b":irc.example 001 ../../.. :Welcome\r\n",
        1400,
    );
    for (i, t) in targets.iter().enumerate() {
        let line = format!("PRIVMSG {t} :hostile id {i}\r\n");
        c.send(Side::Client, line.as_bytes(), 1400);
    }
    c.close();
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("ids.pcap");
    let mut frames = frames_of(&c);
    frames.extend(around().1);
    std::fs::write(&pcap, pcap_of(&frames).bytes()).unwrap();
    let bytes = std::fs::read(&pcap).unwrap();
    fixture("irc-hostile-ids.pcap", bytes);
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let run = imscan(&[
        OsStr::new("-F"),
        OsStr::new("imspector"),
        OsStr::new("-o"),
        out.as_os_str(),
        pcap.as_os_str(),
    ]);
    run.assert_sane(64);
    // Only the capture and the output directory exist in the temp dir.
    let top: Vec<_> = walk(tmp.path())
        .into_iter()
        .filter(|p| p.components().count() == 1)
        .collect();
    assert_eq!(top, [PathBuf::from("ids.pcap"), PathBuf::from("out")]);
    assert!(!Path::new("/tmp/imscan-escape").exists());
    let files = walk(&out);
    assert!(!files.is_empty());
    for f in &files {
        for part in f.components() {
            let s = part.as_os_str().to_string_lossy();
            assert!(s.len() <= 255, "component too long: {}", s.len());
            assert!(s != ".." && s != ".", "{}", f.display());
            assert!(!s.chars().any(|c| c.is_control()), "{:?}", s);
        }
    }
    // Every hostile id still made its line in the logs.
    let mut logged = String::new();
    for f in &files {
        let p = out.join(f);
        if p.is_file() {
            logged.push_str(&String::from_utf8_lossy(&std::fs::read(p).unwrap()));
        }
    }
    for i in 0..targets.len() {
        assert!(logged.contains(&format!("hostile id {i}")), "id {i} lost");
    }
    assert!(logged.contains("after"));
}

// ---------------------------------------------------------------- budgets

#[test]
fn budget_max_flows_bites_and_flushes_evicted_flows() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cap = BigCapture::new(tmp.path(), "flows.pcap");
    let mut convs = Vec::new();
    for i in 0..300u16 {
        let mut c = irc_open(30_000 + i, at(i64::from(i)));
        c.send(
            Side::Client,
            format!("PRIVMSG bob :flow {i}\r\n").as_bytes(),
            1400,
        );
        convs.push(c);
    }
    let mut frames: Frames = convs.iter().flat_map(frames_of).collect();
    frames.sort_by_key(|f| f.0);
    cap.frames(&frames);
    let run = imscan(&[
        OsStr::new("--max-flows"),
        OsStr::new("64"),
        OsStr::new("--threads"),
        OsStr::new("1"),
        cap.finish().as_os_str(),
    ]);
    run.assert_sane(64);
    assert!(run.counter("tcp.evictions") >= 200, "{}", run.stats);
    assert!(run.counter("tcp.peak_flows") <= 64 + 16, "{}", run.stats);
    for i in 0..300 {
        assert!(run.has_text(&format!("flow {i}")), "flow {i} lost");
    }
    assert_eq!(run.code, 1);
}

#[test]
fn budget_out_of_order_bytes_per_direction_bites() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cap = BigCapture::new(tmp.path(), "ooo-dir.pcap");
    hole_then_ahead(40_003, at(0), 256 << 10, &mut cap.sink());
    let run = imscan(&[
        OsStr::new("--max-ooo-kib"),
        OsStr::new("64"),
        cap.finish().as_os_str(),
    ]);
    run.assert_sane(64);
    assert!(run.counter("tcp.ooo_budget_bites") >= 1, "{}", run.stats);
    assert!(
        run.counter("tcp.peak_buffered_bytes") <= (64 << 10) + 1400,
        "{}",
        run.stats
    );
    assert!(run.has_text("end of the flow"));
    assert_eq!(run.code, 1);
}

#[test]
fn budget_out_of_order_bytes_of_all_flows_bites() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cap = BigCapture::new(tmp.path(), "ooo-total.pcap");
    // The run-wide budget is split over the engine's 64 shards, each keeping
    // at least one direction's budget: with 64 KiB per direction and 1 MiB in
    // all, each shard may hold 64 KiB. 80 flows 48 KiB behind a hole each
    // (under the per-direction budget) put two or more in some shard.
    let mut frames = Frames::new();
    for i in 0..80u16 {
        hole_then_ahead(41_000 + i, at(0), 48 << 10, &mut |ts, f| {
            frames.push((ts, f))
        });
    }
    frames.sort_by_key(|f| f.0);
    cap.frames(&frames);
    let run = imscan(&[
        OsStr::new("--max-buffer-mib"),
        OsStr::new("1"),
        OsStr::new("--max-ooo-kib"),
        OsStr::new("64"),
        OsStr::new("--threads"),
        OsStr::new("1"),
        cap.finish().as_os_str(),
    ]);
    run.assert_sane(128);
    assert!(run.counter("tcp.total_budget_bites") >= 1, "{}", run.stats);
    assert_eq!(run.counter("tcp.ooo_budget_bites"), 0, "{}", run.stats);
    let ends = run.events.iter().filter(|e| e["text"] == "end of the flow");
    assert_eq!(ends.count(), 80);
    assert_eq!(run.code, 1);
}

#[test]
fn budget_fragments_too_large_and_timed_out() {
    let (before, after) = around();
    let mut frames = before;
    let src = Ipv4Addr::new(10, 1, 1, 1);
    // A datagram whose last fragment ends past 65 535 bytes.
    frames.push((at(10), lone_fragment(src, 1, 0)));
    let f = Ipv4Fields {
        id: 1,
        more_fragments: false,
        frag_offset: 65_528,
        ..Ipv4Fields::default()
    };
    let ip = ipv4(
        src,
        Ipv4Addr::new(198, 51, 100, 1),
        PROTO_TCP,
        &f,
        &[0x5A; 16],
    );
    frames.push((at(10), frame(&Link::Ethernet, &ip)));
    // A datagram that never completes and times out (30 s of capture time).
    frames.push((at(20), lone_fragment(src, 2, 0)));
    frames.extend(after);
    let run = imscan(&[fixture(
        "ipv4-fragments-too-large-timeout.pcap",
        pcap_of(&frames).bytes(),
    )]);
    run.assert_sane(64);
    assert_around(&run);
    assert!(
        run.counter("net.fragment_drops_too_large") >= 1,
        "{}",
        run.stats
    );
    assert!(run.counter("net.fragment_timeouts") >= 1, "{}", run.stats);
}

#[test]
fn budget_unit_caps_of_line_protocols_bite() {
    // IRC: 16 KiB lines; XMPP: 256 KiB stanzas; MSN: 8 KiB command lines.
    let irc = {
        let mut c = irc_open(40_003, at(0));
        let mut line = b"PRIVMSG bob :".to_vec();
        line.resize(17 * 1024, b'i');
        line.extend_from_slice(b"\r\nPRIVMSG bob :irc after cap\r\n");
        c.send(Side::Client, &line, 1400);
        c.close();
        c
    };
    let mut stanza = xmpp_message("");
    stanza.splice(stanza.len() - 17..stanza.len() - 17, vec![b'x'; 257 * 1024]);
    let xmpp = xmpp_around(40_011, &stanza);
    let mut msn_line = b"MSG 3 N ".to_vec();
    msn_line.resize(9 * 1024, b'9');
    msn_line.extend_from_slice(b"\r\n");
    let msn = msn_switchboard(40_020, &msn_line);
    let tmp = tempfile::tempdir().unwrap();
    // IRC and XMPP buffer a unit up to the cap, then drop it; MSN's framing
    // drops a command line with no end within the cap as soon as it has seen
    // that much, and resumes at the next command. Each is a cap hit (exit 1).
    for (name, c, after) in [
        ("irc", irc, "irc after cap"),
        ("xmpp", xmpp, "xmpp after"),
        ("msn", msn, "msn after"),
    ] {
        let mut cap = BigCapture::new(tmp.path(), &format!("{name}-cap.pcap"));
        cap.frames(&frames_of(&c));
        let run = imscan(&[cap.finish()]);
        run.assert_sane(64);
        assert!(run.counter("proto.caps_hit") >= 1, "{name}: {}", run.stats);
        assert!(run.has_text(after), "{name}: {:?}", run.texts());
        assert_eq!(run.code, 1, "{name}");
    }
}

/// An HTTP request to the MSN gateway carrying `body`.
fn gateway_post(session: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "POST /gateway/gateway.dll?SessionID={session} HTTP/1.1\r\nContent-Type: application/x-msn-messenger\r\nHost: gateway.messenger.hotmail.com\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

/// A gateway response carrying `body`.
fn gateway_reply(session: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "HTTP/1.1 200 OK\r\nX-MSN-Messenger: SessionID={session}; GW-IP=198.51.100.2\r\nContent-Type: application/x-msn-messenger\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

#[test]
fn budget_msn_gateway_head_and_body_caps_bite() {
    // A request head with no end in its first 16 KiB, then one declaring a
    // body past 256 KiB: both skipped to the next request, counted.
    let mut long_head = b"POST /gateway/gateway.dll?SessionID=1.3 HTTP/1.1\r\nX-Junk: ".to_vec();
    long_head.resize(17 * 1024, b'j');
    long_head.extend_from_slice(b"\r\n\r\n");
    let huge_body = b"POST /gateway/gateway.dll?SessionID=1.4 HTTP/1.1\r\nContent-Length: 4294967295\r\n\r\nMSG 9 N 3\r\nabc";
    let mut c = Conversation::new(addr("192.0.2.31:40021"), addr("198.51.100.2:80"))
        .start_at(at(50), 1_000_000);
    c.handshake();
    c.send(
        Side::Client,
        &gateway_post("1.1", b"USR 1 alice@hotmail.com 1234.5678.9012\r\n"),
        1400,
    );
    c.send(
        Side::Server,
        &gateway_reply(
            "1.1",
            b"USR 1 OK alice@hotmail.com Alice\r\nJOI bob@hotmail.com Bob\r\n",
        ),
        1400,
    );
    c.send(
        Side::Client,
        &gateway_post("1.2", &msn_msg(2, "gw before")),
        1400,
    );
    c.send(Side::Server, &gateway_reply("1.2", b""), 1400);
    c.send(Side::Client, &long_head, 1400);
    c.send(Side::Client, huge_body, 1400);
    c.send(
        Side::Client,
        &gateway_post("1.5", &msn_msg(3, "gw after")),
        1400,
    );
    c.send(Side::Server, &gateway_reply("1.5", b""), 1400);
    c.close();
    let tmp = tempfile::tempdir().unwrap();
    let mut cap = BigCapture::new(tmp.path(), "msn-gateway-caps.pcap");
    cap.frames(&frames_of(&c));
    let run = imscan(&[cap.finish()]);
    run.assert_sane(64);
    assert!(run.has_text("gw before"), "{:?} {}", run.texts(), run.stats);
    assert!(run.has_text("gw after"), "{:?} {}", run.texts(), run.stats);
    assert!(run.counter("proto.decode_errors") >= 2, "{}", run.stats);
}

#[test]
fn budget_irc_targets_per_line_bites() {
    // One PRIVMSG to 40 targets: the first 32 become events, no more.
    let targets: Vec<String> = (0..40).map(|i| format!("peer{i}")).collect();
    let line = format!("PRIVMSG {} :to many\r\n", targets.join(","));
    let mut c = irc_open(40_003, at(50));
    c.send(Side::Client, line.as_bytes(), 1400);
    c.send(Side::Client, b"PRIVMSG bob :after many\r\n", 1400);
    c.close();
    let tmp = tempfile::tempdir().unwrap();
    let mut cap = BigCapture::new(tmp.path(), "irc-targets.pcap");
    cap.conversation(&mut c);
    let run = imscan(&[cap.finish()]);
    run.assert_sane(64);
    let many: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["text"] == "to many")
        .collect();
    assert_eq!(many.len(), 32, "{:?}", run.texts());
    assert_eq!(many[31]["remote_id"], "peer31");
    assert!(run.has_text("after many"));
}

/// An IRC flow with a lost segment and a line behind it, then, `later`
/// seconds on, one more line; no FIN.
fn hole_then_quiet(port: u16, later: i64) -> Frames {
    let mut c = irc_open(port, at(50));
    c.send(Side::Client, b"PRIVMSG bob :before the hole\r\n", 1400);
    let hole = c.segments().len();
    c.send(Side::Client, b"PRIVMSG bob :lost\r\n", 1400);
    c.drop_segment(hole);
    c.send(Side::Client, b"PRIVMSG bob :behind the hole\r\n", 1400);
    let mut frames = frames_of(&c);
    c.take_frames();
    c.start = at(51 + later);
    c.send(Side::Client, b"PRIVMSG bob :much later\r\n", 1400);
    frames.extend(frames_of(&c));
    frames
}

#[test]
fn budget_gap_timeout_bites_in_capture_time() {
    // 7 s of capture time with a hole open: under the default 10 s window
    // the hole is still waiting (given up only at the end of the input);
    // with --gap-timeout 5 it becomes a gap when the later segment comes.
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("hole.pcap");
    std::fs::write(&pcap, pcap_of(&hole_then_quiet(40_003, 7)).bytes()).unwrap();
    for (timeout, by_window) in [(None, 0), (Some("5"), 1)] {
        let mut args = vec![OsStr::new("--threads"), OsStr::new("1")];
        if let Some(t) = timeout {
            args.extend([OsStr::new("--gap-timeout"), OsStr::new(t)]);
        }
        args.push(pcap.as_os_str());
        let run = imscan(&args);
        run.assert_sane(64);
        assert_eq!(run.counter("tcp.gaps_window"), by_window, "{}", run.stats);
        assert_eq!(run.counter("tcp.gaps"), 1, "{}", run.stats);
        for t in ["before the hole", "behind the hole", "much later"] {
            assert!(run.has_text(t), "{timeout:?}: {t} lost: {:?}", run.texts());
        }
        assert!(!run.has_text("lost"));
        assert_eq!(run.code, 1);
    }
}

#[test]
fn budget_idle_timeout_closes_flows_in_capture_time() {
    // A chat left open, then another flow two minutes of capture time later:
    // with --idle-timeout 60 the first is closed as idle (its events kept);
    // under the default 30 minutes it stays open to the end of the input.
    let mut quiet = irc_open(40_003, at(0));
    quiet.send(Side::Client, b"PRIVMSG bob :then silence\r\n", 1400);
    let mut frames = frames_of(&quiet);
    frames.extend(frames_of(&irc_chat(40_004, at(120), &["two minutes on"])));
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("idle.pcap");
    std::fs::write(&pcap, pcap_of(&frames).bytes()).unwrap();
    for (timeout, idle) in [(None, 0), (Some("60"), 1)] {
        let mut args = vec![OsStr::new("--threads"), OsStr::new("1")];
        if let Some(t) = timeout {
            args.extend([OsStr::new("--idle-timeout"), OsStr::new(t)]);
        }
        args.push(pcap.as_os_str());
        let run = imscan(&args);
        run.assert_sane(64);
        assert_eq!(run.counter("tcp.closed_idle"), idle, "{}", run.stats);
        assert!(run.has_text("then silence"), "{:?}", run.texts());
        assert!(run.has_text("two minutes on"), "{:?}", run.texts());
    }
}

#[test]
fn budget_imspector_open_files_bites() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = irc_open(40_003, at(0));
    // 300 peers, each written to twice, far apart: more logs than the
    // 128-file cache holds.
    for round in 0..2 {
        for i in 0..300 {
            c.send(
                Side::Client,
                format!("PRIVMSG peer{i} :round {round}\r\n").as_bytes(),
                1400,
            );
        }
    }
    c.close();
    let pcap = tmp.path().join("peers.pcap");
    std::fs::write(&pcap, pcap_of(&frames_of(&c)).bytes()).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let run = imscan(&[
        OsStr::new("-F"),
        OsStr::new("imspector"),
        OsStr::new("-o"),
        out.as_os_str(),
        pcap.as_os_str(),
    ]);
    run.assert_sane(64);
    let files = walk(&out)
        .into_iter()
        .filter(|p| out.join(p).is_file())
        .count();
    assert!(files >= 300, "{files} logs");
    let sink = &run.stats["counters"]["sink"];
    assert!(
        sink.as_object().is_some_and(|m| !m.is_empty()),
        "{}",
        run.stats
    );
    let closed_early = sink
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.contains("closed"))
        .filter_map(|(_, v)| v.as_u64())
        .sum::<u64>();
    assert!(closed_early >= 1, "{sink}");
}

// ---------------------------------------------------------------- fuzz replay

/// Every input the fuzzers kept (`fixtures/hostile/fuzz/<target>/`) runs
/// through its target's driver without a panic.
#[test]
fn fuzz_findings_replay_clean() {
    use imscan::event::Protocol;
    let root = hostile_dir().join("fuzz");
    let targets = std::fs::read_dir(&root).expect("fixtures/hostile/fuzz");
    let mut replayed = 0;
    for t in targets {
        let t = t.unwrap();
        if !t.path().is_dir() {
            continue;
        }
        let name = t.file_name().to_string_lossy().into_owned();
        let run: fn(&[u8]) = match name.as_str() {
            "capture" => drive::capture,
            "net" => drive::net,
            "tcp" => drive::tcp,
            "policy" => drive::policy,
            "proto_irc" => |d: &[u8]| drive::proto(Protocol::Irc, d),
            "proto_xmpp" => |d: &[u8]| drive::proto(Protocol::Xmpp, d),
            "proto_oscar" => |d: &[u8]| drive::proto(Protocol::Oscar, d),
            "proto_gadugadu" => |d: &[u8]| drive::proto(Protocol::GaduGadu, d),
            "proto_msn" => |d: &[u8]| drive::proto(Protocol::Msn, d),
            "proto_yahoo" => |d: &[u8]| drive::proto(Protocol::Yahoo, d),
            other => panic!("fixtures/hostile/fuzz/{other}: no such fuzz target"),
        };
        for f in std::fs::read_dir(t.path()).unwrap() {
            let f = f.unwrap().path();
            if f.is_dir() {
                continue;
            }
            run(&std::fs::read(&f).unwrap());
            replayed += 1;
        }
    }
    assert!(replayed > 0, "fixtures/hostile/fuzz exists but is empty");
}
