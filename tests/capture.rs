//! The capture stage from its front door (`CaptureReader`): every container
//! variant, gzip and stream input, the damage cases, and frame numbers and
//! timestamps equal to what tshark shows (recorded next to each fixture as
//! `<name>.tshark.tsv`, from `tshark -r F -T fields -e frame.number -e
//! frame.time_epoch -e frame.cap_len -e frame.len`).
//!
//! Every in-memory capture is read twice, memory-mapped from a temporary
//! file and as a stream trickled a few bytes per read, and both must agree.
//!
//! The generated fixtures in `fixtures/capture/` are rebuilt by
//! `generated_fixtures_are_current`; run it with `IMSCAN_BLESS=1` to rewrite
//! them after changing the generator.

mod support;

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

use imscan::capture::{
    CaptureError, CaptureReader, CaptureWarning, Damage, InputSummary, ReadOptions, Recovery,
};
use imscan::time::Timestamp;
use sha2::{Digest, Sha256};
use support::pcapfile::{pcapng, Interface, PcapFile, PcapNgFile, ETHERNET, LINUX_SLL, RAW};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// One delivered frame, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Got {
    index: u64,
    ts: Timestamp,
    link: u32,
    data: Vec<u8>,
    orig_len: u32,
}

#[derive(Debug)]
struct Outcome {
    frames: Vec<Got>,
    warnings: Vec<CaptureWarning>,
    summary: InputSummary,
}

/// Reads everything in small batches (so batch boundaries are crossed).
fn drain(mut r: CaptureReader) -> Outcome {
    let mut frames = Vec::new();
    let mut warnings = Vec::new();
    while let Some(batch) = r.next_batch(3, 1 << 20) {
        assert!(batch.len() <= 3);
        for f in batch.iter() {
            frames.push(Got {
                index: f.index,
                ts: f.ts,
                link: f.link_type.0,
                data: f.data.to_vec(),
                orig_len: f.orig_len,
            });
        }
        warnings.extend(r.take_warnings());
    }
    warnings.extend(r.take_warnings());
    Outcome {
        frames,
        warnings,
        summary: r.finish(),
    }
}

const HASH: ReadOptions = ReadOptions { hash: true };

fn read_path(path: &Path) -> Outcome {
    drain(CaptureReader::open(path.to_str().unwrap(), 0, HASH).expect("open"))
}

/// A reader that hands out at most `step` bytes per call.
struct Trickle {
    inner: Cursor<Vec<u8>>,
    step: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step);
        self.inner.read(&mut buf[..n])
    }
}

fn read_stream(bytes: &[u8], step: usize) -> Result<Outcome, CaptureError> {
    let t = Trickle {
        inner: Cursor::new(bytes.to_vec()),
        step,
    };
    CaptureReader::open_reader(t, "stream.pcap", 0, HASH).map(drain)
}

/// Reads `bytes` memory-mapped and as a trickled stream; both must agree.
fn read_both(bytes: &[u8]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.cap");
    std::fs::write(&path, bytes).unwrap();
    let mapped = read_path(&path);
    let streamed = read_stream(bytes, 7).expect("stream open");
    assert_eq!(
        mapped.frames, streamed.frames,
        "map and stream disagree on frames"
    );
    let what = |w: &[CaptureWarning]| {
        w.iter()
            .map(|w| (w.offset, w.frame, w.what.clone(), w.recovery.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(what(&mapped.warnings), what(&streamed.warnings));
    assert_eq!(mapped.summary.stats.frames, streamed.summary.stats.frames);
    assert_eq!(mapped.summary.stats.damaged, streamed.summary.stats.damaged);
    assert_eq!(mapped.summary.sha256, streamed.summary.sha256);
    assert_eq!(
        mapped.summary.sha256,
        Some(hex::encode(Sha256::digest(bytes)))
    );
    mapped
}

fn ts(secs: i64, nanos: u32) -> Timestamp {
    Timestamp::from_secs_nanos(secs, nanos)
}

/// A well-formed Ethernet (or raw IP, or Linux SLL) IPv4/UDP frame with
/// `payload_len` payload bytes, so tshark decodes the fixtures cleanly.
fn udp_frame(link: u32, seed: u8, payload_len: usize) -> Vec<u8> {
    let mut ip = vec![
        0x45, 0, 0, 0, 0, seed, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    let total = (20 + 8 + payload_len) as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let mut sum: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let udp_len = (8 + payload_len) as u16;
    ip.extend_from_slice(&(40000u16 + u16::from(seed)).to_be_bytes());
    ip.extend_from_slice(&5222u16.to_be_bytes());
    ip.extend_from_slice(&udp_len.to_be_bytes());
    ip.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
    ip.extend((0..payload_len).map(|i| b'a' + ((i + seed as usize) % 26) as u8));
    let mut frame = match link {
        ETHERNET => vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00],
        LINUX_SLL => vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00],
        _ => Vec::new(),
    };
    frame.extend_from_slice(&ip);
    frame
}

// ---- generated fixtures -------------------------------------------------

const T0: i64 = 1_700_000_000;

fn le_usec() -> Vec<u8> {
    let a = udp_frame(ETHERNET, 1, 20);
    let b = udp_frame(ETHERNET, 2, 200);
    let c = udp_frame(ETHERNET, 3, 100);
    let mut f = PcapFile::new(false, false, ETHERNET, 262_144);
    f.record(ts(T0, 123_456_000), &a, a.len() as u32)
        .record(ts(T0, 623_456_000), &b, b.len() as u32)
        // snaplen-truncated: 60 of the frame's bytes captured
        .record(ts(T0 + 1, 0), &c[..60], c.len() as u32);
    f.bytes()
}

fn be_nsec() -> Vec<u8> {
    let a = udp_frame(RAW, 4, 10);
    let b = udp_frame(RAW, 5, 30);
    let mut f = PcapFile::new(true, true, RAW, 65_535);
    f.record(ts(T0, 123_456_789), &a, a.len() as u32).record(
        ts(T0, 123_456_790),
        &b,
        b.len() as u32,
    );
    f.bytes()
}

fn interfaces_pcapng() -> Vec<u8> {
    let e = udp_frame(ETHERNET, 6, 40);
    let r = udp_frame(RAW, 7, 40);
    let s = udp_frame(LINUX_SLL, 8, 40);
    pcapng(
        &[
            Interface::new(ETHERNET),
            Interface::new(RAW).tsresol(9),
            // 2^-20 s units, seconds counted from 1.6e9
            Interface::new(LINUX_SLL)
                .tsresol(0x80 | 20)
                .tsoffset(1_600_000_000),
        ],
        &[
            (0, ts(T0, 1_000), &e, e.len() as u32),
            (1, ts(T0, 2_345), &r, r.len() as u32),
            (2, ts(T0 + 1, 500_000_000), &s, s.len() as u32),
            (0, ts(T0 + 2, 999_999_000), &e, e.len() as u32),
            (1, ts(T0 + 3, 1), &r, r.len() as u32),
        ],
    )
}

fn sections_pcapng() -> Vec<u8> {
    let e = udp_frame(ETHERNET, 9, 16);
    let r = udp_frame(RAW, 10, 24);
    let mut f = PcapNgFile::new(false);
    f.interface(Interface::new(ETHERNET));
    f.epb(0, ts(T0, 1_000), &e, e.len() as u32)
        // a block type nobody defined: skipped
        .block(0x0000_0bee, b"not a packet")
        .spb(&e, e.len() as u32)
        .obsolete_packet(0, ts(T0 + 1, 0), &e, e.len() as u32)
        .section(true);
    f.interface(Interface::new(RAW).tsresol(9));
    f.epb(0, ts(T0 + 2, 5), &r, r.len() as u32)
        .epb(0, ts(T0 + 3, 6), &r, r.len() as u32);
    f.bytes()
}

/// A big-endian section whose interfaces have if_tsoffset (negative and
/// positive) and a power-of-2 and a millisecond resolution.
fn be_tsoffset_pcapng() -> Vec<u8> {
    let e = udp_frame(ETHERNET, 40, 12);
    let r = udp_frame(RAW, 41, 12);
    let mut f = PcapNgFile::new(true);
    f.interface(
        Interface::new(ETHERNET)
            .tsresol(0x80 | 30)
            .tsoffset(-86_400),
    );
    f.interface(Interface::new(RAW).tsresol(3).tsoffset(1_000_000_000));
    f.epb(0, ts(T0, 250_000_000), &e, e.len() as u32)
        .epb(1, ts(T0, 7_000_000), &r, r.len() as u32);
    f.bytes()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn bad_magic() -> Vec<u8> {
    let mut v = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    v.resize(64, 0);
    v
}

fn truncated_pcap() -> Vec<u8> {
    let mut v = le_usec();
    v.truncate(v.len() - 20);
    v
}

/// A 1 KB pcapng whose third block claims 4 GB; a good packet block follows
/// inside the claimed range and is found again.
fn block_4gb_pcapng() -> Vec<u8> {
    let e = udp_frame(ETHERNET, 11, 30);
    let mut f = PcapNgFile::new(false);
    f.interface(Interface::new(ETHERNET));
    f.epb(0, ts(T0, 0), &e, e.len() as u32);
    f.raw(&0x0000_0006u32.to_le_bytes())
        .raw(&0xffff_fff0u32.to_le_bytes())
        .raw(&[0xab; 20]);
    f.epb(0, ts(T0, 1_000), &e, e.len() as u32);
    // Fill to exactly 1024 bytes with a block of a type nobody defined.
    let fill = 1024 - f.len() - 12;
    f.block(0x0000_0bee, &vec![0; fill]);
    f.bytes()
}

/// A record claiming 4 GB between two good records.
fn record_4gb_pcap() -> Vec<u8> {
    let a = udp_frame(ETHERNET, 12, 30);
    let mut f = PcapFile::new(false, false, ETHERNET, 65_535);
    f.record(ts(T0, 0), &a, a.len() as u32)
        .raw_record(T0 as u32, 1, u32::MAX, u32::MAX, &[0x55; 12])
        .record(ts(T0, 2_000), &a, a.len() as u32);
    f.bytes()
}

/// Five records; the third's header is overwritten with garbage.
fn corrupt_middle_pcap() -> Vec<u8> {
    let mut f = PcapFile::new(false, false, ETHERNET, 65_535);
    let mut third = 0;
    for i in 0..5u8 {
        if i == 2 {
            third = f.len();
        }
        let d = udp_frame(ETHERNET, 20 + i, 30 + usize::from(i) * 10);
        f.record(ts(T0 + i64::from(i), 0), &d, d.len() as u32);
    }
    let mut v = f.bytes();
    v[third..third + 16].fill(0xee);
    v
}

fn snaplen_pcap(snaplen: u32) -> Vec<u8> {
    let a = udp_frame(ETHERNET, 13, 30);
    let mut f = PcapFile::new(false, false, ETHERNET, snaplen);
    f.record(ts(T0, 0), &a, a.len() as u32)
        .record(ts(T0, 1_000), &a, a.len() as u32);
    f.bytes()
}

fn unknown_interface_pcapng() -> Vec<u8> {
    let e = udp_frame(ETHERNET, 14, 30);
    let mut f = PcapNgFile::new(false);
    f.interface(Interface::new(ETHERNET));
    f.epb(0, ts(T0, 0), &e, e.len() as u32)
        .epb(3, ts(T0, 1_000), &e, e.len() as u32)
        .epb(0, ts(T0, 2_000), &e, e.len() as u32);
    f.bytes()
}

fn unaligned_block_pcapng() -> Vec<u8> {
    let e = udp_frame(ETHERNET, 15, 30);
    let mut f = PcapNgFile::new(false);
    f.interface(Interface::new(ETHERNET));
    f.epb(0, ts(T0, 0), &e, e.len() as u32);
    let bad_at = f.len();
    f.epb(0, ts(T0, 1_000), &e, e.len() as u32)
        .epb(0, ts(T0, 2_000), &e, e.len() as u32);
    let mut v = f.bytes();
    let len = u32::from_le_bytes(v[bad_at + 4..bad_at + 8].try_into().unwrap());
    v[bad_at + 4..bad_at + 8].copy_from_slice(&(len + 2).to_le_bytes());
    v
}

fn caplen_over_origlen_pcap() -> Vec<u8> {
    let a = udp_frame(ETHERNET, 16, 30);
    let mut f = PcapFile::new(false, false, ETHERNET, 65_535);
    f.record(ts(T0, 0), &a, 20)
        .record(ts(T0, 1_000), &a, a.len() as u32);
    f.bytes()
}

/// Every generated fixture checked into fixtures/capture/.
fn generated() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("capture/le-usec.pcap", le_usec()),
        ("capture/be-nsec.pcap", be_nsec()),
        ("capture/interfaces.pcapng", interfaces_pcapng()),
        ("capture/sections.pcapng", sections_pcapng()),
        ("capture/be-tsoffset.pcapng", be_tsoffset_pcapng()),
        ("capture/damaged/bad-magic.pcap", bad_magic()),
        ("capture/damaged/empty.pcap", Vec::new()),
        ("capture/damaged/header-only.pcap", le_usec()[..24].to_vec()),
        ("capture/damaged/truncated.pcap", truncated_pcap()),
        ("capture/damaged/block-4gb.pcapng", block_4gb_pcapng()),
        ("capture/damaged/record-4gb.pcap", record_4gb_pcap()),
        ("capture/damaged/corrupt-middle.pcap", corrupt_middle_pcap()),
        ("capture/damaged/snaplen-0.pcap", snaplen_pcap(0)),
        ("capture/damaged/snaplen-max.pcap", snaplen_pcap(u32::MAX)),
        (
            "capture/damaged/unknown-interface.pcapng",
            unknown_interface_pcapng(),
        ),
        (
            "capture/damaged/unaligned-block.pcapng",
            unaligned_block_pcapng(),
        ),
        (
            "capture/damaged/caplen-over-origlen.pcap",
            caplen_over_origlen_pcap(),
        ),
    ]
}

#[test]
fn generated_fixtures_are_current() {
    let bless = std::env::var_os("IMSCAN_BLESS").is_some();
    for (rel, bytes) in generated() {
        let path = fixture(rel);
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(
            on_disk == bytes,
            "{rel} differs from the generator; IMSCAN_BLESS=1 rewrites it"
        );
    }
    let gz = fixture("capture/le-usec.pcap.gz");
    if bless {
        std::fs::write(&gz, gzip(&le_usec())).unwrap();
    }
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&gz).unwrap())
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, le_usec());
}

// ---- comparison with tshark --------------------------------------------

/// Rows of a `.tshark.tsv`: frame number, epoch time, caplen, frame length.
fn tshark_rows(rel: &str) -> Vec<(u64, String, usize, u32)> {
    let text = std::fs::read_to_string(fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (
                c[0].parse().unwrap(),
                c[1].to_owned(),
                c[2].parse().unwrap(),
                c[3].parse().unwrap(),
            )
        })
        .collect()
}

fn epoch9(t: Timestamp) -> String {
    format!("{}.{:09}", t.secs(), t.subsec_nanos())
}

fn assert_matches_tshark(capture: &str) {
    let out = read_path(&fixture(capture));
    let rows = tshark_rows(&format!("{capture}.tshark.tsv"));
    assert!(!rows.is_empty());
    // tshark shows no time for a Simple Packet Block; ours reuses the previous.
    let ours: Vec<_> = out
        .frames
        .iter()
        .zip(&rows)
        .map(|(f, r)| {
            let t = if r.1.is_empty() {
                String::new()
            } else {
                epoch9(f.ts)
            };
            (f.index, t, f.data.len(), f.orig_len)
        })
        .collect();
    assert_eq!(out.frames.len(), rows.len(), "{capture}: frame count");
    assert_eq!(ours, rows, "{capture}: frames differ from tshark");
    assert!(out.warnings.is_empty(), "{capture}: {:?}", out.warnings);
    let bytes = std::fs::read(fixture(capture)).unwrap();
    let streamed = read_stream(&bytes, 1500).unwrap();
    assert_eq!(
        streamed.frames, out.frames,
        "{capture}: stream differs from map"
    );
    assert_eq!(
        out.summary.sha256,
        Some(hex::encode(Sha256::digest(&bytes)))
    );
    assert_eq!(out.summary.size, Some(bytes.len() as u64));
}

#[test]
fn real_captures_match_tshark() {
    for name in [
        "real/msnms.pcap",
        "real/ndpi-jabber.pcap",
        "real/irc-inspircd-port7000-ircv3.pcapng",
        "real/zeek-irc-dcc-first-command.pcap",
    ] {
        assert_matches_tshark(name);
    }
}

#[test]
fn generated_captures_match_tshark() {
    for name in [
        "capture/le-usec.pcap",
        "capture/be-nsec.pcap",
        "capture/interfaces.pcapng",
        "capture/sections.pcapng",
        "capture/be-tsoffset.pcapng",
    ] {
        assert_matches_tshark(name);
    }
}

// ---- formats -------------------------------------------------------------

#[test]
fn pcap_both_byte_orders_and_resolutions() {
    let d = udp_frame(ETHERNET, 30, 10);
    for be in [false, true] {
        for nanos in [false, true] {
            let mut f = PcapFile::new(be, nanos, ETHERNET, 65_535);
            f.record(ts(T0, 123_456_789), &d, d.len() as u32).record(
                ts(T0 + 5, 1_000),
                &d[..14],
                d.len() as u32,
            );
            let out = read_both(&f.bytes());
            let want_frac = if nanos { 123_456_789 } else { 123_456_000 };
            assert_eq!(out.frames.len(), 2, "be={be} nanos={nanos}");
            assert_eq!(out.frames[0].ts, ts(T0, want_frac));
            assert_eq!(out.frames[0].data, d);
            assert_eq!(out.frames[1].ts, ts(T0 + 5, 1_000));
            assert_eq!(out.frames[1].data, &d[..14]);
            assert_eq!(out.frames[1].orig_len, d.len() as u32);
            assert_eq!(out.summary.stats.snaplen_truncated, 1);
            assert!(out.warnings.is_empty());
            assert_eq!(out.summary.format, "pcap");
        }
    }
}

#[test]
fn pcapng_interfaces_with_their_link_types_and_resolutions() {
    let out = read_both(&interfaces_pcapng());
    let got: Vec<_> = out.frames.iter().map(|f| (f.index, f.link, f.ts)).collect();
    assert_eq!(
        got,
        vec![
            (1, ETHERNET, ts(T0, 1_000)),
            (2, RAW, ts(T0, 2_345)),
            // 2^-20 s units: 0.5 s is exact
            (3, LINUX_SLL, ts(T0 + 1, 500_000_000)),
            (4, ETHERNET, ts(T0 + 2, 999_999_000)),
            (5, RAW, ts(T0 + 3, 1)),
        ]
    );
    assert_eq!(out.summary.link_types, vec![ETHERNET, RAW, LINUX_SLL]);
    assert_eq!(out.summary.first_time_ns, Some(ts(T0, 1_000).0));
    assert_eq!(out.summary.last_time_ns, Some(ts(T0 + 3, 1).0));
    assert!(out.warnings.is_empty());
}

#[test]
fn pcapng_sections_of_both_orders_spb_obsolete_and_unknown_blocks() {
    let out = read_both(&sections_pcapng());
    let got: Vec<_> = out.frames.iter().map(|f| (f.index, f.link, f.ts)).collect();
    assert_eq!(
        got,
        vec![
            (1, ETHERNET, ts(T0, 1_000)),
            // the Simple Packet Block reuses the previous timestamp
            (2, ETHERNET, ts(T0, 1_000)),
            (3, ETHERNET, ts(T0 + 1, 0)),
            // the big-endian section's interface 0 is raw IP, ns resolution
            (4, RAW, ts(T0 + 2, 5)),
            (5, RAW, ts(T0 + 3, 6)),
        ]
    );
    assert_eq!(out.frames[1].data, out.frames[0].data);
    assert_eq!(out.summary.stats.unknown_blocks, 1);
    assert!(out.warnings.is_empty());
    assert_eq!(out.summary.format, "pcapng");
}

#[test]
fn big_endian_section_with_tsoffset_and_binary_resolution() {
    let out = read_both(&be_tsoffset_pcapng());
    let got: Vec<_> = out.frames.iter().map(|f| (f.link, f.ts)).collect();
    // 0.25 s is exact in 2^-30 s units; 7 ms in ms units.
    assert_eq!(
        got,
        vec![(ETHERNET, ts(T0, 250_000_000)), (RAW, ts(T0, 7_000_000))]
    );
    assert!(out.warnings.is_empty());
}

#[test]
fn gzip_file_and_gzip_stream() {
    let plain = read_path(&fixture("capture/le-usec.pcap"));
    let gz_path = fixture("capture/le-usec.pcap.gz");
    let gz = read_path(&gz_path);
    assert_eq!(gz.frames, plain.frames);
    assert!(gz.summary.gzip);
    let gz_bytes = std::fs::read(&gz_path).unwrap();
    // The hash is of the compressed file, as sha256sum prints it.
    assert_eq!(
        gz.summary.sha256,
        Some(hex::encode(Sha256::digest(&gz_bytes)))
    );
    assert_eq!(gz.summary.size, Some(gz_bytes.len() as u64));
    assert_eq!(gz.summary.stats.bytes_read, gz_bytes.len() as u64);
    let streamed = read_stream(&gz_bytes, 5).unwrap();
    assert_eq!(streamed.frames, plain.frames);
    assert_eq!(streamed.summary.sha256, gz.summary.sha256);
}

#[test]
fn gzip_cut_short_keeps_what_was_decoded() {
    let full = read_both(&le_usec());
    let gz = gzip(&le_usec());
    let out = read_stream(&gz[..gz.len() - 30], 64).unwrap();
    assert!(out.frames.len() < 3);
    assert_eq!(out.frames[..], full.frames[..out.frames.len()]);
    assert!(
        out.warnings.iter().any(|w| matches!(
            w.what,
            Damage::ReadFailed { .. }
                | Damage::RecordOverrun { .. }
                | Damage::TruncatedHeader { .. }
        )),
        "{:?}",
        out.warnings
    );
    assert!(out.summary.stats.damaged >= 1);
    // The hash is still of the bytes given.
    assert_eq!(
        out.summary.sha256,
        Some(hex::encode(Sha256::digest(&gz[..gz.len() - 30])))
    );
}

#[test]
fn gzip_of_nothing_is_an_error() {
    let err = read_stream(&gzip(b""), 4096).unwrap_err();
    assert_eq!(
        err.to_string(),
        "stream.pcap: gzip content is empty, not a pcap or pcapng file"
    );
}

#[test]
fn gzip_of_something_else_is_an_error() {
    let err = read_stream(&gzip(b"hello world"), 4096).unwrap_err();
    assert_eq!(
        err.to_string(),
        "stream.pcap: gzip content is not a pcap or pcapng file (first bytes 68 65 6c 6c)"
    );
}

#[test]
fn stdin_style_pipe_input() {
    // A real OS pipe: `cat` copies what a writer thread feeds it in small
    // pieces; the reader gets cat's stdout, as `imscan -` gets its stdin.
    let bytes = sections_pcapng();
    let mut cat = std::process::Command::new("cat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cat");
    let mut to_cat = cat.stdin.take().unwrap();
    let feed = bytes.clone();
    let writer = std::thread::spawn(move || {
        for chunk in feed.chunks(13) {
            to_cat.write_all(chunk).unwrap();
        }
    });
    let from_cat = cat.stdout.take().unwrap();
    let out = drain(CaptureReader::open_reader(from_cat, "-", 0, HASH).unwrap());
    writer.join().unwrap();
    cat.wait().unwrap();
    assert_eq!(out.frames, read_both(&bytes).frames);
    assert_eq!(out.summary.path, "-");
    assert_eq!(out.summary.size, Some(bytes.len() as u64));
    assert_eq!(
        out.summary.sha256,
        Some(hex::encode(Sha256::digest(&bytes)))
    );
}

#[test]
fn header_only_is_zero_frames_without_damage() {
    let out = read_both(&le_usec()[..24]);
    assert!(out.frames.is_empty());
    assert!(out.warnings.is_empty());
    assert_eq!(out.summary.stats.damaged, 0);
    let ng = PcapNgFile::new(true).bytes();
    let out = read_both(&ng);
    assert!(out.frames.is_empty());
    assert!(out.warnings.is_empty());
}

// ---- damage ----------------------------------------------------------------

fn open_err(rel: &str) -> String {
    let path = fixture(rel);
    match CaptureReader::open(path.to_str().unwrap(), 0, HASH) {
        Ok(_) => panic!("{rel} opened"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_magic_empty_and_missing_are_errors_naming_the_file() {
    let p = fixture("capture/damaged/bad-magic.pcap");
    assert_eq!(
        open_err("capture/damaged/bad-magic.pcap"),
        format!(
            "{}: not a pcap or pcapng file (first bytes 7f 45 4c 46)",
            p.display()
        )
    );
    let p = fixture("capture/damaged/empty.pcap");
    assert_eq!(
        open_err("capture/damaged/empty.pcap"),
        format!(
            "{}: empty file (0 bytes), not a pcap or pcapng file",
            p.display()
        )
    );
    let p = fixture("capture/no-such-file.pcap");
    assert_eq!(
        open_err("capture/no-such-file.pcap"),
        format!("{}: No such file or directory", p.display())
    );
    assert!(matches!(
        read_stream(&[], 1),
        Err(CaptureError::Empty { .. })
    ));
    assert!(matches!(
        read_stream(b"\xd4\xc3", 1),
        Err(CaptureError::NotCapture { .. })
    ));
}

#[test]
fn truncated_last_record_is_a_warning() {
    let out = read_both(&truncated_pcap());
    assert_eq!(out.frames.len(), 2);
    assert_eq!(out.warnings.len(), 1);
    let w = &out.warnings[0];
    assert!(matches!(w.what, Damage::RecordOverrun { .. }), "{w}");
    assert!(matches!(w.recovery, Recovery::SkippedToEnd { .. }), "{w}");
    assert_eq!(out.summary.stats.damaged, 1);
    // Cut inside the record header instead.
    let mut v = le_usec();
    let second_record_end =
        24 + 16 + udp_frame(ETHERNET, 1, 20).len() + 16 + udp_frame(ETHERNET, 2, 200).len();
    v.truncate(second_record_end + 9);
    let out = read_both(&v);
    assert_eq!(out.frames.len(), 2);
    assert_eq!(out.warnings[0].what, Damage::TruncatedHeader { left: 9 });
    assert_eq!(out.warnings[0].offset, second_record_end as u64);
}

#[test]
fn block_length_of_4gb_in_a_1kb_file() {
    let bytes = block_4gb_pcapng();
    assert_eq!(bytes.len(), 1024);
    let out = read_both(&bytes);
    let idx: Vec<_> = out.frames.iter().map(|f| (f.index, f.ts)).collect();
    assert_eq!(idx, vec![(1, ts(T0, 0)), (2, ts(T0, 1_000))]);
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    let w = &out.warnings[0];
    assert!(
        matches!(
            w.what,
            Damage::BlockOverrun {
                block_type: 6,
                len: 4_294_967_280,
                ..
            }
        ),
        "{w}"
    );
    assert!(
        matches!(w.recovery, Recovery::Resynced { skipped: 28, .. }),
        "{w}"
    );
    assert_eq!(out.summary.stats.resyncs, 1);
    // Without anything good after it: skipped to the end.
    let mut f = PcapNgFile::new(false);
    f.interface(Interface::new(ETHERNET));
    f.raw(&6u32.to_le_bytes())
        .raw(&0xffff_fffcu32.to_le_bytes());
    let mut v = f.bytes();
    v.resize(1024, 0);
    let out = read_both(&v);
    assert!(out.frames.is_empty());
    assert!(matches!(
        out.warnings[0].recovery,
        Recovery::SkippedToEnd { .. }
    ));
    assert!(
        out.warnings[0].to_string().contains("overruns the file"),
        "{}",
        out.warnings[0]
    );
}

#[test]
fn record_length_of_4gb() {
    let out = read_both(&record_4gb_pcap());
    assert_eq!(out.frames.len(), 2);
    assert_eq!(out.frames[1].ts, ts(T0, 2_000));
    let w = &out.warnings[0];
    assert!(
        matches!(
            w.what,
            Damage::RecordOverrun {
                len: 4_294_967_295,
                ..
            }
        ),
        "{w}"
    );
    assert!(
        matches!(w.recovery, Recovery::Resynced { skipped: 28, .. }),
        "{w}"
    );
    // The same record as the last thing in a 1 KB file.
    let mut f = PcapFile::new(false, false, ETHERNET, 65_535);
    f.raw_record(T0 as u32, 0, u32::MAX, u32::MAX, &[0; 984]);
    let v = f.bytes();
    assert_eq!(v.len(), 1024);
    let out = read_both(&v);
    assert!(out.frames.is_empty());
    assert_eq!(
        out.warnings[0].to_string(),
        "stream.pcap: byte 24: record length 4294967295 overruns the file (984 bytes left); skipped to the end (1000 bytes)"
            .replace("stream.pcap", &out.summary.path)
    );
}

#[test]
fn corrupt_record_in_the_middle_resyncs_and_keeps_later_frames() {
    let out = read_both(&corrupt_middle_pcap());
    let secs: Vec<_> = out
        .frames
        .iter()
        .map(|f| (f.index, f.ts.secs() - T0))
        .collect();
    // The third record is lost; the fourth and fifth are found again.
    assert_eq!(secs, vec![(1, 0), (2, 1), (3, 3), (4, 4)]);
    assert_eq!(out.warnings.len(), 1);
    assert!(matches!(
        out.warnings[0].recovery,
        Recovery::Resynced { .. }
    ));
    assert_eq!(out.summary.stats.resyncs, 1);
    assert_eq!(out.frames[2].data, udp_frame(ETHERNET, 23, 60));
}

#[test]
fn snaplen_0_and_max_are_warnings_and_frames_still_read() {
    for snaplen in [0, u32::MAX] {
        let out = read_both(&snaplen_pcap(snaplen));
        assert_eq!(out.frames.len(), 2);
        assert_eq!(out.warnings.len(), 1);
        assert_eq!(out.warnings[0].what, Damage::BadSnaplen { snaplen });
        assert_eq!(out.warnings[0].offset, 16);
    }
}

#[test]
fn interface_that_does_not_exist() {
    let out = read_both(&unknown_interface_pcapng());
    let idx: Vec<_> = out.frames.iter().map(|f| f.index).collect();
    // Frame 2 names interface 3: skipped, but it keeps its number.
    assert_eq!(idx, vec![1, 3]);
    assert_eq!(out.warnings.len(), 1);
    assert_eq!(out.warnings[0].frame, Some(2));
    assert_eq!(
        out.warnings[0].what,
        Damage::UnknownInterface {
            interface: 3,
            known: 1
        }
    );
}

#[test]
fn block_length_not_a_multiple_of_4() {
    let out = read_both(&unaligned_block_pcapng());
    let idx: Vec<_> = out.frames.iter().map(|f| f.ts).collect();
    assert_eq!(idx, vec![ts(T0, 0), ts(T0, 2_000)]);
    assert!(matches!(
        out.warnings[0].what,
        Damage::BlockLenUnaligned { .. }
    ));
    assert!(matches!(
        out.warnings[0].recovery,
        Recovery::Resynced { .. }
    ));
}

#[test]
fn block_shorter_than_its_header() {
    let mut f = PcapNgFile::new(false);
    f.interface(Interface::new(ETHERNET));
    f.raw(&6u32.to_le_bytes())
        .raw(&16u32.to_le_bytes())
        .raw(&[0; 4])
        .raw(&16u32.to_le_bytes());
    let e = udp_frame(ETHERNET, 1, 8);
    f.epb(0, ts(T0, 0), &e, e.len() as u32);
    let out = read_both(&f.bytes());
    assert_eq!(out.frames.len(), 1);
    assert_eq!(
        out.warnings[0].what,
        Damage::BlockTooShort {
            block_type: 6,
            len: 16,
            min: 32
        }
    );
}

#[test]
fn caplen_over_origlen_is_delivered_and_counted() {
    let out = read_both(&caplen_over_origlen_pcap());
    assert_eq!(out.frames.len(), 2);
    assert_eq!(out.warnings[0].recovery, Recovery::Delivered);
    assert_eq!(out.warnings[0].frame, Some(1));
    assert_eq!(out.summary.stats.damaged, 1);
}

#[test]
fn epb_caplen_beyond_its_block_is_skipped() {
    let mut f = PcapNgFile::new(false);
    f.interface(Interface::new(ETHERNET));
    f.raw_epb(0, 1, 4096, 4096, &[1, 2, 3, 4]);
    let e = udp_frame(ETHERNET, 1, 8);
    f.epb(0, ts(T0, 0), &e, e.len() as u32);
    let out = read_both(&f.bytes());
    assert_eq!(
        out.frames.iter().map(|f| f.index).collect::<Vec<_>>(),
        vec![2]
    );
    assert!(matches!(
        out.warnings[0].what,
        Damage::PacketOverrunsBlock { caplen: 4096, .. }
    ));
}

#[test]
fn hostile_bytes_never_panic() {
    // Cut and corrupt the fixtures at many places; the reader must finish.
    let bases = [le_usec(), be_nsec(), interfaces_pcapng(), sections_pcapng()];
    for base in &bases {
        let full = read_both(base).frames;
        for cut in 4..base.len() {
            // A cut file yields a prefix of the frames, never invented ones.
            let out = read_stream(&base[..cut], 3).expect("magic intact");
            assert_eq!(out.frames[..], full[..out.frames.len()], "cut at {cut}");
            assert!(out.frames.len() < full.len());
        }
        for at in 0..base.len() {
            let mut v = base.clone();
            v[at] ^= 0xa5;
            if let Ok(out) = read_stream(&v, 11) {
                assert!(out.summary.stats.frames <= 6);
            }
        }
    }
}

#[test]
fn batches_respect_frame_and_byte_limits() {
    let path = fixture("real/ndpi-jabber.pcap");
    let mut r = CaptureReader::open(path.to_str().unwrap(), 7, ReadOptions::default()).unwrap();
    let mut n = 0;
    let mut last_index = 0;
    while let Some(b) = r.next_batch(50, 2_000) {
        assert!(b.len() <= 50);
        assert_eq!(b.source, 7);
        // one frame may cross the byte limit, never two
        let without_last = b.captured_bytes() - b.frame(b.len() - 1).data.len() as u64;
        assert!(without_last < 2_000);
        for f in b.iter() {
            assert_eq!(f.index, last_index + 1);
            last_index = f.index;
            n += 1;
        }
        assert!(r.stats().bytes_read <= r.stats().total_bytes.unwrap());
    }
    assert_eq!(n, 376);
    let s = r.finish();
    assert_eq!(s.sha256, None);
    assert_eq!(s.stats.bytes_read, s.size.unwrap());
}
