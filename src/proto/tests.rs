//! Unit tests of the shared framework: probing and its replay, client
//! choice, unit buffering across chunks, the event bookkeeping (frames,
//! flags, lost bytes, sequence), closing, and the stats.

use super::*;
use crate::net::{Endpoint, Transport};

fn key(a: &str, b: &str) -> (FlowKey, Dir) {
    let p = |s: &str| {
        let s: std::net::SocketAddr = s.parse().unwrap();
        Endpoint {
            ip: s.ip(),
            port: s.port(),
        }
    };
    FlowKey::new(Transport::Tcp, p(a), p(b))
}

fn decoder(client: &str, server: &str, syn: bool) -> (FlowDecoder, Dir) {
    let (key, c2s) = key(client, server);
    let start = FlowStart {
        key,
        flow: FlowId(FrameRef {
            source: 0,
            index: 1,
        }),
        source: 0,
        client_dir: syn.then_some(c2s),
    };
    (
        FlowDecoder::new(Arc::new(ProtoConfig::default()), start),
        c2s,
    )
}

fn info(dir: Dir, frame: u64, first: u64) -> ChunkInfo {
    ChunkInfo {
        dir,
        ts: Timestamp::from_secs_nanos(1000 + frame as i64, 0),
        frame: FrameRef {
            source: 0,
            index: frame,
        },
        first_frame: FrameRef {
            source: 0,
            index: first,
        },
        offset: 0,
        flags: ChunkFlags::default(),
    }
}

/// Decode `chunks` sent by `client` to `server` on a flow whose SYN was seen
/// (one frame per chunk): the events and the decode errors counted. For the
/// protocol modules' own unit tests.
pub(crate) fn client_chunk_events(
    client: &str,
    server: &str,
    chunks: &[Vec<u8>],
) -> (Vec<Event>, u64) {
    let (mut d, c2s) = decoder(client, server, true);
    for (i, c) in chunks.iter().enumerate() {
        let frame = i as u64 + 1;
        d.on_chunk(Chunk::Data(c), &info(c2s, frame, frame));
    }
    let (mut ev, mut facts) = (Vec::new(), Vec::new());
    d.drain(&mut ev, &mut facts);
    (ev, d.stats().decode_errors)
}

fn drain(d: &mut FlowDecoder) -> Vec<Event> {
    let (mut ev, mut facts) = (Vec::new(), Vec::new());
    d.drain(&mut ev, &mut facts);
    assert!(facts.is_empty());
    ev
}

use crate::tcp::ChunkFlags;

#[test]
fn midstream_client_side_falls_back_to_ports() {
    // XMPP seen mid-stream gives no role: the usual port names the server,
    // whichever end of the key it is.
    for (client, server) in [
        ("172.16.0.62:57149", "172.16.1.138:5222"),
        ("10.0.0.9:40000", "10.0.0.1:5222"),
    ] {
        let (mut d, c2s) = decoder(client, server, false);
        // Only a server's bytes: a stanza with `from`.
        let srv = c2s.reverse();
        d.on_chunk(
            Chunk::Data(b"<message from='a@b/c' to='me@b/r' type='chat'><body>x</body></message>"),
            &info(srv, 2, 2),
        );
        let ev = drain(&mut d);
        assert_eq!(ev.len(), 1, "{client} {server}");
        assert_eq!(ev[0].server.to_string(), server);
        assert!(!ev[0].outgoing);
    }
    // No usual port on either end: the lower port is the server's.
    let (mut d, c2s) = decoder("10.0.0.1:40000", "10.0.0.2:8080", false);
    d.on_chunk(
        Chunk::Data(b"<message to='me@b/r' type='chat'><body>x</body></message>"),
        &info(c2s, 2, 2),
    );
    let ev = drain(&mut d);
    assert_eq!(ev[0].server.to_string(), "10.0.0.2:8080");
}

#[test]
fn probe_window_is_replayed_with_its_frames_and_gaps() {
    let (mut d, c2s) = decoder("10.0.0.1:40000", "10.0.0.2:6667", true);
    // Nothing decisive in the first chunk: the probe waits for a line end.
    d.on_chunk(Chunk::Data(b"PRIVMSG #a :one"), &info(c2s, 3, 3));
    assert_eq!(d.protocol(), None);
    d.on_chunk(Chunk::Data(b"\r\nPRIVMSG #a :tw"), &info(c2s, 4, 4));
    assert_eq!(d.protocol(), Some(Protocol::Irc));
    d.on_chunk(Chunk::Gap(9), &info(c2s, 6, 6));
    d.on_chunk(Chunk::Data(b"o\r\nPRIVMSG #a :three\r\n"), &info(c2s, 7, 7));
    let ev = drain(&mut d);
    let got: Vec<_> = ev
        .iter()
        .map(|e| {
            (
                e.text.clone().unwrap(),
                e.frames,
                e.flags.gap_before,
                e.lost_bytes,
                e.seq,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("one".to_owned(), (3, 4), false, 0, 0),
            ("three".to_owned(), (7, 7), true, 9, 1),
        ]
    );
    assert_eq!(ev[0].time, Timestamp::from_secs_nanos(1004, 0));
}

#[test]
fn gap_during_probing_is_replayed() {
    let (mut d, c2s) = decoder("10.0.0.1:40000", "10.0.0.2:6667", true);
    d.on_chunk(Chunk::Data(b"NICK a\r\nPRIVMSG #a :cu"), &info(c2s, 2, 2));
    assert_eq!(d.protocol(), Some(Protocol::Irc));
    let (mut d, c2s) = decoder("10.0.0.1:40000", "10.0.0.2:6667", true);
    d.on_chunk(Chunk::Data(b"PRIVMSG #a :c"), &info(c2s, 2, 2));
    d.on_chunk(Chunk::Gap(4), &info(c2s, 3, 3));
    d.on_chunk(Chunk::Data(b"t\r\nPRIVMSG #a :whole\r\n"), &info(c2s, 4, 4));
    let ev = drain(&mut d);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].text.as_deref(), Some("whole"));
    assert!(ev[0].flags.gap_before);
    assert_eq!(ev[0].lost_bytes, 4);
}

#[test]
fn first_frame_of_an_out_of_order_chunk_is_kept() {
    let (mut d, c2s) = decoder("10.0.0.1:40000", "10.0.0.2:6667", true);
    d.on_chunk(
        Chunk::Data(b"NICK a\r\nUSER a 0 * :a\r\n"),
        &info(c2s, 2, 2),
    );
    // A chunk completed by frame 9 whose first bytes came in frame 5.
    d.on_chunk(Chunk::Data(b"PRIVMSG #a :x\r\n"), &info(c2s, 9, 5));
    let ev = drain(&mut d);
    assert_eq!(ev[0].frames, (5, 9));
}

#[test]
fn overlap_conflict_flags_the_next_event_of_that_direction_only() {
    let (mut d, c2s) = decoder("10.0.0.1:40000", "10.0.0.2:6667", true);
    d.on_chunk(Chunk::Data(b"NICK a\r\n"), &info(c2s, 2, 2));
    let mut i = info(c2s, 3, 3);
    i.flags.overlap_conflict = true;
    d.on_chunk(Chunk::Data(b"PRIVMSG #a :x\r\n"), &i);
    d.on_chunk(
        Chunk::Data(b":b!b@h PRIVMSG #a :y\r\n"),
        &info(c2s.reverse(), 4, 4),
    );
    d.on_chunk(Chunk::Data(b"PRIVMSG #a :z\r\n"), &info(c2s, 5, 5));
    let ev = drain(&mut d);
    let flags: Vec<bool> = ev.iter().map(|e| e.flags.overlap_conflict).collect();
    assert_eq!(flags, [true, false, false]);
}

#[test]
fn close_counts_undetected_flows_with_data_only() {
    let (mut d, c2s) = decoder("10.0.0.1:40000", "10.0.0.2:6667", true);
    d.on_close(CloseReason::Fin, Timestamp(0), FrameRef::default());
    assert_eq!(d.stats().undetected, 0);
    assert!(!d.wants_data());
    let (mut d, _) = decoder("10.0.0.1:40000", "10.0.0.2:6667", true);
    d.on_chunk(Chunk::Data(b"NICK"), &info(c2s, 2, 2));
    d.on_close(CloseReason::Rst, Timestamp(0), FrameRef::default());
    assert_eq!(d.stats().undetected, 1);
    // Nothing is decoded after the close.
    d.on_chunk(Chunk::Data(b" a\r\nPRIVMSG #a :x\r\n"), &info(c2s, 3, 3));
    assert!(drain(&mut d).is_empty());
}

#[test]
fn no_enabled_protocol_means_no_interest() {
    let (key, _) = key("10.0.0.1:1", "10.0.0.2:2");
    // No protocol enabled at all (MSN, once assumed unregistered, now is).
    let cfg = ProtoConfig {
        protocols: vec![],
        ..ProtoConfig::default()
    };
    let d = FlowDecoder::new(
        Arc::new(cfg),
        FlowStart {
            key,
            flow: FlowId::default(),
            source: 0,
            client_dir: None,
        },
    );
    assert!(!d.wants_data());
}

#[test]
fn stats_merge_adds_every_counter() {
    let mut a = ProtoStats::default();
    a.flows.insert("irc", 2);
    a.units = 5;
    let mut b = ProtoStats {
        undetected: 1,
        encrypted: 2,
        units: 3,
        decode_errors: 4,
        caps_hit: 5,
        gaps: 6,
        echoes_dropped: 7,
        chat_offers: 8,
        ..ProtoStats::default()
    };
    b.flows.insert("irc", 1);
    b.flows.insert("xmpp", 1);
    a.merge(&b);
    assert_eq!(a.flows.get("irc"), Some(&3));
    assert_eq!(a.flows.get("xmpp"), Some(&1));
    assert_eq!(
        (
            a.undetected,
            a.encrypted,
            a.units,
            a.decode_errors,
            a.caps_hit,
            a.gaps,
            a.echoes_dropped
        ),
        (1, 2, 8, 4, 5, 6, 7)
    );
}

#[test]
fn text_decoding_falls_back_to_windows_1252() {
    assert_eq!(
        decode_text("żółw".as_bytes()),
        ("żółw".into(), "utf-8", true)
    );
    assert_eq!(
        decode_text(b"caf\xe9 \x80"),
        ("café €".into(), "windows-1252", true)
    );
    // 0x81 is unassigned in windows-1252: WHATWG maps it to U+0081, still exact.
    let (s, enc, _) = decode_text(b"\x81");
    assert_eq!((s.as_str(), enc), ("\u{81}", "windows-1252"));
}

#[test]
fn tls_on_an_im_tls_port_counts_as_encrypted() {
    let hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    let (mut d, c2s) = decoder("10.0.0.1:40000", "10.0.0.2:5223", true);
    d.on_chunk(Chunk::Data(hello), &info(c2s, 2, 2));
    assert!(!d.wants_data());
    assert_eq!((d.stats().encrypted, d.stats().undetected), (1, 0));
    // The same bytes to a web server are just not IM.
    let (mut d, c2s) = decoder("10.0.0.1:40000", "10.0.0.2:443", true);
    d.on_chunk(Chunk::Data(hello), &info(c2s, 2, 2));
    assert_eq!((d.stats().encrypted, d.stats().undetected), (0, 1));
}

#[test]
fn probing_keeps_a_bounded_number_of_chunks() {
    let (mut d, c2s) = decoder("10.0.0.1:40000", "10.0.0.2:6667", true);
    let mut n = 0;
    while d.wants_data() && n < 10 * PROBE_CHUNKS {
        // One byte of a never-ending first line, then a gap: never decidable.
        d.on_chunk(Chunk::Data(b"N"), &info(c2s, 2 * n as u64 + 2, 2));
        d.on_chunk(Chunk::Gap(1), &info(c2s, 2 * n as u64 + 3, 3));
        n += 1;
    }
    assert!(!d.wants_data());
    assert!(n <= PROBE_CHUNKS / 2 + 1, "{n}");
    assert_eq!(d.stats().undetected, 1);
}

#[test]
fn a_long_unit_completes_across_many_chunks_and_the_rest_decodes_in_place() {
    let (mut d, c2s) = decoder("10.0.0.1:40000", "10.0.0.2:6667", true);
    d.on_chunk(
        Chunk::Data(b"NICK a\r\nUSER a 0 * :a\r\n"),
        &info(c2s, 2, 2),
    );
    let long = "x".repeat(3000);
    let stream = format!("PRIVMSG #a :{long}\r\nPRIVMSG #a :next\r\nPRIVMSG #a :par");
    let bytes = stream.as_bytes();
    for (i, piece) in bytes.chunks(700).enumerate() {
        d.on_chunk(Chunk::Data(piece), &info(c2s, 3 + i as u64, 3 + i as u64));
    }
    d.on_chunk(Chunk::Data(b"tial\r\n"), &info(c2s, 20, 20));
    let ev = drain(&mut d);
    let got: Vec<_> = ev
        .iter()
        .map(|e| (e.text.as_deref().unwrap().len(), e.frames))
        .collect();
    assert_eq!(got, [(3000, (3, 7)), (4, (7, 7)), (7, (7, 20))]);
}

#[test]
fn an_idle_flow_decoder_is_small_and_allocates_nothing_until_bytes_come() {
    // The flow table keeps one per flow, SYN floods included.
    let size = std::mem::size_of::<FlowDecoder>();
    assert!(size <= 200, "FlowDecoder grew to {size} bytes");
    let (d, _) = decoder("10.0.0.1:40000", "10.0.0.2:6667", true);
    assert!(matches!(d.phase, Phase::Probing(None)));
    assert!(d.stats.is_none());
    assert_eq!(d.stats(), &ProtoStats::default());
}

#[test]
fn a_header_whose_length_lies_is_counted_as_a_decode_error() {
    // Gadu-Gadu: a SEND_MSG header claiming 4 GiB between two good packets.
    // Skipping it used to look like keep-alive noise: nothing was counted.
    let gg = |t: u32, len: u32, body: &[u8]| {
        let mut v = t.to_le_bytes().to_vec();
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(body);
        v
    };
    let (mut d, c2s) = decoder("10.0.0.1:40000", "10.0.0.2:8074", true);
    d.on_chunk(
        Chunk::Data(&gg(0x01, 4, &[1, 2, 3, 4])),
        &info(c2s.reverse(), 2, 2),
    );
    let msg = |text: &[u8]| {
        let mut b = 7777u32.to_le_bytes().to_vec();
        b.extend_from_slice(&[7, 0, 0, 0, 8, 0, 0, 0]);
        b.extend_from_slice(text);
        b.push(0);
        gg(0x0B, b.len() as u32, &b)
    };
    let mut stream = msg(b"one");
    stream.extend(gg(0x0B, u32::MAX, b"junk"));
    stream.extend(msg(b"two"));
    d.on_chunk(Chunk::Data(&stream), &info(c2s, 3, 3));
    let texts: Vec<_> = drain(&mut d).into_iter().filter_map(|e| e.text).collect();
    assert_eq!(texts, ["one", "two"]);
    assert_eq!(d.stats().decode_errors, 1);
}
