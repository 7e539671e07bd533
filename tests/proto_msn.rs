//! MSN decoding from the outside: byte streams and the real capture fed through
//! the proto framework's front door (`FlowDecoder`), checked event by event.

mod support;

use imscan::event::{Event, Kind, LocalId, Protocol};
use imscan::proto::ProtoConfig;
use support::decode::{apply_edits, check_every_split, run_steps, Flow, Seen, Step};
use support::golden::{check_binary, check_decoded, check_sinks};
use support::packet::{pcap_of, Conversation};
use support::stages::pipeline;

const CLIENT: &str = "10.0.0.5:1042";
const SERVER: &str = "207.46.26.167:1863";

fn msg_out(trid: u32, payload: &str) -> String {
    format!("MSG {trid} N {}\r\n{payload}", payload.len())
}

fn msg_in(from: &str, payload: &str) -> String {
    format!("MSG {from} Nick {}\r\n{payload}", payload.len())
}

fn text(t: &str) -> String {
    format!("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nX-MMS-IM-Format: FN=Arial; EF=; CO=0; CS=0; PF=22\r\n\r\n{t}")
}

fn typing(user: &str) -> String {
    format!(
        "MIME-Version: 1.0\r\nContent-Type: text/x-msmsgscontrol\r\nTypingUser: {user}\r\n\r\n\r\n"
    )
}

fn s(kind: Kind, outgoing: bool, remote: &str, sender: &str, text: Option<&str>) -> Seen {
    Seen::new("alice@hotmail.com", kind, outgoing, remote, sender, text)
}

// ---- P2P / SLP builders -------------------------------------------------

fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for ch in b.chunks(3) {
        let n = (u32::from(ch[0]) << 16)
            | (u32::from(*ch.get(1).unwrap_or(&0)) << 8)
            | u32::from(*ch.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= ch.len() {
                s.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn file_context(name: &str, size: u64) -> Vec<u8> {
    let mut c = vec![0u8; 574];
    c[0..4].copy_from_slice(&574u32.to_le_bytes());
    c[4..8].copy_from_slice(&2u32.to_le_bytes());
    c[8..16].copy_from_slice(&size.to_le_bytes());
    for (i, u) in name.encode_utf16().enumerate().take(259) {
        c[20 + 2 * i..22 + 2 * i].copy_from_slice(&u.to_le_bytes());
    }
    c
}

fn slp_invite(to: &str, from: &str, guid: &str, app_id: u32, context: &str) -> String {
    let body = format!(
        "EUF-GUID: {guid}\r\nSessionID: 1980589\r\nAppID: {app_id}\r\nContext: {context}\r\n\r\n\0"
    );
    format!(
        "INVITE MSNMSGR:{to} MSNSLP/1.0\r\nTo: <msnmsgr:{to}>\r\nFrom: <msnmsgr:{from}>\r\nVia: MSNSLP/1.0/TLP ;branch={{33517CE4-02FC-4428-B6F4-39927229B722}}\r\nCSeq: 0\r\nCall-ID: {{9D79AE57-1BD5-444B-B14E-3FC9BB2B5D58}}\r\nMax-Forwards: 0\r\nContent-Type: application/x-msnmsgr-sessionreqbody\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// P2P v1 MSG payloads carrying `slp`, cut into chunks of at most `chunk` bytes.
fn p2p_payloads(dest: &str, slp: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off < slp.len() {
        let part = &slp[off..(off + chunk).min(slp.len())];
        let mut p = format!(
            "MIME-Version: 1.0\r\nContent-Type: application/x-msnmsgrp2p\r\nP2P-Dest: {dest}\r\n\r\n"
        )
        .into_bytes();
        let mut h = [0u8; 48];
        h[4..8].copy_from_slice(&99_u32.to_le_bytes());
        h[8..16].copy_from_slice(&(off as u64).to_le_bytes());
        h[16..24].copy_from_slice(&(slp.len() as u64).to_le_bytes());
        h[32..36].copy_from_slice(&(part.len() as u32).to_le_bytes());
        p.extend_from_slice(&h);
        p.extend_from_slice(part);
        p.extend_from_slice(&0u32.to_be_bytes());
        out.push(p);
        off += part.len();
    }
    out
}

/// A P2P v2 MSG payload (MSNP16+; `P2P-Dest` names the endpoint GUID)
/// carrying `slp` in one chunk: the transport header with an ACK TLV, then the
/// data header (TF 1, first chunk of a session-0 message), protocols.md §1.
fn p2p_v2_payload(dest: &str, slp: &[u8]) -> Vec<u8> {
    let mut p = format!(
        "MIME-Version: 1.0\r\nContent-Type: application/x-msnmsgrp2p\r\nP2P-Dest: {dest};{{4a8ab2e1-5a2f-4c1f-9c3b-1f0e7c2d3b4a}}\r\nP2P-Src: alice@hotmail.com;{{0123abcd-0000-4000-8000-000000000001}}\r\n\r\n"
    )
    .into_bytes();
    // Header TLV: type 2 (ACK request), length 4, value.
    let tlvs = [2u8, 4, 0, 0, 0, 9];
    let header_len = 8 + tlvs.len() + 2; // padded to a multiple of 4
    let data_header = [8u8, 1, 0, 0, 0, 0, 0, 0]; // len 8, TF 1, package 0, session 0
    let message_len = (data_header.len() + slp.len()) as u16;
    p.push(header_len as u8);
    p.push(0); // opcode
    p.extend_from_slice(&message_len.to_be_bytes());
    p.extend_from_slice(&0x2a2a_2a2au32.to_be_bytes()); // base id
    p.extend_from_slice(&tlvs);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&data_header);
    p.extend_from_slice(slp);
    p
}

fn cmd_with_payload(head: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = format!("{head} {}\r\n", payload.len()).into_bytes();
    v.extend_from_slice(payload);
    v
}

/// A switchboard conversation: (from_client, time, bytes) per step.
fn switchboard_script() -> Vec<Step> {
    let mut v: Vec<Step> = vec![
        (
            true,
            100,
            b"ANS 1 Alice@Hotmail.com;{0123-abcd} 849102291.520491113 11752013\r\n".to_vec(),
        ),
        (
            false,
            101,
            b"IRO 1 1 1 bob@hotmail.com Bob 1342177280\r\nANS 1 OK\r\n".to_vec(),
        ),
        (
            true,
            102,
            msg_out(2, &typing("alice@hotmail.com")).into_bytes(),
        ),
        (
            true,
            103,
            msg_out(3, &text("hi bob, got a minute?")).into_bytes(),
        ),
        (
            false,
            104,
            msg_in("bob@hotmail.com", &text("sure \u{2013} caf\u{e9}")).into_bytes(),
        ),
        (
            false,
            105,
            msg_in("Hotmail", &text("profile noise")).into_bytes(),
        ),
    ];
    let invite = "MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsinvite; charset=UTF-8\r\n\r\nApplication-Name: File Transfer\r\nApplication-GUID: {5D3E02AB-6190-11d3-BBBB-00C04F795683}\r\nInvitation-Command: INVITE\r\nInvitation-Cookie: 17\r\nApplication-File: report.pdf\r\nApplication-FileSize: 48213\r\nConnectivity: N\r\n\r\n";
    v.push((true, 106, msg_out(4, invite).into_bytes()));
    let ctx = base64(&file_context("holiday photo.jpg", 1_234_567));
    let slp = slp_invite(
        "alice@hotmail.com",
        "bob@hotmail.com",
        "{5D3E02AB-6190-11D3-BBBB-00C04F795683}",
        2,
        &ctx,
    );
    for p in p2p_payloads("alice@hotmail.com", slp.as_bytes(), 1202) {
        v.push((false, 107, cmd_with_payload("MSG bob@hotmail.com Bob", &p)));
    }
    let cam = slp_invite(
        "bob@hotmail.com",
        "alice@hotmail.com",
        "{4BD96FC0-AB17-4425-A14A-439185962DC8}",
        4,
        &base64(
            &"{B8BE70DE-E2CA-4400-AE03-88FF85B9F4E8}"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<u8>>(),
        ),
    );
    for p in p2p_payloads("bob@hotmail.com", cam.as_bytes(), 1202) {
        v.push((true, 108, cmd_with_payload("MSG 5 D", &p)));
    }
    let pic = slp_invite(
        "bob@hotmail.com",
        "alice@hotmail.com",
        "{A4268EEC-FEC5-49E5-95C3-F126696BDBF6}",
        1,
        "AAAA",
    );
    for p in p2p_payloads("bob@hotmail.com", pic.as_bytes(), 1202) {
        v.push((true, 109, cmd_with_payload("MSG 6 D", &p)));
    }
    v.push((
        false,
        110,
        msg_in(
            "bob@hotmail.com",
            "MIME-Version: 1.0\r\nContent-Type: text/x-msnmsgr-datacast\r\n\r\nID: 1\r\n\r\n",
        )
        .into_bytes(),
    ));
    v.push((
        false,
        111,
        b"JOI carol@hotmail.com Carol 1342177280\r\nJOI alice@hotmail.com Alice 0\r\n".to_vec(),
    ));
    v.push((
        false,
        112,
        msg_in("carol@hotmail.com", &text("hello all")).into_bytes(),
    ));
    v.push((true, 113, msg_out(7, &text("hi carol")).into_bytes()));
    v.push((false, 114, b"BYE carol@hotmail.com\r\n".to_vec()));
    v
}

fn switchboard_expected() -> Vec<Seen> {
    let g = "groupchat-111";
    let mut group_in = s(
        Kind::Message,
        false,
        g,
        "carol@hotmail.com",
        Some("hello all"),
    );
    group_in.group = true;
    let mut group_out = s(
        Kind::Message,
        true,
        g,
        "alice@hotmail.com",
        Some("hi carol"),
    );
    group_out.group = true;
    let mut file_out = s(
        Kind::File,
        true,
        "bob@hotmail.com",
        "alice@hotmail.com",
        None,
    );
    file_out.file = Some((Some("report.pdf".into()), Some(48213)));
    let mut file_in = s(
        Kind::File,
        false,
        "bob@hotmail.com",
        "bob@hotmail.com",
        None,
    );
    file_in.file = Some((Some("holiday photo.jpg".into()), Some(1_234_567)));
    vec![
        s(
            Kind::Typing,
            true,
            "bob@hotmail.com",
            "alice@hotmail.com",
            None,
        ),
        s(
            Kind::Message,
            true,
            "bob@hotmail.com",
            "alice@hotmail.com",
            Some("hi bob, got a minute?"),
        ),
        s(
            Kind::Message,
            false,
            "bob@hotmail.com",
            "bob@hotmail.com",
            Some("sure \u{2013} caf\u{e9}"),
        ),
        file_out,
        file_in,
        s(
            Kind::Webcam,
            true,
            "bob@hotmail.com",
            "alice@hotmail.com",
            None,
        ),
        group_in,
        group_out,
    ]
}

fn run_script(script: &[Step]) -> Vec<Event> {
    run_steps(ProtoConfig::default(), CLIENT, SERVER, true, script).0
}

#[test]
fn switchboard_conversation_gives_every_event_kind() {
    let events = run_script(&switchboard_script());
    let got: Vec<Seen> = events.iter().map(Seen::from).collect();
    assert_eq!(got, switchboard_expected());
    // Addresses, protocol, times and per-flow order.
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.protocol, Protocol::Msn);
        assert_eq!(e.client.to_string(), CLIENT);
        assert_eq!(e.server.to_string(), SERVER);
        assert_eq!(e.seq, i as u64);
        assert!(!e.flags.gap_before && !e.flags.midstream);
    }
    assert_eq!(events[1].time.secs(), 103);
    assert_eq!(events[2].text_encoding, Some("utf-8"));
}

/// MSNP16+ clients speak P2P v2 when both ends can (`P2P-Dest` with a GUID):
/// a variable-length binary header instead of v1's 48 bytes. The SLP INVITE
/// inside is found and gives the same file event.
#[test]
fn p2p_v2_file_invitation_gives_a_file_event() {
    let ctx = base64(&file_context("minutes 2024.docx", 88_001));
    let slp = slp_invite(
        "bob@hotmail.com",
        "alice@hotmail.com",
        "{5D3E02AB-6190-11D3-BBBB-00C04F795683}",
        2,
        &ctx,
    );
    let payload = p2p_v2_payload("bob@hotmail.com", slp.as_bytes());
    let script: Vec<Step> = vec![
        (
            true,
            100,
            b"ANS 1 alice@hotmail.com;{0123abcd-0000-4000-8000-000000000001} 849102291.520491113 11752013\r\n".to_vec(),
        ),
        (
            false,
            101,
            b"IRO 1 1 1 bob@hotmail.com Bob 1342177280\r\nANS 1 OK\r\n".to_vec(),
        ),
        (true, 102, cmd_with_payload("MSG 2 D", &payload)),
    ];
    let events = run_script(&script);
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(e.kind, Kind::File);
    assert!(e.outgoing);
    assert_eq!(e.remote_id, "bob@hotmail.com");
    assert_eq!(e.file_name.as_deref(), Some("minutes 2024.docx"));
    assert_eq!(e.file_size, Some(88_001));
    assert!(!e.flags.decode_error);
}

#[test]
fn every_split_of_the_stream_gives_the_same_events() {
    let script = switchboard_script();
    // Split every step's bytes at every position (both halves in order).
    check_every_split(
        &script,
        |len| {
            if len < 200 {
                (1..len).collect()
            } else {
                (1..len).step_by(37).chain([len - 1]).collect()
            }
        },
        |sc| run_script(sc).iter().map(Seen::from).collect::<Vec<_>>(),
    );
}

#[test]
fn one_byte_chunks_give_the_same_events() {
    let script = switchboard_script();
    let whole: Vec<Seen> = run_script(&script).iter().map(Seen::from).collect();
    let bytes: Vec<Step> = script
        .iter()
        .flat_map(|(c, t, b)| b.iter().map(move |x| (*c, *t, vec![*x])))
        .collect();
    let got: Vec<Seen> = run_script(&bytes).iter().map(Seen::from).collect();
    assert_eq!(got, whole);
}

#[test]
fn a_peer_who_leaves_and_comes_back_is_still_one_to_one() {
    let mut f = Flow::new(ProtoConfig::default(), CLIENT, SERVER, true);
    f.at(1)
        .data(true, b"USR 1 alice@hotmail.com 1234.5678.9012\r\n");
    f.at(2).data(false, b"JOI bob@hotmail.com Bob\r\nJOI bob@hotmail.com;{guid-2} Bob\r\nBYE bob@hotmail.com\r\nJOI Bob@Hotmail.com Bob\r\n");
    f.at(3)
        .data(true, msg_out(2, &text("still just us")).as_bytes());
    let (ev, _) = f.finish();
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].remote_id.as_str(), ev[0].group),
        ("bob@hotmail.com", false)
    );
}

#[test]
fn many_joins_keep_bounded_state() {
    let mut f = Flow::new(ProtoConfig::default(), CLIENT, SERVER, true);
    f.at(1)
        .data(true, b"USR 1 alice@hotmail.com 1234.5678.9012\r\n");
    let mut joins = Vec::new();
    for i in 0..5000 {
        joins.extend_from_slice(format!("JOI user{i}@x.com U\r\n").as_bytes());
    }
    f.at(2).data(false, &joins);
    f.at(3).data(
        false,
        msg_in("user4999@x.com", &text("late joiner")).as_bytes(),
    );
    let (ev, _) = f.finish();
    assert_eq!(ev.len(), 1);
    assert!(ev[0].group && ev[0].remote_id == "groupchat-2");
    assert_eq!(ev[0].sender.as_deref(), Some("user4999@x.com"));
}

#[test]
fn a_message_spanning_chunks_names_its_first_and_last_frame() {
    let mut f = Flow::new(ProtoConfig::default(), CLIENT, SERVER, true);
    f.at(1).data(false, b"USR 1 OK alice@hotmail.com Alice\r\n");
    let m = msg_in("bob@hotmail.com", &text("split"));
    f.at(2).data(false, &m.as_bytes()[..20]);
    f.at(3).data(false, &m.as_bytes()[20..]);
    let (ev, _) = f.finish();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].frames, (2, 3));
    assert_eq!(ev[0].time.secs(), 3);
}

#[test]
fn a_gap_inside_a_payload_loses_only_that_message() {
    let mut f = Flow::new(ProtoConfig::default(), CLIENT, SERVER, true);
    f.at(1)
        .data(true, b"USR 1 alice@hotmail.com 1234.5678.9012\r\n");
    f.at(1).data(false, b"JOI bob@hotmail.com Bob\r\n");
    let lost = msg_in(
        "bob@hotmail.com",
        &text("this one is cut MSG 1 N 5\r\nabcde"),
    );
    f.at(2).data(false, &lost.as_bytes()[..40]);
    f.at(3).gap(false, 30);
    let rest = &lost.as_bytes()[70..];
    let mut next = rest.to_vec();
    next.extend_from_slice(msg_in("bob@hotmail.com", &text("after the gap")).as_bytes());
    f.at(4).data(false, &next);
    // A gap between whole units.
    f.at(5).gap(true, 100);
    f.at(6)
        .data(true, msg_out(9, &text("mine after a gap")).as_bytes());
    let (ev, _) = f.finish();
    let texts: Vec<_> = ev.iter().map(|e| e.text.clone().unwrap()).collect();
    assert_eq!(texts, ["after the gap", "mine after a gap"]);
    assert!(ev[0].flags.gap_before && ev[0].lost_bytes == 30);
    assert!(ev[1].flags.gap_before && ev[1].lost_bytes == 100);
    assert_eq!(ev[1].remote_id, "bob@hotmail.com");
}

#[test]
fn midstream_pickup_on_a_non_standard_port() {
    // No SYN: the flow starts inside a payload; the client side comes from content.
    let mut f = Flow::new(
        ProtoConfig::default(),
        "192.168.1.9:40000",
        "10.1.1.1:8080",
        false,
    );
    let mut first = b"ly typed text\r\nMSG 1 N 5\r\n".to_vec();
    first.extend_from_slice(msg_in("bob@hotmail.com", &text("picked up")).as_bytes());
    f.at(10).data(false, &first);
    f.at(11).data(true, msg_out(20, &text("reply")).as_bytes());
    let (ev, _) = f.finish();
    let got: Vec<(bool, String, Option<String>)> = ev
        .iter()
        .map(|e| (e.outgoing, e.remote_id.to_string(), e.text.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                false,
                "bob@hotmail.com".to_string(),
                Some("picked up".to_string())
            ),
            // The outgoing MSG names no recipient and no JOI/IRO was seen.
            (true, "unknown".to_string(), Some("reply".to_string())),
        ]
    );
    assert!(ev.iter().all(|e| e.flags.midstream));
    assert_eq!(ev[0].client.to_string(), "192.168.1.9:40000");
    assert_eq!(ev[0].local_id, LocalId::Unknown);
}

#[test]
fn midstream_local_user_is_learned_from_its_own_typing() {
    let mut f = Flow::new(
        ProtoConfig::default(),
        "192.168.1.9:40000",
        "10.1.1.1:1863",
        false,
    );
    f.at(1)
        .data(false, msg_in("bob@hotmail.com", &text("before")).as_bytes());
    f.at(2)
        .data(true, msg_out(7, &typing("Alice@Hotmail.com")).as_bytes());
    f.at(3)
        .data(false, msg_in("bob@hotmail.com", &text("after")).as_bytes());
    let (ev, _) = f.finish();
    let locals: Vec<Option<&str>> = ev.iter().map(|e| e.local_id_str()).collect();
    assert_eq!(
        locals,
        [None, Some("alice@hotmail.com"), Some("alice@hotmail.com")]
    );
    assert_eq!(ev[1].kind, Kind::Typing);
}

#[test]
fn own_message_from_another_endpoint_is_outgoing() {
    let mut f = Flow::new(ProtoConfig::default(), CLIENT, SERVER, true);
    f.at(1)
        .data(true, b"USR 1 alice@live.com 1234.5678.9012\r\n");
    f.at(2).data(
        false,
        b"JOI bob@live.com;{b1} Bob\r\nJOI alice@live.com;{a2} Alice\r\n",
    );
    f.at(3).data(
        false,
        msg_in("alice@live.com;{a2}", &text("from my phone")).as_bytes(),
    );
    let (ev, _) = f.finish();
    let got: Vec<Seen> = ev.iter().map(Seen::from).collect();
    let mut want = s(
        Kind::Message,
        true,
        "bob@live.com",
        "alice@live.com",
        Some("from my phone"),
    );
    want.local = Some("alice@live.com".into());
    assert_eq!(got, [want]);
}

#[test]
fn notification_server_facts_and_yahoo_interop() {
    let mut f = Flow::new(ProtoConfig::default(), CLIENT, SERVER, true);
    f.at(1).data(true, b"VER 1 MSNP15 MSNP14 CVR0\r\n");
    f.at(1).data(false, b"VER 1 MSNP15\r\n");
    f.at(2).data(true, b"USR 3 SSO I Alice@Live.com\r\n");
    f.at(3).data(
        false,
        b"XFR 10 SB 65.54.171.31:1863 CKI 17262740.1050826919.32308 U messenger.msn.com 1\r\n",
    );
    f.at(4).data(
        false,
        b"RNG 11752013 65.54.171.31:1863 CKI 849102291.520491113 bob@hotmail.com Bob\r\n",
    );
    f.at(5).data(
        false,
        &cmd_with_payload("MSG Hotmail Hotmail", text("x").as_bytes()),
    );
    f.at(6).data(
        true,
        &cmd_with_payload(
            "UUM 12 yahooguy@yahoo.com 32 1",
            text("hi yahoo").as_bytes(),
        ),
    );
    f.at(7).data(
        false,
        &cmd_with_payload("UBM yahooguy@yahoo.com 32 1", text("hi msn").as_bytes()),
    );
    let (ev, facts) = f.finish();
    let tokens: Vec<(&str, &str)> = facts
        .iter()
        .map(|x| (x.token.as_str(), x.user.as_str()))
        .collect();
    assert_eq!(
        tokens,
        [
            ("msn-cookie:17262740.1050826919.32308", "alice@live.com"),
            ("msn-cookie:849102291.520491113", "alice@live.com")
        ]
    );
    let got: Vec<Seen> = ev.iter().map(Seen::from).collect();
    let mut out = s(
        Kind::Message,
        true,
        "yahooguy@yahoo.com",
        "alice@live.com",
        Some("hi yahoo"),
    );
    out.local = Some("alice@live.com".into());
    let mut inc = s(
        Kind::Message,
        false,
        "yahooguy@yahoo.com",
        "yahooguy@yahoo.com",
        Some("hi msn"),
    );
    inc.local = Some("alice@live.com".into());
    assert_eq!(got, [out, inc]);
}

#[test]
fn msnp21_sdg_messages_and_typing() {
    let mut f = Flow::new(ProtoConfig::default(), CLIENT, SERVER, true);
    f.at(1).data(true, b"USR 3 SSO I alice@live.com\r\n");
    let sdg = |from: &str, to: &str, kind: &str, body: &str| {
        let p = format!("Routing: 1.0\r\nTo: {to}\r\nFrom: {from}\r\n\r\nReliability: 1.0\r\n\r\nMessaging: 2.0\r\nMessage-Type: {kind}\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        p
    };
    f.at(2).data(
        true,
        &cmd_with_payload(
            "SDG 4",
            sdg("1:alice@live.com;epid={1}", "1:bob@live.com", "Text", "hey").as_bytes(),
        ),
    );
    f.at(3).data(
        false,
        &cmd_with_payload(
            "SDG 0",
            sdg(
                "1:bob@live.com;epid={2}",
                "1:alice@live.com",
                "Control/Typing",
                "",
            )
            .as_bytes(),
        ),
    );
    f.at(4).data(
        false,
        &cmd_with_payload(
            "SDG 0",
            sdg("1:carol@live.com", "10:{abc}@live.com", "Text", "room").as_bytes(),
        ),
    );
    let (ev, _) = f.finish();
    let got: Vec<(Kind, bool, String, bool, Option<String>)> = ev
        .iter()
        .map(|e| {
            (
                e.kind,
                e.outgoing,
                e.remote_id.to_string(),
                e.group,
                e.text.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                Kind::Message,
                true,
                "bob@live.com".into(),
                false,
                Some("hey".into())
            ),
            (Kind::Typing, false, "bob@live.com".into(), false, None),
            (
                Kind::Message,
                false,
                "10:{abc}@live.com".into(),
                true,
                Some("room".into())
            ),
        ]
    );
    assert_eq!(ev[2].sender.as_deref(), Some("carol@live.com"));
}

// ---- HTTP gateway ----------------------------------------------------------

fn post(target: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!("POST {target} HTTP/1.1\r\nAccept: */*\r\nContent-Type: application/x-msn-messenger\r\nProxy-Connection: Keep-Alive\r\nHost: gateway.messenger.hotmail.com\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    v.extend_from_slice(body);
    v
}

fn reply(sid: &str, body: &[u8], chunked: bool) -> Vec<u8> {
    let mut v = format!("HTTP/1.1 200 OK\r\nX-MSN-Messenger: SessionID={sid}; GW-IP=65.54.239.140\r\nContent-Type: application/x-msn-messenger\r\n").into_bytes();
    if chunked {
        v.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        for part in body.chunks(7) {
            v.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            v.extend_from_slice(part);
            v.extend_from_slice(b"\r\n");
        }
        v.extend_from_slice(b"0\r\n\r\n");
    } else {
        v.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        v.extend_from_slice(body);
    }
    v
}

fn gateway_script() -> Vec<Step> {
    let open = post(
        "http://gateway.messenger.hotmail.com/gateway/gateway.dll?Action=open&Server=SB&IP=207.46.108.37",
        b"USR 1 alice@hotmail.com 1234.5678.9012\r\n",
    );
    let joined = [
        &b"USR 1 OK alice@hotmail.com Alice\r\n"[..],
        b"JOI bob@hotmail.com Bob\r\n",
    ]
    .concat();
    // A MSG split across two HTTP bodies, and two requests pipelined in one segment.
    let out = msg_out(2, &text("through the gateway"));
    let (a, b) = out.as_bytes().split_at(30);
    let mut pipelined = post("/gateway/gateway.dll?SessionID=1234.2", a);
    pipelined.extend_from_slice(&post("/gateway/gateway.dll?SessionID=1234.3", b));
    let incoming = msg_in("bob@hotmail.com", &text("hello over http"));
    // A request for something else on the same connection (a proxy may
    // reuse it): its response must not be paired with a gateway request.
    let mut other = open;
    other.extend_from_slice(b"GET /favicon.ico HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut answers = reply("1234.1", &joined, false);
    answers.extend_from_slice(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno\n");
    vec![
        (true, 1, other),
        (false, 2, answers),
        (true, 3, pipelined),
        (false, 4, reply("1234.4", b"", false)),
        (false, 5, reply("1234.5", b"", false)),
        (
            true,
            6,
            post("/gateway/gateway.dll?Action=poll&SessionID=1234.5", b""),
        ),
        (false, 7, reply("1234.6", incoming.as_bytes(), true)),
    ]
}

#[test]
fn http_gateway_with_keep_alive_pipelining_and_chunked_bodies() {
    for syn in [true, false] {
        let mut f = Flow::new(
            ProtoConfig::default(),
            "10.0.0.5:3000",
            "65.54.239.140:80",
            syn,
        );
        for (c, t, b) in gateway_script() {
            f.at(t).data(c, &b);
        }
        let (ev, _) = f.finish();
        let got: Vec<Seen> = ev.iter().map(Seen::from).collect();
        assert_eq!(
            got,
            [
                s(
                    Kind::Message,
                    true,
                    "bob@hotmail.com",
                    "alice@hotmail.com",
                    Some("through the gateway")
                ),
                s(
                    Kind::Message,
                    false,
                    "bob@hotmail.com",
                    "bob@hotmail.com",
                    Some("hello over http")
                ),
            ],
            "syn seen: {syn}"
        );
        assert_eq!(ev[0].time.secs(), 3);
        assert_eq!(ev[1].time.secs(), 7);
        assert_eq!(ev[0].client.to_string(), "10.0.0.5:3000");
    }
}

#[test]
fn http_gateway_split_invariance() {
    let script = gateway_script();
    let run = |sc: &[Step]| {
        let mut f = Flow::new(
            ProtoConfig::default(),
            "10.0.0.5:3000",
            "65.54.239.140:80",
            true,
        );
        for (c, t, b) in sc {
            f.at(*t).data(*c, b);
        }
        f.finish().0.iter().map(Seen::from).collect::<Vec<_>>()
    };
    let whole = check_every_split(&script, |len| (1..len).step_by(11).collect(), run);
    assert_eq!(whole.len(), 2);
}

#[test]
fn gateway_recovers_after_lost_bytes() {
    let script = gateway_script();
    let mut f = Flow::new(
        ProtoConfig::default(),
        "10.0.0.5:3000",
        "65.54.239.140:80",
        true,
    );
    for (c, t, b) in &script[..2] {
        f.at(*t).data(*c, b);
    }
    // Half of a response and all of the next request's start are lost.
    let lost = reply(
        "1234.2",
        msg_in("bob@hotmail.com", &text("lost")).as_bytes(),
        false,
    );
    f.at(3).data(false, &lost[..40]);
    f.at(3).gap(false, (lost.len() - 40) as u64);
    f.at(3).gap(true, 77);
    f.at(4)
        .data(true, &post("/gateway/gateway.dll?SessionID=1234.3", b""));
    f.at(5).data(
        false,
        &reply(
            "1234.4",
            msg_in("bob@hotmail.com", &text("found")).as_bytes(),
            true,
        ),
    );
    let (ev, _) = f.finish();
    let got: Vec<(Option<String>, bool, &str)> = ev
        .iter()
        .map(|e| (e.text.clone(), e.flags.gap_before, e.remote_id.as_str()))
        .collect();
    assert_eq!(got, [(Some("found".to_string()), true, "bob@hotmail.com")]);
}

#[test]
fn gateway_session_without_its_login_refers_to_a_token() {
    let mut f = Flow::new(
        ProtoConfig::default(),
        "10.0.0.5:3001",
        "65.54.239.140:80",
        true,
    );
    f.at(1).data(
        true,
        &post(
            "/gateway/gateway.dll?SessionID=77.9",
            msg_out(5, &text("later connection")).as_bytes(),
        ),
    );
    let (ev, _) = f.finish();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].local_id, LocalId::Token("msn-gw:77".into()));
}

// ---- the real capture ------------------------------------------------------

#[test]
fn real_capture_msnms_reproduces_its_truth_file() {
    let events = pipeline("fixtures/real/msnms.pcap", ProtoConfig::default()).0;
    let client = "192.168.0.114:3331";
    let truth = std::fs::read_to_string("fixtures/real/msnms.truth.tsv").unwrap();
    let mut rows = 0;
    for line in truth.lines().skip(1) {
        let c: Vec<&str> = line.split('\t').collect();
        let (frame, ts, src, kind, sender, recipient) = (c[0], c[1], c[2], c[4], c[5], c[6]);
        let text = c.get(7).copied().unwrap_or("");
        let frame: u64 = frame.parse().unwrap();
        let e = events
            .iter()
            .find(|e| e.frames.1 == frame)
            .unwrap_or_else(|| panic!("no event at frame {frame}"));
        assert_eq!(e.kind.name(), kind, "frame {frame}");
        assert_eq!(e.time.epoch_micros_string(), ts, "frame {frame}");
        let outgoing = src == client;
        assert_eq!(e.outgoing, outgoing, "frame {frame}");
        let (from, to) = if outgoing {
            (e.local_id_str().unwrap(), e.remote_id.as_str())
        } else {
            (e.remote_id.as_str(), e.local_id_str().unwrap())
        };
        assert_eq!((from, to), (sender, recipient), "frame {frame}");
        assert_eq!(e.sender.as_deref(), Some(sender));
        if kind == "message" {
            assert_eq!(e.text.as_deref(), Some(text), "frame {frame}");
        }
        rows += 1;
    }
    assert_eq!(rows, 20);
    check_sinks("fixtures/real/msnms", &events);
    assert_eq!(events.len(), 20, "no event beyond the truth file");
}

// ---- hostile input ---------------------------------------------------------

mod mutations {
    use super::*;
    use proptest::prelude::*;

    fn stream() -> Vec<(bool, Vec<u8>)> {
        let mut v: Vec<(bool, Vec<u8>)> = switchboard_script()
            .into_iter()
            .map(|(c, _, b)| (c, b))
            .collect();
        v.extend(gateway_script().into_iter().map(|(c, _, b)| (c, b)));
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

        #[test]
        fn mutated_streams_never_panic(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..4), 1..24),
            syn in any::<bool>(),
        ) {
            let mut steps = stream();
            apply_edits(&mut steps, |s| &mut s.1, &edits, b"4294967295");
            let mut f = Flow::new(ProtoConfig::default(), CLIENT, SERVER, syn);
            for (i, (c, b)) in steps.iter().enumerate() {
                f.at(i as i64).data(*c, b);
                if i % 5 == 4 { f.at(i as i64).gap(!*c, 13); }
            }
            let (ev, _) = f.finish();
            for e in ev {
                prop_assert!(e.text.as_ref().map_or(0, String::len) <= 256 * 1024);
                prop_assert!(e.remote_id.len() <= 8 * 1024);
            }
        }
    }
}

// ---- generated captures (fixtures/msn) ----------------------------------------

#[test]
fn generated_switchboard_capture() {
    // Small segments for two steps so units span frames.
    let c = Conversation::acked(CLIENT, SERVER, true, &switchboard_script(), |i| match i {
        3 => 17,
        7 => 300,
        _ => 1460,
    });
    let c = {
        let mut c = c;
        c.close();
        c
    };
    let events = check_decoded("fixtures/msn/switchboard", &pcap_of([&c]));
    let got: Vec<Seen> = events.iter().map(Seen::from).collect();
    let group = events.iter().find(|e| e.group).unwrap().remote_id.clone();
    assert!(group.starts_with("groupchat-1209643200"));
    let want: Vec<Seen> = switchboard_expected()
        .into_iter()
        .map(|mut x| {
            if x.group {
                x.remote = group.to_string();
            }
            x
        })
        .collect();
    assert_eq!(got, want);
}

#[test]
fn generated_gateway_capture() {
    let c = Conversation::acked(
        "10.0.0.5:3000",
        "65.54.239.140:80",
        true,
        &gateway_script(),
        |_| 100,
    );
    let events = check_decoded("fixtures/msn/gateway", &pcap_of([&c]));
    let texts: Vec<_> = events
        .iter()
        .map(|e| (e.outgoing, e.text.clone().unwrap()))
        .collect();
    assert_eq!(
        texts,
        [
            (true, "through the gateway".to_string()),
            (false, "hello over http".to_string())
        ]
    );
}

#[test]
fn generated_midstream_capture_with_a_lost_segment() {
    let mut first = b"ly typed text\r\n".to_vec();
    first.extend_from_slice(msg_in("bob@hotmail.com", &text("picked up")).as_bytes());
    let lost = msg_in("bob@hotmail.com", &text(&"x".repeat(200)));
    let steps = vec![
        (false, 0, first),
        (true, 0, msg_out(20, &text("reply")).into_bytes()),
        (false, 0, lost.into_bytes()),
        (
            false,
            0,
            msg_in("bob@hotmail.com", &text("after the hole")).into_bytes(),
        ),
    ];
    let mut c = Conversation::acked("192.168.1.9:40000", "10.1.1.1:8080", false, &steps, |i| {
        if i == 2 {
            100
        } else {
            1460
        }
    });
    // Lose the middle segment of the long message: a hole inside a payload.
    c.drop_first(|s| s.payload.starts_with(b"xxxxx"));
    let events = check_decoded("fixtures/msn/midstream-gap", &pcap_of([&c]));
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.outgoing, e.text.clone().unwrap(), e.flags.gap_before))
        .collect();
    assert_eq!(
        got,
        [
            (false, "picked up".to_string(), false),
            (true, "reply".to_string(), false),
            (false, "after the hole".to_string(), true),
        ]
    );
    assert!(events
        .iter()
        .all(|e| e.flags.midstream && e.client.to_string() == "192.168.1.9:40000"));
}

// ---- the imscan binary ----------------------------------------------------------

#[test]
fn binary_reproduces_every_msn_fixture_at_any_thread_count() {
    // A lost segment is damage: processed, exit code 1.
    for (stem, code) in [
        ("fixtures/real/msnms", 0),
        ("fixtures/msn/switchboard", 0),
        ("fixtures/msn/gateway", 0),
        ("fixtures/msn/midstream-gap", 1),
    ] {
        assert_eq!(check_binary(stem), code, "{stem}");
    }
}
