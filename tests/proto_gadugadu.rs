//! Gadu-Gadu detection and decoding, driven through `FlowDecoder` with
//! chunks: GG 6/7/8 logins and messages (CP1250 and HTML text, conferences),
//! the GG 11 protobuf dialect (messages, chats), typing, DCC7 offers,
//! per-direction packet types, mid-stream starts, gaps, split invariance,
//! hostile input, and the real captures' truth files.

mod support;

use imscan::event::{Event, Kind, LocalId, Protocol};
use imscan::proto::ProtoConfig;
use proptest::prelude::*;
use support::decode::{
    as_refs, check_cut_anywhere, detect, essence, run_mutated, run_split, run_with_hole,
};
use support::golden::{check_capture, check_pcap};
use support::packet::{pcap_of, Conversation, Side as Peer};
use support::stages::pipeline;
use support::truth::{truth_of, truth_time, Matching};

const C: &str = "192.0.2.20:50000";
const S: &str = "198.51.100.2:8074";

fn cfg() -> ProtoConfig {
    ProtoConfig::default()
}

// --- GG byte builders (protocols.md §6) -------------------------------------

fn packet(t: u32, body: &[u8]) -> Vec<u8> {
    let mut v = t.to_le_bytes().to_vec();
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend_from_slice(body);
    v
}

fn welcome() -> Vec<u8> {
    packet(0x01, &0x1234_5678u32.to_le_bytes())
}

fn login80(uin: u32) -> Vec<u8> {
    let mut b = uin.to_le_bytes().to_vec();
    b.extend_from_slice(b"pl");
    b.push(2);
    b.extend_from_slice(&[0xAB; 64]);
    b.extend_from_slice(&2u32.to_le_bytes()); // status
    b.extend_from_slice(&0u32.to_le_bytes()); // flags
    b.extend_from_slice(&0x2367u32.to_le_bytes()); // features
    b.extend_from_slice(&[0; 12]);
    b.extend_from_slice(&[0xFF, 0x64]);
    b.extend_from_slice(&(b"Gadu-Gadu Client build 8.0.0.7669".len() as u32).to_le_bytes());
    b.extend_from_slice(b"Gadu-Gadu Client build 8.0.0.7669");
    b.extend_from_slice(&0u32.to_le_bytes());
    packet(0x31, &b)
}

fn login60(uin: u32) -> Vec<u8> {
    let mut b = (uin | 0x4000_0000).to_le_bytes().to_vec();
    b.extend_from_slice(&[0x11; 4]); // hash
    b.extend_from_slice(&2u32.to_le_bytes());
    b.extend_from_slice(&[0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    packet(0x15, &b)
}

/// SEND_MSG80 (c→s) or RECV_MSG80 / RECV_OWN_MSG (s→c), with optional
/// conference list.
fn msg80(t: u32, uin: u32, html: &str, plain: &[u8], conf: &[u32]) -> Vec<u8> {
    let recv = t != 0x2D;
    let head = if recv { 24 } else { 20 };
    let mut b = uin.to_le_bytes().to_vec();
    b.extend_from_slice(&1_700_000_000u32.to_le_bytes());
    if recv {
        b.extend_from_slice(&1_700_000_000u32.to_le_bytes());
    }
    b.extend_from_slice(&8u32.to_le_bytes());
    let off_plain = head + html.len() + 1;
    let off_attr = off_plain + plain.len() + 1;
    b.extend_from_slice(&(off_plain as u32).to_le_bytes());
    b.extend_from_slice(&(off_attr as u32).to_le_bytes());
    b.extend_from_slice(html.as_bytes());
    b.push(0);
    b.extend_from_slice(plain);
    b.push(0);
    if !conf.is_empty() {
        b.push(1);
        b.extend_from_slice(&(conf.len() as u32).to_le_bytes());
        for u in conf {
            b.extend_from_slice(&u.to_le_bytes());
        }
    }
    b.extend_from_slice(&[2, 6, 0, 0, 0, 8, 0, 0, 0]);
    packet(t, &b)
}

/// GG 6 SEND_MSG (c→s) / RECV_MSG (s→c): CP1250 text.
fn msg_old(t: u32, uin: u32, class: u32, text: &[u8]) -> Vec<u8> {
    let mut b = uin.to_le_bytes().to_vec();
    b.extend_from_slice(&7u32.to_le_bytes());
    if t == 0x0A {
        b.extend_from_slice(&1_700_000_000u32.to_le_bytes());
    }
    b.extend_from_slice(&class.to_le_bytes());
    b.extend_from_slice(text);
    b.push(0);
    packet(t, &b)
}

fn typing(uin: u32, len: u16) -> Vec<u8> {
    let mut b = len.to_le_bytes().to_vec();
    b.extend_from_slice(&uin.to_le_bytes());
    packet(0x59, &b)
}

fn dcc7_new(from: u32, to: u32, name: &[u8], size: u32) -> Vec<u8> {
    let mut b = vec![9u8; 8];
    b.extend_from_slice(&from.to_le_bytes());
    b.extend_from_slice(&to.to_le_bytes());
    b.extend_from_slice(&4u32.to_le_bytes());
    let mut n = [0u8; 255];
    n[..name.len()].copy_from_slice(name);
    b.extend_from_slice(&n);
    b.extend_from_slice(&size.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&[0x33; 20]);
    packet(0x20, &b)
}

fn pb_key(field: u64, wt: u64) -> u8 {
    (field << 3 | wt) as u8
}

fn pb_bytes(field: u64, b: &[u8]) -> Vec<u8> {
    let mut v = vec![pb_key(field, 2)];
    let mut n = b.len();
    loop {
        let byte = (n & 0x7F) as u8;
        n >>= 7;
        if n == 0 {
            v.push(byte);
            break;
        }
        v.push(byte | 0x80);
    }
    v.extend_from_slice(b);
    v
}

fn pb_uin(uin: &str) -> Vec<u8> {
    let mut v = vec![0, uin.len() as u8];
    v.extend_from_slice(uin.as_bytes());
    v
}

/// GG 11 CHAT_RECV_MSG (s→c): sender, seq, plain, xhtml, chat id.
fn chat_recv(sender: &str, text: &str, chat: u64) -> Vec<u8> {
    let mut b = pb_bytes(1, &pb_uin(sender));
    b.extend_from_slice(&[pb_key(2, 0), 8, pb_key(3, 0), 5, pb_key(4, 5), 0, 0, 0, 0]);
    b.extend(pb_bytes(5, text.as_bytes()));
    b.extend(pb_bytes(6, format!("<span>{text}</span>").as_bytes()));
    b.push(pb_key(10, 1));
    b.extend_from_slice(&chat.to_le_bytes());
    packet(0x88, &b)
}

const ME: u32 = 1_234_567;
const PEER: u32 = 7_654_321;

fn gg8_session() -> Vec<(bool, Vec<u8>)> {
    vec![
        (false, welcome()),
        (true, login80(ME)),
        (false, packet(0x35, &[0; 4])),
        (true, typing(PEER, 1)),
        (
            true,
            msg80(
                0x2D,
                PEER,
                "<span>cze\u{15b}\u{107} &amp; hej<br>2</span>",
                b"cze\x9c\xe6 & hej\r\n2",
                &[],
            ),
        ),
        (true, typing(PEER, 0)),
        (false, typing(PEER, 14)),
        (
            false,
            msg80(0x2E, PEER, "", b"\xa5\xb9 za\xbf\xf3\xb3\xe6", &[]),
        ),
        (
            false,
            msg80(0x2E, PEER, "<b>grupa</b>", b"grupa", &[ME, 555]),
        ),
        (
            true,
            msg80(0x2D, PEER, "do grupy", b"do grupy", &[555, PEER]),
        ),
        (false, msg80(0x5A, PEER, "z telefonu", b"z telefonu", &[])),
        (true, dcc7_new(ME, PEER, b"zdj\xea\x63ie.jpg", 123_456)),
        (false, dcc7_new(PEER, ME, b"plan.pdf", 99)),
        (false, msg_old(0x0A, PEER, 0x10, b"\x01ctcp")),
        (false, chat_recv("5555", "w czacie", 0xABCDEF)),
        // Same type number, other direction: GG_DISCONNECTING, not a message.
        (false, packet(0x0B, &[])),
    ]
}

fn run(script: &[(bool, Vec<u8>)], server: &str, syn: bool) -> Vec<Event> {
    run_split(&cfg(), C, server, syn, &as_refs(script), |_, _| vec![])
}

#[test]
fn gg8_session_decodes_every_event_kind() {
    let ev = run(&gg8_session(), S, true);
    let got: Vec<_> = ev
        .iter()
        .map(|e| {
            (
                e.kind,
                e.outgoing,
                e.remote_id.as_str(),
                e.group,
                e.sender.as_deref(),
                e.text.as_deref(),
                e.file_name.as_deref(),
                e.file_size,
            )
        })
        .collect();
    use Kind::*;
    let me = Some("1234567");
    let peer = Some("7654321");
    assert_eq!(
        got,
        vec![
            (Typing, true, "7654321", false, me, None, None, None),
            (
                Message,
                true,
                "7654321",
                false,
                me,
                Some("cześć & hej\n2"),
                None,
                None
            ),
            (Typing, false, "7654321", false, peer, None, None, None),
            (
                Message,
                false,
                "7654321",
                false,
                peer,
                Some("Ąą zażółć"),
                None,
                None
            ),
            (
                Message,
                false,
                "conf:555,7654321",
                true,
                peer,
                Some("grupa"),
                None,
                None
            ),
            (
                Message,
                true,
                "conf:555,7654321",
                true,
                me,
                Some("do grupy"),
                None,
                None
            ),
            (
                Message,
                true,
                "7654321",
                false,
                me,
                Some("z telefonu"),
                None,
                None
            ),
            (
                File,
                true,
                "7654321",
                false,
                me,
                None,
                Some("zdjęcie.jpg"),
                Some(123_456)
            ),
            (
                File,
                false,
                "7654321",
                false,
                peer,
                None,
                Some("plan.pdf"),
                Some(99)
            ),
            (
                Message,
                false,
                "chat:11259375",
                true,
                Some("5555"),
                Some("w czacie"),
                None,
                None
            ),
        ]
    );
    assert!(ev
        .iter()
        .all(|e| e.local_id == LocalId::Known("1234567".into())));
    assert!(ev.iter().all(|e| e.protocol == Protocol::GaduGadu));
    assert_eq!(ev[1].text_encoding, Some("utf-8"));
    assert_eq!(ev[3].text_encoding, Some("windows-1250"));
}

#[test]
fn gg6_login_masks_flag_bits_and_old_messages_are_cp1250() {
    let script = vec![
        (false, welcome()),
        (true, login60(ME)),
        (true, msg_old(0x0B, PEER, 8, b"\x8c\x9f\xbf\r\nnowa linia")),
        (false, msg_old(0x0A, PEER, 8, b"odpowied\x9f")),
    ];
    let ev = run(&script, S, true);
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].local_id, LocalId::Known("1234567".into()));
    assert_eq!(ev[0].text.as_deref(), Some("Śźż\nnowa linia"));
    assert!(ev[0].outgoing && !ev[1].outgoing);
    assert_eq!(ev[1].text.as_deref(), Some("odpowiedź"));
}

#[test]
fn split_invariance_at_every_cut() {
    let script = gg8_session();
    let refs = as_refs(&script);
    let whole = check_cut_anywhere(&cfg(), C, S, &refs);
    assert_eq!(whole.len(), 10);
}

#[test]
fn midstream_and_arbitrary_ports() {
    // No handshake, no welcome/login: the capture starts in the chat.
    let script: Vec<_> = gg8_session().into_iter().skip(3).collect();
    for server in ["198.51.100.2:443", "198.51.100.2:8074", "198.51.100.2:2222"] {
        let ev = run(&script, server, false);
        assert_eq!(ev.len(), 10, "{server}: {:#?}", essence(&ev));
        assert!(ev
            .iter()
            .all(|e| e.flags.midstream && e.local_id == LocalId::Unknown));
        assert!(ev[1].outgoing && !ev[3].outgoing, "{server}");
        assert_eq!(ev[0].client.to_string(), C);
    }
    // With the handshake, any port works (GG's fallback is 443).
    let ev = run(&gg8_session(), "198.51.100.2:443", true);
    assert_eq!(ev.len(), 10);
}

#[test]
fn gap_inside_a_packet_resyncs_on_the_next_ones() {
    let script = gg8_session();
    for (victim, client) in [(4usize, true), (7, false)] {
        let ev = run_with_hole(cfg(), C, S, &script, victim, 12..22);
        assert_eq!(ev.len(), 9, "victim {victim}: {:#?}", essence(&ev));
        let flagged: Vec<_> = ev.iter().filter(|e| e.flags.gap_before).collect();
        assert_eq!(flagged.len(), 1);
        assert_eq!(flagged[0].outgoing, client);
        assert!(flagged[0].lost_bytes >= 10);
    }
}

#[test]
fn other_binary_protocols_are_not_gadu_gadu() {
    for first in [
        &[0u8; 16][..],
        b"\x02\x00\x00\x00\xff\xff\xff\x7f",
        b"SSH-2.0-OpenSSH_9.6\r\n",
    ] {
        let (ev, found) = detect(
            cfg(),
            C,
            "198.51.100.2:9999",
            &[(true, first), (false, first)],
        );
        assert!(ev.is_empty());
        assert_ne!(found, Some(Protocol::GaduGadu));
    }
}

// --- the real captures ----------------------------------------------------------

/// GG 11 (libgadu 1.12, real client, fake server): every message and every
/// `typing-begun` row found with the same frame, time, direction, uins and
/// text; `typing-finished` (length 0) and the login row are not events.
#[test]
fn real_gg11_libgadu_matches_truth() {
    let rows = truth_of("fixtures/real/gg11-finch-libgadu-fakeserver-public");
    let (events, stats) = pipeline(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/real/gg11-finch-libgadu-fakeserver-public.pcap"
        ),
        cfg(),
    );
    let mut free = Matching::new(&events);
    let mut matched = 0;
    for row in &rows {
        let kind = match (row.event.as_str(), &row.text[..]) {
            ("message", _) => Kind::Message,
            ("typing", b"typing-begun") => Kind::Typing,
            _ => continue,
        };
        let found = free.take(|e| {
            let outgoing = e.client == row.src;
            e.frames.1 == row.frame
                && e.time.epoch_micros_string() == row.timestamp
                && e.kind == kind
                && e.outgoing == outgoing
                && e.sender.as_deref() == Some(row.sender.as_str())
                && (if outgoing {
                    &e.remote_id
                } else {
                    e.local_id_str().unwrap_or("")
                }) == row.recipient
                && (kind == Kind::Typing
                    || e.text.as_deref().map(str::as_bytes) == Some(&row.text[..]))
        });
        match found {
            Some(_) => matched += 1,
            None => panic!("row {row:?} not found\n{:#?}", essence(&events)),
        }
    }
    assert_eq!(matched, 17 + 11);
    assert!(free.all_taken(), "extra events");
    assert_eq!(stats.flows.get("gadugadu"), Some(&1));
    assert_eq!(stats.decode_errors, 0);
}

/// Only GG_WELCOME and GG_LOGIN80, no SYN: detected, no chat events.
#[test]
fn real_ekg_login_is_detected_and_has_no_events() {
    let (events, stats) = pipeline(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/real/john-ekg-login.pcap"
        ),
        cfg(),
    );
    assert_eq!(stats.flows.get("gadugadu"), Some(&1));
    assert!(events.is_empty());
    assert_eq!(stats.units, 2);
}

// --- hostile input ------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_mutations_never_panic(
        flips in proptest::collection::vec((0usize..3000, any::<u8>()), 0..40),
        cuts in proptest::collection::vec(1usize..300, 0..8),
        gap_at in proptest::option::of(0usize..16),
    ) {
        let ev = run_mutated(cfg(), C, S, gg8_session(), &flips, &cuts, gap_at.map(|i| (i, 9)));
        prop_assert!(ev.len() <= 40);
        for e in &ev {
            prop_assert!(e.text.as_ref().map_or(0, |t| t.len()) <= 3 * 0x10000);
        }
    }
}

// --- generated capture fixtures -------------------------------------------------
//
// The pcaps in fixtures/gadugadu/ are made here with the fixture generator
// (tests/support): this test regenerates them in memory and checks the
// checked-in files are current (`IMSCAN_BLESS=1` rewrites them).
// tshark reads them without warnings (`-d tcp.port==443,gadu-gadu` for 443).

use imscan::time::Timestamp;

fn conversation(client: &str, server: &str) -> Conversation {
    Conversation::between(client, server)
        .start_at(Timestamp::from_secs_nanos(1_700_000_100, 0), 10_000_000)
}

/// GG 8 session on 8074 from SYN to FIN: every event kind both ways.
fn fixture_gg8() -> Vec<u8> {
    let mut c = conversation("10.2.0.5:40100", "10.2.0.1:8074");
    c.handshake();
    c.play(&gg8_session(), 1460);
    c.close();
    pcap_of(&[c])
}

/// GG 6 session (LOGIN60, CP1250 SEND_MSG/RECV_MSG) on 443, messages split
/// over small segments.
fn fixture_gg6_443() -> Vec<u8> {
    let mut c = conversation("10.2.0.6:40200", "10.2.0.2:443");
    c.handshake();
    let script = vec![
        (false, welcome()),
        (true, login60(ME)),
        (true, msg_old(0x0B, PEER, 8, b"\x8c\x9f\xbf\r\nnowa linia")),
        (false, msg_old(0x0A, PEER, 8, b"odpowied\x9f")),
        (true, typing(PEER, 3)),
    ];
    c.play(&script, 9);
    c.close();
    pcap_of(&[c])
}

/// A GG 8 chat picked up mid-stream (no handshake, no login) on 8074, with
/// one lost segment inside an incoming message.
fn fixture_midstream_gap() -> Vec<u8> {
    let mut c = conversation("10.2.0.7:40300", "10.2.0.3:8074");
    let script: Vec<_> = gg8_session().into_iter().skip(3).collect();
    c.play(&script, 16);
    let segs = c.segments().to_vec();
    let victim = segs
        .iter()
        .position(|s| s.from == Peer::Server && s.payload.starts_with(&[0x2E, 0, 0, 0]))
        .expect("an incoming message")
        + 1;
    c.drop_segment(victim);
    c.close();
    pcap_of(&[c])
}

#[test]
fn generated_fixtures_are_current() {
    let ev = pipeline(
        &check_pcap("fixtures/gadugadu/gg8-session-8074.pcap", &fixture_gg8()),
        cfg(),
    )
    .0;
    assert_eq!(essence(&ev).len(), 10);
    assert_eq!(ev.iter().filter(|e| e.group).count(), 3);
    // GG 6 on 443 in 9-byte segments: CP1250 both ways.
    let ev = pipeline(
        &check_pcap("fixtures/gadugadu/gg6-cp1250-443.pcap", &fixture_gg6_443()),
        cfg(),
    )
    .0;
    let texts: Vec<_> = ev.iter().filter_map(|e| e.text.as_deref()).collect();
    assert_eq!(texts, vec!["Śźż\nnowa linia", "odpowiedź"]);
    assert!(ev.iter().all(|e| e.server.port() == 443));
    // Mid-stream, one lost segment inside an incoming message.
    let ev = pipeline(
        &check_pcap(
            "fixtures/gadugadu/gg8-midstream-gap-8074.pcap",
            &fixture_midstream_gap(),
        ),
        cfg(),
    )
    .0;
    assert_eq!(ev.len(), 9);
    assert_eq!(ev.iter().filter(|e| e.flags.gap_before).count(), 1);
}

proptest! {
    /// The pure parser on arbitrary bodies of every type, both directions.
    #[test]
    fn parser_accepts_any_bytes(t in 0u32..0x100, body in proptest::collection::vec(any::<u8>(), 0..400)) {
        use imscan::proto::gadugadu::parser::{parse_packet, Proto};
        let p = packet(t, &body);
        let _ = parse_packet(&p, true);
        let _ = parse_packet(&p, false);
        prop_assert!(Proto::new(&body).count() <= body.len());
    }
}

// --- end to end: the imscan binary ----------------------------------------------

#[test]
fn binary_real_gg_captures_find_every_truth_event() {
    let lines = check_capture("fixtures/real/gg11-finch-libgadu-fakeserver-public").lines();
    let rows = truth_of("fixtures/real/gg11-finch-libgadu-fakeserver-public");
    let mut free = Matching::new(&lines);
    for row in rows
        .iter()
        .filter(|r| r.event == "message" || r.text == b"typing-begun")
    {
        let outgoing = row.dst.port() == 8074;
        let (peer, local) = if outgoing {
            (&row.recipient, &row.sender)
        } else {
            (&row.sender, &row.recipient)
        };
        free.take(|l| {
            l["frames"][1] == row.frame
                && l["time"] == truth_time(&row.timestamp).as_str()
                && l["kind"] == row.event.as_str()
                && l["outgoing"] == outgoing
                && l["remote_id"] == peer.as_str()
                && l["local_id"] == local.as_str()
                && l["sender"] == row.sender.as_str()
                && (row.event == "typing"
                    || l["text"] == String::from_utf8_lossy(&row.text).as_ref())
        })
        .unwrap_or_else(|| panic!("row {row:?} not in the JSONL"));
    }
    assert!(free.all_taken(), "events beyond the truth file");
    let lines = check_capture("fixtures/real/john-ekg-login").lines();
    assert!(lines.is_empty());
}

#[test]
fn binary_generated_gg_captures() {
    for (case, n) in [
        ("gg8-session-8074", 10),
        ("gg6-cp1250-443", 3),
        ("gg8-midstream-gap-8074", 9),
    ] {
        let lines = check_capture(&format!("fixtures/gadugadu/{case}")).lines();
        assert_eq!(lines.len(), n, "{case}");
        assert!(lines.iter().all(|l| l["protocol"] == "gadugadu"));
    }
}
