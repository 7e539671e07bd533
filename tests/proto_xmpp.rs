//! XMPP detection and decoding, driven through `FlowDecoder` with chunks:
//! stream headers and mid-stream starts, ids from bind/SASL/`to`, chat,
//! group chat and reflections, typing, file offers, entities, STARTTLS,
//! gaps and resync, split invariance, hostile input, and the real captures'
//! truth files.

mod support;

use imscan::event::{Kind, LocalId, Protocol};
use imscan::proto::{ProtoConfig, ProtoStats};
use imscan::tcp::harness::Side as HSide;
use proptest::prelude::*;
use support::decode::{
    check_buffering, check_cut_anywhere, essence, harness_conversation, harness_split_invariance,
    run_random_chunks, run_split, Flow,
};
use support::golden::{check_generated, check_jsonl};
use support::packet::{Conversation as Script, Side as PSide};
use support::stages::pipeline;
use support::truth::{compare, is_echo, truth_of};

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
    let whole = check_cut_anywhere(&cfg(), C, S, &script);
    assert_eq!(whole.len(), 7);
    // Everything in one chunk per direction.
    let mut f = Flow::new(cfg(), C, S, true);
    for (c, b) in &script {
        f.data(*c, b);
    }
    assert_eq!(essence(&f.events()), whole);
}

#[test]
fn detected_on_any_port_and_the_client_side_is_found_by_content() {
    for server in [
        "198.51.100.1:5222",
        "198.51.100.1:8080",
        "198.51.100.1:443",
        "198.51.100.1:80",
    ] {
        for server_first in [false, true] {
            let mut script: Vec<(bool, &[u8])> = vec![
                (true, C_HEADER),
                (false, S_HEADER),
                (
                    true,
                    b"<message to='bob@x' type='chat'><body>hi</body></message>",
                ),
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
    f.data(
        true,
        b"<message to='a@x' type='chat'><body>one</body></message><message to='a@x'><bo",
    );
    f.gap(true, 33);
    f.data(true, b"dy>lost</body></message><iq type='get' id='q'><query xmlns='jabber:iq:roster'/></iq><message to='a@x'><body>two</body></message>");
    f.gap(true, 5);
    f.data(true, b"<message to='a@x'><body>three</body></message>");
    let ev = f.events();
    let texts: Vec<_> = ev.iter().map(|e| e.text.as_deref().unwrap()).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    let flags: Vec<_> = ev
        .iter()
        .map(|e| (e.flags.gap_before, e.lost_bytes))
        .collect();
    assert_eq!(flags, [(false, 0), (true, 33), (true, 5)]);
}

#[test]
fn carbons_are_the_inner_message_and_only_from_our_own_account() {
    let mut f = Flow::new(cfg(), C, S, true);
    f.data(true, C_HEADER);
    f.data(false, S_HEADER);
    f.data(false, b"<iq type='result' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>dave@x/laptop</jid></bind></iq>");
    f.data(false, b"<message from='dave@x' to='dave@x/laptop'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message from='dave@x/phone' to='erin@x/home' type='chat'><body>from my phone</body></message></forwarded></sent></message>");
    f.data(false, b"<message from='dave@x' to='dave@x/laptop'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message from='erin@x/home' to='dave@x/phone' type='chat'><body>to your phone</body></message></forwarded></received></message>");
    // A "carbon" from someone else is forged.
    f.data(false, b"<message from='mallory@x' to='dave@x/laptop'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message from='dave@x/phone' to='erin@x' type='chat'><body>forged</body></message></forwarded></sent></message>");
    // History (MAM) results are replays, not new messages.
    f.data(false, b"<message to='dave@x/laptop'><result xmlns='urn:xmpp:mam:2' id='1'><forwarded xmlns='urn:xmpp:forward:0'><message from='erin@x/home' type='chat'><body>old</body></message></forwarded></result></message>");
    let ev = f.events();
    let got: Vec<_> = ev
        .iter()
        .map(|e| {
            (
                e.outgoing,
                e.remote_id.as_str(),
                e.sender.as_deref(),
                e.text.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (true, "erin@x", Some("dave@x/phone"), Some("from my phone")),
            (false, "erin@x", Some("erin@x/home"), Some("to your phone")),
        ]
    );
}

#[test]
fn room_reflections_without_ids_are_recognised_by_body() {
    let mut f = Flow::new(cfg(), C, S, true);
    f.data(true, C_HEADER);
    f.data(false, S_HEADER);
    f.data(false, b"<iq type='result' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>dave@x/laptop</jid></bind></iq>");
    f.data(
        true,
        b"<presence to='tea@conf.x/dave'><x xmlns='http://jabber.org/protocol/muc'/></presence>",
    );
    f.data(
        true,
        b"<message to='tea@conf.x' type='groupchat'><body>no id</body></message>",
    );
    f.data(false, b"<message from='tea@conf.x/dave' to='dave@x/laptop' type='groupchat'><body>no id</body></message>");
    // Our nick, but nothing we sent on this connection: another device of ours.
    f.data(false, b"<message from='tea@conf.x/dave' to='dave@x/laptop' type='groupchat'><body>from my phone</body></message>");
    let ev = f.events();
    let got: Vec<_> = ev.iter().map(|e| (e.outgoing, e.text.as_deref())).collect();
    assert_eq!(got, [(true, Some("no id")), (true, Some("from my phone"))]);
    assert_eq!(f.dec.stats().echoes_dropped, 1);
}

#[test]
fn starttls_stops_decoding() {
    let mut f = Flow::new(cfg(), C, S, true);
    f.data(true, C_HEADER);
    f.data(false, S_HEADER);
    f.data(true, b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    f.data(false, b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    f.data(
        true,
        b"\x16\x03\x01\x00\xa5<message to='a@b'><body>no</body></message>",
    );
    assert!(f.events().is_empty());
    assert_eq!(f.dec.stats().encrypted, 1);
    assert!(!f.dec.wants_data());
}

#[test]
fn binary_after_sasl_success_is_a_security_layer() {
    let mut f = Flow::new(cfg(), C, S, true);
    f.data(true, C_HEADER);
    f.data(
        false,
        b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
    );
    f.data(true, b"\x00\x00\x01\x20\x8f\x11binary");
    assert_eq!(f.dec.stats().encrypted, 1);
    assert!(!f.dec.wants_data());
}

#[test]
fn non_utf8_body_is_flagged_and_kept_raw() {
    let mut f = Flow::new(cfg(), C, S, true);
    f.data(true, C_HEADER);
    f.data(
        true,
        b"<message to='a@b'><body>bad \xff byte</body></message>",
    );
    let ev = f.events();
    assert_eq!(ev.len(), 1);
    assert!(ev[0].flags.decode_error);
    assert!(ev[0].raw.is_some());
    assert_eq!(f.dec.stats().decode_errors, 1);
}

#[test]
fn raw_option_keeps_the_stanza() {
    let config = ProtoConfig { raw: true, ..cfg() };
    let ev = run_split(
        &config,
        C,
        S,
        true,
        &[
            (true, C_HEADER),
            (true, b"<message to='a@b'><body>x &amp; y</body></message>"),
        ],
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
    f.data(
        true,
        b"<iq type='set' id='v'><vCard xmlns='vcard-temp'><PHOTO><BINVAL>",
    );
    let block = vec![b'A'; 64 * 1024];
    for _ in 0..8 {
        f.data(true, &block);
        assert!(f.dec.buffered_bytes() <= CAP, "{}", f.dec.buffered_bytes());
    }
    f.data(
        true,
        b"</BINVAL></PHOTO></vCard></iq><message to='a@b'><body>after</body></message>",
    );
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
    assert_eq!(
        run_split(&config, C, S, true, &script, |_, _| vec![]).len(),
        1
    );
    assert!(run_split(
        &config,
        C,
        "198.51.100.1:8080",
        true,
        &script,
        |_, _| vec![]
    )
    .is_empty());
}

#[test]
fn generic_xml_is_not_xmpp() {
    let mut f = Flow::new(cfg(), C, "198.51.100.1:8080", true);
    f.data(
        true,
        b"<?xml version='1.0'?><soap:Envelope xmlns:soap='x'><message>hi</message>",
    );
    assert!(!f.dec.wants_data());
    assert!(f.events().is_empty());
}

#[test]
fn split_invariance_with_gaps_through_the_tcp_harness() {
    let conv = harness_conversation(&conversation())
        .client(b"<message to='a@x'><body>cut by a g")
        .gap(HSide::Client, 12)
        .client(b"ap</body></message><message to='a@x'><body>after the gap</body></message>")
        .gap(HSide::Server, 40)
        .server(b"ody></message><message from='a@x/r' type='chat'><body>after</body></message>");
    let got = harness_split_invariance(&conv, &cfg(), 16);
    assert_eq!(got.len(), 9, "{got:#?}");
    assert!(got.last().unwrap().contains("lost=40"), "{got:#?}");
}

/// Generated captures (fixtures/xmpp/): a full session on 5222, the same
/// stanzas mid-stream on 443 with lost segments, STARTTLS, and a session on
/// 80 cut into tiny segments; checked byte for byte against the checked-in
/// pcap and event list.
#[test]
fn generated_fixtures() {
    let mut s = Script::between("192.0.2.21:52236", "198.51.100.1:5222");
    s.handshake();
    s.play(&conversation(), 1460);
    s.close();
    let ev = check_generated("fixtures/xmpp/xmpp-5222-session", &[s]);
    assert_eq!(ev.len(), 7);

    // Mid-stream on 443 (no handshake, no stream header), a segment lost
    // inside a message and one lost between stanzas.
    let mut s = Script::between("192.0.2.22:50443", "198.51.100.2:443");
    s.send(
        PSide::Client,
        b"e</body></message><message to='bob@x' type='chat'><body>first</body></message>",
        1460,
    );
    s.send(
        PSide::Server,
        b"<message from='bob@x/r' to='amy@x/r' type='chat'><body>reply</body></message>",
        1460,
    );
    s.send_split(
        PSide::Client,
        b"<message to='bob@x' type='chat'><body>cut in the middle</body></message><message to='bob@x' type='chat'><body>after</body></message>",
        &[40, 20],
    );
    s.send(
        PSide::Server,
        b"<message from='bob@x/r' type='chat'><body>lost</body></message>",
        1460,
    );
    s.send(PSide::Server, b"<message from='bob@x/r' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>", 1460);
    // Segments: 0 first, 1 reply, 2-4 cut/after, 5 lost, 6 composing.
    s.drop_segment(3).drop_segment(4);
    s.close();
    let ev = check_generated("fixtures/xmpp/xmpp-443-midstream-gaps", &[s]);
    let got: Vec<_> = ev
        .iter()
        .map(|e| (e.kind, e.text.as_deref(), e.flags.gap_before))
        .collect();
    assert_eq!(
        got,
        [
            (Kind::Message, Some("first"), false),
            (Kind::Message, Some("reply"), false),
            (Kind::Message, Some("after"), true),
            (Kind::Typing, None, true),
        ]
    );
    assert!(ev.iter().all(|e| e.flags.midstream));

    // STARTTLS: the stream header is all there is to see.
    let mut s = Script::between("192.0.2.23:40000", "198.51.100.3:5222");
    s.handshake();
    s.send(PSide::Client, C_HEADER, 1460);
    s.send(PSide::Server, S_HEADER, 1460);
    s.send(
        PSide::Client,
        b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        1460,
    );
    s.send(
        PSide::Server,
        b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        1460,
    );
    s.send(
        PSide::Client,
        b"\x16\x03\x01\x00\x30<message to='a@b'><body>not text</body></message>",
        1460,
    );
    s.close();
    let ev = check_generated("fixtures/xmpp/xmpp-5222-starttls", &[s]);
    assert!(ev.is_empty());

    // Port 80, every segment 5 bytes: group chat, typing and an SI offer.
    let mut s = Script::between("192.0.2.24:41080", "198.51.100.4:80");
    s.handshake();
    s.play(&conversation()[4..], 5);
    s.close();
    let ev = check_generated("fixtures/xmpp/xmpp-80-tiny-segments", &[s]);
    assert_eq!(ev.len(), 7);
}

/// Run a real capture through the `imscan` binary (its JSON Lines must equal
/// `<name>.expected.jsonl` at one and two threads) and check every truth row (see `proto_irc.rs`): only MUC reflections of a
/// message the same connection sent may be missing, and no event may lack a
/// row.
fn check_real(name: &str, file: &str, released: &[(u64, u64)]) -> ProtoStats {
    let events = check_jsonl(
        &format!("fixtures/real/{file}"),
        &format!("fixtures/real/{name}.expected.jsonl"),
    )
    .events();
    let (_, stats) = pipeline(&format!("fixtures/real/{file}"), cfg());
    let mut rows = truth_of(&format!("fixtures/real/{name}"));
    for row in &mut rows {
        row.released_at = released
            .iter()
            .find(|(f, _)| *f == row.frame)
            .map(|(_, at)| *at);
    }
    let (missing, extra) = compare(&events, &rows);
    for row in &missing {
        assert!(is_echo(row, &rows), "{name}: truth row not found: {row:?}");
    }
    assert!(rows.len() > missing.len());
    assert!(
        extra.is_empty(),
        "{name}: events not in the truth file: {extra:#?}"
    );
    assert!(stats.flows.get("xmpp").is_some_and(|n| *n > 0));
    stats
}

#[test]
fn real_ndpi_jabber_midstream_with_gaps() {
    // Frames 281 and 287 come right after holes the capture never fills; the
    // tcp stage releases them only at the peer's next ACK (282, 288), but
    // stamps them with the frames that carried them, as the truth file does.
    let stats = check_real("ndpi-jabber", "ndpi-jabber.pcap", &[]);
    // The five 5223 flows carry no XMPP (binary records that are not even
    // TLS record headers), the empty stream 6 neither.
    assert_eq!(stats.undetected, 6, "{stats:?}");
    assert_eq!(stats.flows.get("xmpp"), Some(&6));
}

#[test]
fn real_prosody_three_clients() {
    let stats = check_real(
        "xmpp-prosody-dave-erin-frank",
        "xmpp-prosody-dave-erin-frank.pcap",
        &[],
    );
    assert_eq!(stats.echoes_dropped, 6, "{stats:?}");
}

#[test]
fn real_prosody_port8080() {
    check_real("xmpp-prosody-port8080", "xmpp-prosody-port8080.pcapng", &[]);
}

/// Starts a session of this test's protocol.
const HELLO: &[u8] = C_HEADER;
const CAP: usize = imscan::proto::xmpp::session::STANZA_CAP;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..12)) {
        run_random_chunks(cfg(), C, S, true, C_HEADER, &chunks);
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

proptest! {
    // Few cases, large inputs: enough bytes to reach the caps.
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn buffering_never_exceeds_the_caps(chunks in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..24_000)), 1..24), newline_free in any::<bool>()) {
        check_buffering(cfg(), C, S, HELLO, CAP, chunks, newline_free)?;
    }
}
