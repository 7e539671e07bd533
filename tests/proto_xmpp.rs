//! XMPP detection and decoding, driven through `FlowDecoder` with chunks:
//! stream headers and mid-stream starts, ids from bind/SASL/`to`, chat,
//! group chat and reflections, typing, file offers, entities, STARTTLS,
//! gaps and resync, split invariance, hostile input, and the real captures'
//! truth files.

mod proto_support;

use imscan::event::{Kind, LocalId, Protocol};
use imscan::proto::ProtoConfig;
use proptest::prelude::*;
use proto_support::{compare, essence, is_echo, read_truth, replay, run_split, Flow};

const C: &str = "192.0.2.21:52236";
const S: &str = "198.51.100.1:5222";

fn cfg() -> ProtoConfig {
    ProtoConfig::default()
}

const C_HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream to='imscan.test' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
const S_HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream from='imscan.test' id='s1' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

fn conversation() -> Vec<(bool, &'static [u8])> {
    vec![
        (true, C_HEADER),
        (false, b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"),
        // PLAIN: \0dave\0dave-pw-2026
        (true, b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGRhdmUAZGF2ZS1wdy0yMDI2</auth>"),
        (false, b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"),
        (true, C_HEADER),
        (false, S_HEADER),
        (true, b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>laptop</resource></bind></iq>"),
        (false, b"<iq type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>dave@imscan.test/laptop</jid></bind></iq>"),
        (true, b"<message to=\"erin@imscan.test\" type=\"chat\"><composing xmlns=\"http://jabber.org/protocol/chatstates\"/></message>"),
        (true, b"<message to='erin@imscan.test' type='chat' id='m1'><body>tea &lt; coffee &amp;&amp; &quot;yes&quot; &apos;no&apos; &#x263A; &amp;amp;</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>"),
        (false, b"<message from='erin@imscan.test/mcabber' to='dave@imscan.test/laptop' type='chat'><body>Cr\xc3\xa8me or lemon?</body><html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'><p>rich</p></body></html></message>"),
        (true, b"<presence to='teahouse@conference.imscan.test/dave'><x xmlns='http://jabber.org/protocol/muc'/></presence>"),
        (true, b"<message to='teahouse@conference.imscan.test' type='groupchat' id='g1'><body>hello room</body></message>"),
        (false, b"<message from='teahouse@conference.imscan.test/dave' to='dave@imscan.test/laptop' type='groupchat' id='g1'><body>hello room</body></message><message from='teahouse@conference.imscan.test/frank' to='dave@imscan.test/laptop' type='groupchat' id='x9'><body>    </body></message>"),
        (true, b"<iq type='set' to='frank@imscan.test/phone' id='f1'><si xmlns='http://jabber.org/protocol/si' id='s' profile='http://jabber.org/protocol/si/profile/file-transfer'><file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='men\xc3\xbc &amp; prices.txt' size='691'><desc>x</desc></file><feature xmlns='http://jabber.org/protocol/feature-neg'/></si></iq>"),
        (false, b"<iq type='set' from='frank@imscan.test/phone' to='dave@imscan.test/laptop' id='j1'><jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='a'><content creator='initiator' name='f'><description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file><name>photo.jpg</name><size>6144</size></file></description></content></jingle></iq>"),
        (false, b"<message from='erin@imscan.test/m' type='error'><body>bounced</body></message> <message from='erin@imscan.test/m' type='chat'><paused xmlns='http://jabber.org/protocol/chatstates'/></message>"),
        (true, b"</stream:stream>"),
    ]
}

#[test]
fn decodes_a_whole_session() {
    let ev = run_split(&cfg(), C, S, true, &conversation(), |_, _| vec![]);
    let got: Vec<_> = ev
        .iter()
        .map(|e| {
            (
                e.kind,
                e.outgoing,
                e.remote_id.as_str(),
                e.sender.as_deref(),
                e.text.as_deref(),
                e.group,
            )
        })
        .collect();
    let dave = Some("dave@imscan.test/laptop");
    assert_eq!(
        got,
        vec![
            (Kind::Typing, true, "erin@imscan.test", dave, None, false),
            (
                Kind::Message,
                true,
                "erin@imscan.test",
                dave,
                Some("tea < coffee && \"yes\" 'no' ☺ &amp;"),
                false
            ),
            (
                Kind::Message,
                false,
                "erin@imscan.test",
                Some("erin@imscan.test/mcabber"),
                Some("Crème or lemon?"),
                false
            ),
            (
                Kind::Message,
                true,
                "teahouse@conference.imscan.test",
                dave,
                Some("hello room"),
                true
            ),
            (
                Kind::Message,
                false,
                "teahouse@conference.imscan.test",
                Some("teahouse@conference.imscan.test/frank"),
                Some("    "),
                true
            ),
            (Kind::File, true, "frank@imscan.test", dave, None, false),
            (
                Kind::File,
                false,
                "frank@imscan.test",
                Some("frank@imscan.test/phone"),
                None,
                false
            ),
        ]
    );
    assert!(ev
        .iter()
        .all(|e| e.local_id == LocalId::Known("dave@imscan.test".into())));
    assert_eq!(ev[5].file_name.as_deref(), Some("menü & prices.txt"));
    assert_eq!(ev[5].file_size, Some(691));
    assert_eq!(ev[6].file_name.as_deref(), Some("photo.jpg"));
    assert_eq!(ev[6].file_size, Some(6144));
    for (i, e) in ev.iter().enumerate() {
        assert_eq!(e.protocol, Protocol::Xmpp);
        assert_eq!(e.seq, i as u64);
        assert!(e.flags.names().is_empty());
        assert_eq!(e.raw, None);
    }
}

#[test]
fn every_split_gives_the_same_events() {
    let script = conversation();
    let whole = essence(&run_split(&cfg(), C, S, true, &script, |_, _| vec![]));
    assert_eq!(whole.len(), 7);
    for (i, (_, bytes)) in script.iter().enumerate() {
        for at in 1..bytes.len() {
            let ev = run_split(&cfg(), C, S, true, &script, |j, _| {
                if j == i {
                    vec![at]
                } else {
                    vec![]
                }
            });
            assert_eq!(essence(&ev), whole, "element {i} cut at {at}");
        }
    }
    let bytewise = run_split(&cfg(), C, S, true, &script, |_, n| (1..n).collect());
    assert_eq!(essence(&bytewise), whole);
    // Everything in one chunk per direction.
    let mut f = Flow::new(cfg(), C, S, true);
    for (c, b) in &script {
        f.data(*c, b);
    }
    assert_eq!(essence(&f.events()), whole);
}

#[test]
fn detected_on_any_port_and_the_client_side_is_found_by_content() {
    for server in ["198.51.100.1:5222", "198.51.100.1:8080", "198.51.100.1:443", "198.51.100.1:80"] {
        for server_first in [false, true] {
            let mut script: Vec<(bool, &[u8])> = vec![
                (true, C_HEADER),
                (false, S_HEADER),
                (true, b"<message to='bob@x' type='chat'><body>hi</body></message>"),
            ];
            if server_first {
                script.swap(0, 1);
            }
            let ev = run_split(&cfg(), C, server, false, &script, |_, _| vec![]);
            assert_eq!(ev.len(), 1, "{server}");
            assert!(ev[0].outgoing);
            assert_eq!(ev[0].client.to_string(), C);
            assert_eq!(ev[0].server.to_string(), server);
        }
    }
}

#[test]
fn midstream_without_stream_header() {
    let mut f = Flow::new(cfg(), "172.16.0.62:57149", "172.16.1.138:5222", false);
    f.data(true, b"y>cut</body></message><message type='chat' to='chatback@cs-xmpp.lan' id='p1'><body>hey</body></message>");
    f.data(false, b"<message from='chatback@cs-xmpp.lan/1045' to='tom@cs-xmpp.lan/darkstar' type='chat'><body>hey</body></message>");
    let ev = f.events();
    assert_eq!(ev.len(), 2);
    assert!(ev[0].outgoing);
    assert_eq!(ev[0].remote_id, "chatback@cs-xmpp.lan");
    assert_eq!(ev[0].client.to_string(), "172.16.0.62:57149");
    // The local JID is learned from the incoming `to`.
    assert_eq!(ev[1].local_id, LocalId::Known("tom@cs-xmpp.lan".into()));
    assert!(ev.iter().all(|e| e.flags.midstream));
}

#[test]
fn gap_resyncs_at_the_next_stanza() {
    let mut f = Flow::new(cfg(), C, S, true);
    f.data(true, C_HEADER);
    f.data(true, b"<message to='a@x' type='chat'><body>one</body></message><message to='a@x'><bo");
    f.gap(true, 33);
    f.data(true, b"dy>lost</body></message><iq type='get' id='q'><query xmlns='jabber:iq:roster'/></iq><message to='a@x'><body>two</body></message>");
    f.gap(true, 5);
    f.data(true, b"<message to='a@x'><body>three</body></message>");
    let ev = f.events();
    let texts: Vec<_> = ev.iter().map(|e| e.text.as_deref().unwrap()).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    let flags: Vec<_> = ev.iter().map(|e| (e.flags.gap_before, e.lost_bytes)).collect();
    assert_eq!(flags, [(false, 0), (true, 33), (true, 5)]);
}

#[test]
fn starttls_stops_decoding() {
    let mut f = Flow::new(cfg(), C, S, true);
    f.data(true, C_HEADER);
    f.data(false, S_HEADER);
    f.data(true, b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    f.data(false, b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    f.data(true, b"\x16\x03\x01\x00\xa5<message to='a@b'><body>no</body></message>");
    assert!(f.events().is_empty());
    assert_eq!(f.dec.stats().encrypted, 1);
    assert!(!f.dec.wants_data());
}

#[test]
fn binary_after_sasl_success_is_a_security_layer() {
    let mut f = Flow::new(cfg(), C, S, true);
    f.data(true, C_HEADER);
    f.data(false, b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    f.data(true, b"\x00\x00\x01\x20\x8f\x11binary");
    assert_eq!(f.dec.stats().encrypted, 1);
    assert!(!f.dec.wants_data());
}

#[test]
fn non_utf8_body_is_flagged_and_kept_raw() {
    let mut f = Flow::new(cfg(), C, S, true);
    f.data(true, C_HEADER);
    f.data(true, b"<message to='a@b'><body>bad \xff byte</body></message>");
    let ev = f.events();
    assert_eq!(ev.len(), 1);
    assert!(ev[0].flags.decode_error);
    assert!(ev[0].raw.is_some());
    assert_eq!(f.dec.stats().decode_errors, 1);
}

#[test]
fn raw_option_keeps_the_stanza() {
    let config = ProtoConfig {
        raw: true,
        ..cfg()
    };
    let ev = run_split(
        &config,
        C,
        S,
        true,
        &[(true, C_HEADER), (true, b"<message to='a@b'><body>x &amp; y</body></message>")],
        |_, _| vec![],
    );
    assert_eq!(
        ev[0].raw.as_deref(),
        Some(&b"<message to='a@b'><body>x &amp; y</body></message>"[..])
    );
}

#[test]
fn oversized_stanza_hits_the_cap_and_decoding_recovers() {
    let mut f = Flow::new(cfg(), C, S, true);
    f.data(true, C_HEADER);
    f.data(true, b"<iq type='set' id='v'><vCard xmlns='vcard-temp'><PHOTO><BINVAL>");
    let block = vec![b'A'; 64 * 1024];
    for _ in 0..8 {
        f.data(true, &block);
    }
    f.data(true, b"</BINVAL></PHOTO></vCard></iq><message to='a@b'><body>after</body></message>");
    let ev = f.events();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].text.as_deref(), Some("after"));
    assert_eq!(f.dec.stats().caps_hit, 1);
}

#[test]
fn ports_only_mode_uses_5222() {
    let config = ProtoConfig {
        ports_only: true,
        ..cfg()
    };
    let script: [(bool, &[u8]); 2] = [
        (true, C_HEADER),
        (true, b"<message to='a@b'><body>x</body></message>"),
    ];
    assert_eq!(run_split(&config, C, S, true, &script, |_, _| vec![]).len(), 1);
    assert!(run_split(&config, C, "198.51.100.1:8080", true, &script, |_, _| vec![]).is_empty());
}

#[test]
fn generic_xml_is_not_xmpp() {
    let mut f = Flow::new(cfg(), C, "198.51.100.1:8080", true);
    f.data(true, b"<?xml version='1.0'?><soap:Envelope xmlns:soap='x'><message>hi</message>");
    assert!(!f.dec.wants_data());
    assert!(f.events().is_empty());
}

fn fixture(name: &str) -> String {
    let path = format!("{}/fixtures/real/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Replay a real capture's vector and check every truth row (see
/// `proto_irc.rs`): only MUC reflections of a message the same connection
/// sent may be missing, and no event may be missing from the truth file.
fn check_real(name: &str) {
    let r = replay(&fixture(&format!("{name}.chunks.tsv")), cfg());
    let rows = read_truth(&fixture(&format!("{name}.truth.tsv")));
    let (missing, extra) = compare(&r.events, &rows);
    let wanted = rows.len();
    eprintln!(
        "{name}: {} events, {wanted} truth rows, {} not found (reflections)",
        r.events.len(),
        missing.len()
    );
    for row in &missing {
        assert!(is_echo(row, &rows), "{name}: truth row not found: {row:?}");
    }
    assert!(wanted > missing.len());
    assert!(extra.is_empty(), "{name}: events not in the truth file: {extra:#?}");
    assert!(r.stats.flows.get("xmpp").is_some_and(|n| *n > 0));
}

#[test]
fn real_ndpi_jabber_midstream_with_gaps() {
    check_real("ndpi-jabber");
    let r = replay(&fixture("ndpi-jabber.chunks.tsv"), cfg());
    // The 5223 flows are TLS from the first byte: never XMPP to a probe.
    assert!(r.stats.undetected >= 5, "{:?}", r.stats);
}

#[test]
fn real_prosody_three_clients() {
    check_real("xmpp-prosody-dave-erin-frank");
}

#[test]
fn real_prosody_port8080() {
    check_real("xmpp-prosody-port8080");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..12)) {
        let mut f = Flow::new(cfg(), C, S, true);
        f.data(true, C_HEADER);
        for (i, c) in chunks.iter().enumerate() {
            if i % 5 == 4 {
                f.gap(i % 2 == 0, c.len() as u64);
            } else {
                f.data(i % 2 == 0, c);
            }
        }
        f.close();
        let _ = f.events();
    }

    #[test]
    fn mutated_sessions_never_panic(pos in 0usize..4000, byte in any::<u8>(), cut in 1usize..64) {
        let mut f = Flow::new(cfg(), C, S, true);
        for (i, (c, b)) in conversation().into_iter().enumerate() {
            let mut b = b.to_vec();
            if i == pos % 18 {
                let at = pos % b.len();
                b[at] = byte;
            }
            for piece in b.chunks(cut) {
                f.data(c, piece);
            }
        }
        f.close();
        let _ = f.events();
    }

    #[test]
    fn xml_soup_never_panics(parts in prop::collection::vec(prop::sample::select(vec![
        &b"<message"[..], b" to='a@b'", b">", b"/>", b"</message>", b"<body>", b"</body>", b"&amp;", b"&#x0;",
        b"<![CDATA[", b"]]>", b"<!--", b"-->", b"'", b"\"", b"<stream:stream>", b"</stream:stream>", b"<?x", b"?>",
        b"<iq type='set'>", b"<file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='", b"\xff",
    ]), 0..60)) {
        let stream: Vec<u8> = parts.concat();
        let mut f = Flow::new(cfg(), C, S, true);
        f.data(true, C_HEADER);
        for piece in stream.chunks(7) {
            f.data(true, piece);
        }
        f.close();
        let _ = f.events();
    }
}
