//! Yahoo (YMSG) decoding from the outside: byte streams fed through the proto
//! framework's front door (`FlowDecoder`), checked event by event.

mod support;

use imscan::event::{Event, Kind, LocalId, Protocol};
use imscan::proto::ProtoConfig;
use support::decode::{apply_edits, check_every_split, run_steps, Flow, Seen, Step};
use support::golden::{check_binary, check_decoded};
use support::packet::{pcap_of, Conversation};

const CLIENT: &str = "10.0.0.9:2201";
const SERVER: &str = "66.163.181.170:5050";

/// A YMSG packet (big-endian header, `k C0 80 v C0 80` pairs).
fn packet(service: u16, status: u32, session: u32, pairs: &[(u32, &[u8])]) -> Vec<u8> {
    support::ymsg::packet(service, status, session, None, pairs)
}

const SID: u32 = 0x0042_1337;

/// Bob's typing notification to alice: `state` "1" starts, "0" stops.
fn typing_from_bob(state: &[u8]) -> Vec<u8> {
    packet(
        0x4B,
        0x16,
        SID,
        &[
            (5, b"alice_y"),
            (4, b"bob_y"),
            (14, b" "),
            (13, state),
            (49, b"TYPING"),
        ],
    )
}

fn script() -> Vec<Step> {
    vec![
        // Login: AUTH (session 0) then AUTHRESP.
        (true, 100, packet(0x57, 0, 0, &[(1, b"Alice_Y")])),
        (
            false,
            100,
            packet(0x57, 1, SID, &[(1, b"alice_y"), (94, b"challenge")]),
        ),
        (
            true,
            101,
            packet(
                0x54,
                0,
                SID,
                &[
                    (0, b"alice_y"),
                    (6, b"xx"),
                    (96, b"yy"),
                    (2, b"alice_y"),
                    (1, b"alice_y"),
                ],
            ),
        ),
        // Outgoing message, UTF-8, with markup.
        (
            true,
            102,
            packet(
                6,
                0x5A55_AA56,
                SID,
                &[
                    (1, b"alice_y"),
                    (5, b"Bob_Y"),
                    (97, b"1"),
                    (
                        14,
                        "\x1b[1m<font face=\"Arial\" size=\"10\">h\u{e9}llo bob</font>".as_bytes(),
                    ),
                ],
            ),
        ),
        // Incoming message in the legacy code page.
        (
            false,
            103,
            packet(
                6,
                1,
                SID,
                &[
                    (5, b"alice_y"),
                    (4, b"bob_y"),
                    (14, b"caf\xe9?"),
                    (63, b";0"),
                    (64, b"0"),
                ],
            ),
        ),
        // Typing start (event) and stop (no event), both directions.
        (false, 104, typing_from_bob(b"1")),
        (false, 105, typing_from_bob(b"0")),
        (
            true,
            106,
            packet(
                0x4B,
                0x16,
                SID,
                &[
                    (49, b"TYPING"),
                    (1, b"alice_y"),
                    (14, b" "),
                    (13, b"1"),
                    (5, b"bob_y"),
                ],
            ),
        ),
        // Webcam invitation, outgoing.
        (
            true,
            107,
            packet(
                0x4B,
                0,
                SID,
                &[
                    (1, b"alice_y"),
                    (5, b"bob_y"),
                    (13, b"0"),
                    (49, b"WEBCAMINVITE"),
                ],
            ),
        ),
        // A game notify: no event.
        (
            false,
            108,
            packet(
                0x4B,
                0,
                SID,
                &[(4, b"bob_y"), (5, b"alice_y"), (13, b"1"), (49, b"GAME")],
            ),
        ),
        // File offer (v15): two files in one offer, incoming.
        (
            false,
            109,
            packet(
                0xDC,
                1,
                SID,
                &[
                    (4, b"bob_y"),
                    (5, b"alice_y"),
                    (265, b"tid1"),
                    (222, b"1"),
                    (302, b"268"),
                    (300, b"268"),
                    (27, "r\u{e9}sum\u{e9}.pdf".as_bytes()),
                    (28, b"1024"),
                    (301, b"268"),
                    (300, b"268"),
                    (27, b"b.zip"),
                    (28, b"99"),
                    (301, b"268"),
                    (303, b"268"),
                ],
            ),
        ),
        // The same transfer accepted: not an offer.
        (
            true,
            110,
            packet(
                0xDC,
                0,
                SID,
                &[(1, b"alice_y"), (5, b"bob_y"), (265, b"tid1"), (222, b"3")],
            ),
        ),
        // Older P2P file transfer service, outgoing.
        (
            true,
            111,
            packet(
                0x4D,
                0,
                SID,
                &[
                    (1, b"alice_y"),
                    (5, b"bob_y"),
                    (27, b"old.txt"),
                    (28, b"12"),
                ],
            ),
        ),
        // Offline batch: two messages in one packet with their own times.
        (
            false,
            112,
            packet(
                6,
                5,
                SID,
                &[
                    (31, b"6"),
                    (32, b"6"),
                    (4, b"carol_y"),
                    (5, b"alice_y"),
                    (15, b"1248000000"),
                    (14, b"first"),
                    (4, b"dave_y"),
                    (5, b"alice_y"),
                    (15, b"1248000001"),
                    (97, b"1"),
                    (14, b"second"),
                ],
            ),
        ),
        // Conference message, both directions.
        (
            true,
            113,
            packet(
                0x1D,
                0,
                SID,
                &[
                    (1, b"alice_y"),
                    (57, b"Alice-Room"),
                    (53, b"bob_y"),
                    (14, b"hi room"),
                    (97, b"1"),
                ],
            ),
        ),
        (
            false,
            114,
            packet(
                0x1D,
                1,
                SID,
                &[
                    (1, b"alice_y"),
                    (57, b"alice-room"),
                    (3, b"bob_y"),
                    (14, b"hi alice"),
                    (97, b"1"),
                ],
            ),
        ),
        // Chat room comment, incoming.
        (
            false,
            115,
            packet(
                0xA8,
                1,
                SID,
                &[
                    (104, b"Linux:1"),
                    (109, b"eve_y"),
                    (117, b"any linux fans?"),
                    (124, b"1"),
                ],
            ),
        ),
    ]
}

fn s(kind: Kind, outgoing: bool, remote: &str, sender: &str, text: Option<&str>) -> Seen {
    Seen::new("alice_y", kind, outgoing, remote, sender, text)
}

fn file(outgoing: bool, remote: &str, sender: &str, name: &str, size: u64) -> Seen {
    let mut f = s(Kind::File, outgoing, remote, sender, None);
    f.file = Some((Some(name.into()), Some(size)));
    f
}

fn group(outgoing: bool, room: &str, sender: &str, text: &str) -> Seen {
    let mut g = s(Kind::Message, outgoing, room, sender, Some(text));
    g.group = true;
    g
}

fn expected() -> Vec<Seen> {
    vec![
        s(
            Kind::Message,
            true,
            "bob_y",
            "alice_y",
            Some("h\u{e9}llo bob"),
        ),
        s(Kind::Message, false, "bob_y", "bob_y", Some("caf\u{e9}?")),
        s(Kind::Typing, false, "bob_y", "bob_y", None),
        s(Kind::Typing, true, "bob_y", "alice_y", None),
        s(Kind::Webcam, true, "bob_y", "alice_y", None),
        file(false, "bob_y", "bob_y", "r\u{e9}sum\u{e9}.pdf", 1024),
        file(false, "bob_y", "bob_y", "b.zip", 99),
        file(true, "bob_y", "alice_y", "old.txt", 12),
        s(Kind::Message, false, "carol_y", "carol_y", Some("first")),
        s(Kind::Message, false, "dave_y", "dave_y", Some("second")),
        group(true, "alice-room", "alice_y", "hi room"),
        group(false, "alice-room", "bob_y", "hi alice"),
        group(false, "linux:1", "eve_y", "any linux fans?"),
    ]
}

fn run(sc: &[Step], client: &str, server: &str, syn: bool, raw: bool) -> Vec<Event> {
    let config = ProtoConfig {
        raw,
        ..ProtoConfig::default()
    };
    run_steps(config, client, server, syn, sc).0
}

#[test]
fn every_event_kind_in_both_directions() {
    let ev = run(&script(), CLIENT, SERVER, true, false);
    let got: Vec<Seen> = ev.iter().map(Seen::from).collect();
    assert_eq!(got, expected());
    for (i, e) in ev.iter().enumerate() {
        assert_eq!(e.protocol, Protocol::Yahoo);
        assert_eq!(e.client.to_string(), CLIENT);
        assert_eq!(e.seq, i as u64);
    }
    assert_eq!(ev[0].text_encoding, Some("utf-8"));
    assert_eq!(ev[1].text_encoding, Some("windows-1252"));
    // Without --raw the markup-free text is all that is kept.
    assert_eq!(ev[0].raw, None);
}

#[test]
fn raw_text_keeps_the_markup() {
    let ev = run(&script(), CLIENT, SERVER, true, true);
    assert_eq!(
        ev[0].raw.as_deref(),
        Some("\x1b[1m<font face=\"Arial\" size=\"10\">h\u{e9}llo bob</font>".as_bytes())
    );
}

#[test]
fn sender_and_recipient_are_not_swapped_without_a_login() {
    // No login seen: the local id comes from the side of each message that
    // matches the connection direction (msgsnarf swaps them; we must not).
    let sc: Vec<_> = script().into_iter().skip(3).take(2).collect();
    let ev = run(&sc, CLIENT, SERVER, true, false);
    let ends: Vec<(bool, Option<&str>, &str)> = ev
        .iter()
        .map(|e| (e.outgoing, e.local_id_str(), e.remote_id.as_str()))
        .collect();
    assert_eq!(
        ends,
        [
            (true, Some("alice_y"), "bob_y"),
            (false, Some("alice_y"), "bob_y")
        ]
    );
}

#[test]
fn every_split_gives_the_same_events() {
    let sc = script();
    check_every_split(
        &sc,
        |len| (1..len).collect(),
        |split| {
            run(split, CLIENT, SERVER, true, false)
                .iter()
                .map(Seen::from)
                .collect::<Vec<_>>()
        },
    );
}

#[test]
fn coalesced_packets_in_one_chunk() {
    let sc = script();
    let client: Vec<u8> = sc
        .iter()
        .filter(|x| x.0)
        .flat_map(|x| x.2.clone())
        .collect();
    let server: Vec<u8> = sc
        .iter()
        .filter(|x| !x.0)
        .flat_map(|x| x.2.clone())
        .collect();
    let ev = run(
        &[(true, 1, client), (false, 2, server)],
        CLIENT,
        SERVER,
        true,
        false,
    );
    assert_eq!(ev.len(), expected().len());
}

#[test]
fn gaps_inside_and_between_packets() {
    let sc = script();
    let mut f = Flow::new(ProtoConfig::default(), CLIENT, SERVER, true);
    for (c, t, b) in &sc[..3] {
        f.at(*t).data(*c, b);
    }
    // Outgoing message cut in the middle by a gap: lost; the next packet after
    // the hole starts mid-packet with junk that contains "YMSG"-like bytes.
    let out = &sc[3].2;
    f.at(102).data(true, &out[..25]);
    f.at(102).gap(true, (out.len() - 25) as u64);
    f.at(106).data(true, b"junkYMSG\x00\x10\x05\x05 more junk");
    f.at(106).data(true, &sc[7].2); // typing start
                                    // A gap between whole packets on the server side.
    f.at(103).gap(false, 500);
    f.at(104).data(false, &sc[5].2);
    let ev = f.finish().0;
    let got: Vec<(Kind, bool, bool, u64)> = ev
        .iter()
        .map(|e| (e.kind, e.outgoing, e.flags.gap_before, e.lost_bytes))
        .collect();
    assert_eq!(
        got,
        [
            (Kind::Typing, true, true, (sc[3].2.len() - 25) as u64),
            (Kind::Typing, false, true, 500),
        ]
    );
}

#[test]
fn midstream_pickup_on_a_fallback_port() {
    // No SYN, port 80, the capture starts inside a packet.
    let sc = script();
    let mut first = sc[4].2[7..].to_vec();
    first.extend_from_slice(&sc[4].2);
    let steps = vec![(false, 10, first), (true, 11, sc[3].2.clone())];
    let ev = run(
        &steps,
        "192.168.0.7:51000",
        "66.163.181.170:80",
        false,
        false,
    );
    let got: Vec<(bool, Option<&str>, &str, Option<&str>)> = ev
        .iter()
        .map(|e| {
            (
                e.outgoing,
                e.local_id_str(),
                e.remote_id.as_str(),
                e.text.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (false, Some("alice_y"), "bob_y", Some("caf\u{e9}?")),
            (true, Some("alice_y"), "bob_y", Some("h\u{e9}llo bob")),
        ]
    );
    assert!(ev.iter().all(|e| e.flags.midstream));
    assert_eq!(ev[0].client.to_string(), "192.168.0.7:51000");
}

#[test]
fn web_client_form_is_decoded_like_binary_packets() {
    let out = b"content-length: 86\r\n\r\n<Ymsg Command=\"6\" Status=\"1515563606\" Version=\"102\" VendorId=\"402\" SessionId=\"5\">1^$alice_y^$5^$bob_y^$97^$1^$14^$hi from the web^$</Ymsg>\0";
    let inc = b"<Ymsg Command=\"75\" Status=\"22\" SessionId=\"5\">5^$alice_y^$4^$bob_y^$13^$1^$49^$TYPING^$</Ymsg>\0";
    let script = vec![(true, 1, out.to_vec()), (false, 2, inc.to_vec())];
    for client in ["10.0.0.9:2201", "10.0.0.9:2202"] {
        let ev = run(&script, client, "66.163.181.170:80", true, false);
        let got: Vec<Seen> = ev.iter().map(Seen::from).collect();
        assert_eq!(
            got,
            [
                s(
                    Kind::Message,
                    true,
                    "bob_y",
                    "alice_y",
                    Some("hi from the web")
                ),
                s(Kind::Typing, false, "bob_y", "bob_y", None),
            ]
        );
    }
}

#[test]
fn messages_without_a_peer_are_dropped() {
    let ev = run(
        &[(
            true,
            1,
            packet(6, 0, SID, &[(1, b"alice_y"), (14, b"to nobody")]),
        )],
        CLIENT,
        SERVER,
        true,
        false,
    );
    assert!(ev.is_empty());
    let ev = run(
        &[(
            true,
            1,
            packet(6, 0, SID, &[(5, b"bob_y"), (14, b"no sender")]),
        )],
        CLIENT,
        SERVER,
        true,
        false,
    );
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].local_id, LocalId::Unknown);
}

mod mutations {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

        #[test]
        fn mutated_streams_never_panic(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..4), 1..24),
            syn in any::<bool>(),
        ) {
            let mut steps = script();
            apply_edits(&mut steps, |s| &mut s.2, &edits, &[0xFF, 0xFF, 0xC0, 0x80]);
            let mut f = Flow::new(ProtoConfig::default(), CLIENT, SERVER, syn);
            for (i, (c, t, b)) in steps.iter().enumerate() {
                f.at(*t).data(*c, b);
                if i % 6 == 5 { f.at(*t).gap(*c, 7); }
            }
            for e in f.finish().0 {
                prop_assert!(e.text.as_ref().map_or(0, String::len) <= 3 * 65535);
                prop_assert!(e.remote_id.len() <= 65535);
            }
        }
    }
}

// ---- generated captures (fixtures/yahoo) --------------------------------------

#[test]
fn generated_conversation_capture() {
    let mut c = Conversation::acked(CLIENT, SERVER, true, &script(), |i| match i {
        3 => 9,
        10 => 40,
        _ => 1460,
    });
    c.close();
    let events = check_decoded("fixtures/yahoo/conversation", &pcap_of([&c]));
    let got: Vec<Seen> = events.iter().map(Seen::from).collect();
    assert_eq!(got, expected());
}

#[test]
fn generated_midstream_capture_on_port_80_with_a_lost_segment() {
    let sc = script();
    let mut first = sc[4].2[11..].to_vec();
    first.extend_from_slice(&sc[4].2);
    let long = packet(
        6,
        0x5A55_AA56,
        SID,
        &[
            (1, b"alice_y"),
            (5, b"bob_y"),
            (14, "y".repeat(300).as_bytes()),
        ],
    );
    let steps = vec![
        (false, 0, first),
        (true, 0, long),
        (true, 0, sc[3].2.clone()),
        (false, 0, sc[5].2.clone()),
    ];
    let mut c = Conversation::acked(
        "192.168.0.7:51000",
        "66.163.181.170:80",
        false,
        &steps,
        |i| if i == 1 { 120 } else { 1460 },
    );
    c.drop_first(|s| s.payload.starts_with(b"yyyy"));
    let events = check_decoded("fixtures/yahoo/midstream-port80", &pcap_of([&c]));
    let got: Vec<(Kind, bool, Option<String>, bool)> = events
        .iter()
        .map(|e| (e.kind, e.outgoing, e.text.clone(), e.flags.gap_before))
        .collect();
    assert_eq!(
        got,
        [
            (Kind::Message, false, Some("caf\u{e9}?".to_string()), false),
            (
                Kind::Message,
                true,
                Some("h\u{e9}llo bob".to_string()),
                true
            ),
            (Kind::Typing, false, None, false),
        ]
    );
    assert!(events
        .iter()
        .all(|e| e.flags.midstream && e.client.to_string() == "192.168.0.7:51000"));
}

// ---- the imscan binary ----------------------------------------------------------

#[test]
fn binary_reproduces_every_yahoo_fixture_at_any_thread_count() {
    // A lost segment is damage: processed, exit code 1.
    for (stem, code) in [
        ("fixtures/yahoo/conversation", 0),
        ("fixtures/yahoo/midstream-port80", 1),
    ] {
        assert_eq!(check_binary(stem), code, "{stem}");
    }
}
