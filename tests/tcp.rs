//! Model-based tests of TCP reassembly: a random byte stream is cut into
//! random segments, which are reordered, duplicated, overlapped (same bytes)
//! and partly dropped; what the flow table delivers must equal the model.
//! Also: split invariance through the harness, and the flow budget under a
//! SYN flood.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

use imscan::capture::FrameRef;
use imscan::net::{Dir, Endpoint, FlowKey, TcpFlags, TcpSegment, Transport};
use imscan::tcp::export::{FlowExport, StreamExport};
use imscan::tcp::harness::{check_split_invariance, Conversation, Recorded, Recorder, Side};
use imscan::tcp::{CloseReason, FlowTable, TcpConfig, Tee};
use imscan::time::Timestamp;
use proptest::prelude::*;

fn key(port: u16) -> FlowKey {
    let client = Endpoint {
        ip: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10)),
        port,
    };
    let server = Endpoint {
        ip: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)),
        port: 1863,
    };
    FlowKey::new(Transport::Tcp, client, server).0
}

/// One segment to send: its range of the stream.
#[derive(Clone, Debug)]
struct Send {
    start: usize,
    end: usize,
    fin: bool,
}

/// A scenario: the stream, the segments in capture order, and what survives.
#[derive(Clone, Debug)]
struct Scenario {
    isn: u32,
    stream: Vec<u8>,
    sends: Vec<Send>,
}

impl Scenario {
    /// Which stream bytes some sent segment carried.
    fn covered(&self) -> Vec<bool> {
        let mut c = vec![false; self.stream.len()];
        for s in &self.sends {
            for b in &mut c[s.start..s.end] {
                *b = true;
            }
        }
        c
    }

    /// The model: runs of carried bytes are Data, runs of bytes no segment
    /// carried are Gaps (up to the FIN, which is always sent).
    fn expected(&self) -> Vec<Recorded> {
        let mut out: Vec<Recorded> = Vec::new();
        for (i, carried) in self.covered().into_iter().enumerate() {
            match (out.last_mut(), carried) {
                (Some(Recorded::Data(d)), true) => d.push(self.stream[i]),
                (Some(Recorded::Gap(n)), false) => *n += 1,
                (_, true) => out.push(Recorded::Data(vec![self.stream[i]])),
                (_, false) => out.push(Recorded::Gap(1)),
            }
        }
        out
    }
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 1..2500),
        any::<u64>(),
    )
        .prop_map(|(isn, stream, seed)| {
            let mut rng = seed;
            let mut next = move |n: usize| -> usize {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % n.max(1) as u64) as usize
            };
            let len = stream.len();
            let mut sends = Vec::new();
            let mut pos = 0;
            while pos < len {
                let end = (pos + 1 + next(300)).min(len);
                match next(10) {
                    0 => {} // dropped
                    1 => {
                        // duplicated
                        sends.push(Send {
                            start: pos,
                            end,
                            fin: false,
                        });
                        sends.push(Send {
                            start: pos,
                            end,
                            fin: false,
                        });
                    }
                    _ => sends.push(Send {
                        start: pos,
                        end,
                        fin: false,
                    }),
                }
                pos = end;
            }
            // Overlapping retransmissions of random ranges (same bytes).
            for _ in 0..next(6) {
                let a = next(len);
                let b = (a + 1 + next(400)).min(len);
                sends.push(Send {
                    start: a,
                    end: b,
                    fin: false,
                });
            }
            // Reorder: a random permutation.
            for i in (1..sends.len()).rev() {
                let j = next(i + 1);
                sends.swap(i, j);
            }
            // The FIN comes last, with no bytes.
            sends.push(Send {
                start: len,
                end: len,
                fin: true,
            });
            Scenario { isn, stream, sends }
        })
}

fn segment<'a>(
    key: FlowKey,
    seq: u32,
    flags: u8,
    payload: &'a [u8],
    frame: u64,
    ts: i64,
) -> TcpSegment<'a> {
    TcpSegment {
        key,
        dir: Dir::LoToHi,
        seq,
        ack: 0,
        flags: TcpFlags(flags),
        window: 0,
        payload: Cow::Borrowed(payload),
        frame: FrameRef {
            source: 0,
            index: frame,
        },
        ts: Timestamp(ts),
    }
}

/// Run a scenario through a flow table; `advance_every` > 0 also advances time.
fn run(sc: &Scenario, cfg: TcpConfig, advance_every: usize) -> (Recorder, imscan::tcp::TcpStats) {
    let k = key(40000);
    let mut table: FlowTable<Recorder> = FlowTable::new(cfg);
    table.segment(&segment(k, sc.isn, TcpFlags::SYN, b"", 1, 0), |_| {
        Recorder::default()
    });
    for (i, s) in sc.sends.iter().enumerate() {
        let seq = sc.isn.wrapping_add(1).wrapping_add(s.start as u32);
        let flags = TcpFlags::ACK | if s.fin { TcpFlags::FIN } else { 0 };
        let ts = (i as i64 + 1) * 1_000_000;
        let frame = i as u64 + 2;
        table.segment(
            &segment(k, seq, flags, &sc.stream[s.start..s.end], frame, ts),
            |_| panic!("the flow exists"),
        );
        if advance_every > 0 && i % advance_every == 0 {
            table.advance(
                Timestamp(ts),
                FrameRef {
                    source: 0,
                    index: frame,
                },
            );
        }
    }
    table.finish(FrameRef {
        source: 0,
        index: u64::MAX,
    });
    let mut closed = table.take_closed();
    assert_eq!(closed.len(), 1);
    assert_eq!(table.buffered_bytes(), 0);
    (closed.pop().unwrap(), table.stats().clone())
}

/// Every chunk's offset continues the previous one and every Data byte is
/// the stream's byte at that offset.
fn assert_faithful(r: &Recorder, stream: &[u8]) -> u64 {
    let mut off = 0u64;
    for (c, info) in &r.chunks {
        assert_eq!(info.dir, Dir::LoToHi);
        assert_eq!(info.offset, off, "offsets must be continuous");
        match c {
            Recorded::Data(d) => {
                let at = off as usize;
                assert_eq!(&stream[at..at + d.len()], &d[..], "data at offset {off}");
                off += d.len() as u64;
            }
            Recorded::Gap(n) => {
                assert!(*n > 0);
                off += n;
            }
        }
    }
    off
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// No time passes and budgets are large: every byte some segment carried is
    /// delivered once, in order, and the gaps are exactly the bytes no segment
    /// carried.
    #[test]
    fn delivered_stream_equals_the_model(sc in scenario()) {
        let (r, stats) = run(&sc, TcpConfig::default(), 0);
        prop_assert_eq!(r.stream(Dir::LoToHi), sc.expected());
        let gap_bytes: u64 = sc.covered().iter().filter(|c| !**c).count() as u64;
        prop_assert_eq!(stats.gap_bytes, gap_bytes);
        prop_assert_eq!(stats.delivered_bytes, sc.stream.len() as u64 - gap_bytes);
        prop_assert_eq!(stats.overlap_conflicts, 0);
        prop_assert_eq!(r.closed.map(|c| c.0), Some(CloseReason::EndOfInput));
        prop_assert_eq!(assert_faithful(&r, &sc.stream), sc.stream.len() as u64);
    }

    /// Tight budgets and a short gap window: gaps may come early and late
    /// bytes are then dropped, but delivery never corrupts, never repeats,
    /// never stalls, and accounts for the whole stream up to the FIN.
    #[test]
    fn tight_budgets_never_corrupt_or_stall(sc in scenario(), ooo in 1usize..600, window_ms in 1i64..20) {
        let cfg = TcpConfig {
            ooo_bytes_per_dir: ooo,
            total_buffered_bytes: ooo * 2,
            gap_window_ns: window_ms * 1_000_000,
            ..TcpConfig::default()
        };
        let (r, stats) = run(&sc, cfg, 3);
        prop_assert_eq!(assert_faithful(&r, &sc.stream), sc.stream.len() as u64);
        prop_assert_eq!(stats.delivered_bytes + stats.gap_bytes, sc.stream.len() as u64);
        prop_assert!(stats.peak_buffered_bytes as usize <= ooo + 600);
    }

    /// The same conversation delivered in any split gives the same stream.
    #[test]
    fn recorder_is_split_invariant(
        client in prop::collection::vec(any::<u8>(), 0..200),
        server in prop::collection::vec(any::<u8>(), 0..200),
        gap in 0u64..50,
    ) {
        let conv = Conversation::new().client(&client).server(&server).gap(Side::Client, gap).client(&client);
        let observe = |r: Recorder| (r.stream(Dir::LoToHi), r.stream(Dir::HiToLo));
        let got = check_split_invariance(&conv, Recorder::default, observe, 8);
        prop_assert!(got.is_ok(), "{:?}", got.err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// `--streams`: the file holds exactly the delivered bytes (gaps not
    /// filled) and the record lists the model's gaps at the right offsets.
    #[test]
    fn exported_file_holds_the_delivered_bytes_and_lists_the_gaps(sc in scenario()) {
        let tmp = tempfile::tempdir().unwrap();
        let export = StreamExport::create(tmp.path(), 8).unwrap();
        let k = key(40000);
        let mut table: FlowTable<Tee<Recorder, FlowExport>> = FlowTable::new(TcpConfig::default());
        let make = |n: &imscan::tcp::NewFlow| Tee(Recorder::default(), export.flow(n));
        table.segment(&segment(k, sc.isn, TcpFlags::SYN, b"", 1, 0), make);
        for (i, s) in sc.sends.iter().enumerate() {
            let seq = sc.isn.wrapping_add(1).wrapping_add(s.start as u32);
            let flags = TcpFlags::ACK | if s.fin { TcpFlags::FIN } else { 0 };
            table.segment(&segment(k, seq, flags, &sc.stream[s.start..s.end], i as u64 + 2, 0), make);
        }
        table.finish(FrameRef { source: 0, index: 1_000_000 });
        let Tee(rec, exp) = table.take_closed().pop().unwrap();
        let record = exp.into_record();
        // No file is created for a direction that delivered no byte (its
        // record names none); its content is then the empty stream.
        let file = if record.client_to_server.file.is_empty() {
            Vec::new()
        } else {
            std::fs::read(tmp.path().join(&record.client_to_server.file)).unwrap()
        };
        prop_assert_eq!(&file, &rec.data(Dir::LoToHi));
        prop_assert_eq!(record.client_to_server.bytes, file.len() as u64);
        let gaps: Vec<(u64, u64)> = record.client_to_server.gaps.iter().map(|g| (g.stream_offset, g.len)).collect();
        prop_assert_eq!(gaps, rec.gaps(Dir::LoToHi));
        let mut written = 0;
        for g in &record.client_to_server.gaps {
            // The file offset of a gap is the stream offset minus the bytes lost before it.
            prop_assert_eq!(g.file_offset, g.stream_offset - written);
            written += g.len;
        }
        prop_assert_eq!(&record.flow, "1:1");
        // A direction that delivered no byte names no file.
        let expected_name = if file.is_empty() { "" } else { "192.168.1.10.40000-192.168.1.20.1863" };
        prop_assert_eq!(&record.client_to_server.file, expected_name);
        let path = export.write_index(vec![record]).unwrap();
        prop_assert_eq!(std::fs::read_to_string(path).unwrap().lines().count(), 1);
    }
}

/// Any segment at all, both directions, near the initial sequence numbers.
#[derive(Clone, Debug)]
struct Arbitrary {
    from_client: bool,
    seq_delta: i32,
    ack_delta: i32,
    flags: u8,
    len: usize,
    dt_ms: i64,
}

fn arbitrary_segment() -> impl Strategy<Value = Arbitrary> {
    (
        any::<bool>(),
        -3000i32..3000,
        -3000i32..3000,
        any::<u8>(),
        0usize..700,
        0i64..3000,
    )
        .prop_map(
            |(from_client, seq_delta, ack_delta, flags, len, dt_ms)| Arbitrary {
                from_client,
                seq_delta,
                ack_delta,
                flags,
                len,
                dt_ms,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Hostile or garbled segments (any flags, any sequence and ack numbers,
    /// any order, small budgets) never panic, never deliver a byte twice or
    /// out of order, and leave nothing buffered after the end of input.
    #[test]
    fn arbitrary_segments_keep_the_invariants(
        segs in prop::collection::vec(arbitrary_segment(), 1..120),
        isn in any::<u32>(),
        small in any::<bool>(),
    ) {
        let cfg = if small {
            TcpConfig {
                ooo_bytes_per_dir: 900,
                total_buffered_bytes: 1500,
                max_flows: 1,
                gap_window_ns: 500_000_000,
                idle_timeout_ns: 2_000_000_000,
            }
        } else {
            TcpConfig::default()
        };
        let data: Vec<u8> = (0..700u32).map(|i| (i * 31) as u8).collect();
        let mut table: FlowTable<Recorder> = FlowTable::new(cfg);
        let mut ts = 0i64;
        let mut all = Vec::new();
        for (i, a) in segs.iter().enumerate() {
            ts += a.dt_ms * 1_000_000;
            let k = key(40000);
            let dir = if a.from_client { Dir::LoToHi } else { Dir::HiToLo };
            let base = if a.from_client { isn } else { isn ^ 0x5555_5555 };
            let peer = if a.from_client { isn ^ 0x5555_5555 } else { isn };
            let seg = TcpSegment {
                dir,
                ack: peer.wrapping_add(a.ack_delta as u32),
                ..segment(k, base.wrapping_add(a.seq_delta as u32), a.flags & 0x1f, &data[..a.len], i as u64 + 1, ts)
            };
            table.segment(&seg, |_| Recorder::default());
            if i % 5 == 0 {
                table.advance(Timestamp(ts), FrameRef { source: 0, index: i as u64 + 1 });
            }
            all.extend(table.take_closed());
        }
        table.finish(FrameRef { source: 0, index: u64::MAX });
        all.extend(table.take_closed());
        prop_assert_eq!(table.buffered_bytes(), 0);
        prop_assert!(table.is_empty());
        let stats = table.stats().clone();
        let mut delivered = 0u64;
        for r in &all {
            prop_assert!(r.closed.is_some());
            prop_assert_eq!(r.after_close, 0);
            for dir in [Dir::LoToHi, Dir::HiToLo] {
                let mut off = None;
                for (c, info) in r.chunks.iter().filter(|(_, i)| i.dir == dir) {
                    if let Some(o) = off {
                        prop_assert_eq!(info.offset, o);
                    }
                    let n = match c {
                        Recorded::Data(d) => { delivered += d.len() as u64; d.len() as u64 }
                        Recorded::Gap(n) => *n,
                    };
                    off = Some(info.offset + n);
                }
            }
        }
        prop_assert_eq!(delivered, stats.delivered_bytes);
        prop_assert!(stats.delivered_bytes <= stats.payload_bytes);
    }
}

#[test]
fn syn_flood_stays_within_the_flow_budget_and_counts_evictions() {
    let cfg = TcpConfig {
        max_flows: 500,
        ..TcpConfig::default()
    };
    let mut table: FlowTable<Recorder> = FlowTable::new(cfg);
    let server = Endpoint {
        ip: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)),
        port: 5190,
    };
    for i in 0..20_000u32 {
        let client = Endpoint {
            ip: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
            port: 1024 + (i % 60_000) as u16,
        };
        let (k, dir) = FlowKey::new(Transport::Tcp, client, server);
        let seg = TcpSegment {
            dir,
            ..segment(k, i, TcpFlags::SYN, b"", u64::from(i) + 1, i64::from(i))
        };
        table.segment(&seg, |_| Recorder::default());
        assert!(table.len() <= 500);
    }
    let stats = table.stats().clone();
    assert_eq!(stats.flows_created, 20_000);
    assert_eq!(stats.evictions, 19_500);
    assert_eq!(stats.closed_evicted, 19_500);
    assert_eq!(stats.peak_flows, 500);
    let evicted = table.take_closed();
    assert_eq!(evicted.len(), 19_500);
    assert!(evicted
        .iter()
        .all(|r| r.closed.map(|c| c.0) == Some(CloseReason::Evicted)));
}
