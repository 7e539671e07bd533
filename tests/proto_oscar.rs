//! OSCAR (AIM/ICQ) detection and decoding, driven through `FlowDecoder`
//! with chunks: sign-on and cookies (identity facts), ICBM channels 1/2/4 in
//! both directions, charsets, typing, offline messages, mid-stream starts on
//! port 443, gaps, split invariance, OFT2 transfers with carving, hostile
//! input, and the real capture's truth file.

mod support;

use imscan::event::{Event, IdentityFact, Kind, LocalId, Protocol};
use imscan::proto::oscar::parser::html_to_text;
use imscan::proto::ProtoConfig;
use proptest::prelude::*;
use support::decode::{
    as_refs, check_cut_anywhere, detect, essence, run_mutated, run_split, run_with_hole, Flow,
};
use support::golden::{check_capture, check_pcap, imscan};
use support::oscar::{flap, snac, tlv};
use support::packet::{pcap_of, Conversation, Side as Peer};
use support::stages::pipeline;
use support::truth::{truth_of, truth_time, Matching};

use sha2::{Digest, Sha256};

const C: &str = "192.0.2.10:41000";
const S: &str = "198.51.100.1:5190";

fn cfg() -> ProtoConfig {
    ProtoConfig::default()
}

// --- OSCAR byte builders (protocols.md §3) --------------------------------

fn bstr(s: &str) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

/// Channel-1 message data: capabilities fragment + one text fragment.
fn msg_data(charset: u16, text: &[u8]) -> Vec<u8> {
    let mut f = vec![0x05, 0x01, 0x00, 0x01, 0x01];
    f.extend_from_slice(&[0x01, 0x01]);
    f.extend_from_slice(&((text.len() + 4) as u16).to_be_bytes());
    f.extend_from_slice(&charset.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(text);
    tlv(2, &f)
}

fn icbm_send(channel: u16, to: &str, tlvs: &[u8]) -> Vec<u8> {
    let mut d = b"12345678".to_vec();
    d.extend_from_slice(&channel.to_be_bytes());
    d.extend(bstr(to));
    d.extend_from_slice(tlvs);
    snac(4, 6, &d)
}

fn icbm_recv(channel: u16, from: &str, tlvs: &[u8]) -> Vec<u8> {
    let mut d = b"87654321".to_vec();
    d.extend_from_slice(&channel.to_be_bytes());
    d.extend(bstr(from));
    d.extend_from_slice(&[0, 0, 0, 2]);
    // User-info TLVs whose types overlap the message TLVs.
    d.extend(tlv(1, &[0, 0x10]));
    d.extend(tlv(2, b"\x55\x66\x77\x88"));
    d.extend_from_slice(tlvs);
    snac(4, 7, &d)
}

fn typing(peer: &str, event: u16) -> Vec<u8> {
    let mut d = vec![0u8; 8];
    d.extend_from_slice(&[0, 1]);
    d.extend(bstr(peer));
    d.extend_from_slice(&event.to_be_bytes());
    snac(4, 0x14, &d)
}

fn rendezvous(cap: [u8; 4], extra: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0];
    v.extend_from_slice(b"COOKIE!!");
    v.extend_from_slice(&cap);
    v.extend_from_slice(&[
        0x4C, 0x7F, 0x11, 0xD1, 0x82, 0x22, 0x44, 0x45, 0x53, 0x54, 0, 0,
    ]);
    v.extend(tlv(0x0A, &[0, 1]));
    v.extend_from_slice(extra);
    tlv(5, &v)
}

fn file_offer(name: &str, size: u32) -> Vec<u8> {
    let mut svc = vec![0, 1, 0, 1];
    svc.extend_from_slice(&size.to_be_bytes());
    svc.extend_from_slice(name.as_bytes());
    svc.push(0);
    rendezvous([0x09, 0x46, 0x13, 0x43], &tlv(0x2711, &svc))
}

fn icq_ch4(uin: u32, text: &str) -> Vec<u8> {
    let mut v = uin.to_le_bytes().to_vec();
    v.extend_from_slice(&[1, 0]);
    v.extend_from_slice(&((text.len() + 1) as u16).to_le_bytes());
    v.extend_from_slice(text.as_bytes());
    v.push(0);
    tlv(5, &v)
}

fn offline(owner: u32, sender: u32, text: &str) -> Vec<u8> {
    let mut m = Vec::new();
    let body_len = 2 + 4 + 2 + 2 + 4 + 6 + 2 + 2 + text.len() + 1;
    m.extend_from_slice(&(body_len as u16 - 2).to_le_bytes());
    m.extend_from_slice(&owner.to_le_bytes());
    m.extend_from_slice(&0x41u16.to_le_bytes());
    m.extend_from_slice(&2u16.to_le_bytes());
    m.extend_from_slice(&sender.to_le_bytes());
    m.extend_from_slice(&[0xD9, 0x07, 6, 1, 12, 30, 1, 0]);
    m.extend_from_slice(&((text.len() + 1) as u16).to_le_bytes());
    m.extend_from_slice(text.as_bytes());
    m.push(0);
    snac(0x15, 3, &tlv(1, &m))
}

fn utf16be(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_be_bytes()).collect()
}

const COOKIE: &[u8] = b"\x01\x02cookie-bytes-from-the-login-server\xfe\xff";

/// The login connection: the client names its UIN, the server answers with
/// the BOS address and a cookie (legacy ICQ login, channel 4).
fn login_connection() -> Vec<(bool, Vec<u8>)> {
    let mut hello = vec![0, 0, 0, 1];
    hello.extend(tlv(1, b"123456789"));
    hello.extend(tlv(2, b"\x99\x88roasted"));
    hello.extend(tlv(3, b"ICQ Inc. - Product of ICQ (TM)"));
    let mut reply = tlv(1, b"123456789");
    reply.extend(tlv(5, b"205.188.1.1:5190"));
    reply.extend(tlv(6, COOKIE));
    vec![
        (false, flap(1, 100, &[0, 0, 0, 1])),
        (true, flap(1, 500, &hello)),
        (false, flap(4, 101, &reply)),
    ]
}

/// A BOS connection signed on with the cookie only, then every kind of unit.
fn bos_connection() -> Vec<(bool, Vec<u8>)> {
    let mut signon = vec![0, 0, 0, 1];
    signon.extend(tlv(6, COOKIE));
    let mut s2c_seq = 200u16;
    let mut c2s_seq = 700u16;
    let mut s = |d: Vec<u8>| {
        s2c_seq += 1;
        (false, flap(2, s2c_seq, &d))
    };
    let mut c = |d: Vec<u8>| {
        c2s_seq += 1;
        (true, flap(2, c2s_seq, &d))
    };
    let mut html = msg_data(0, b"<HTML><BODY><FONT>Hi &amp; bye</FONT></BODY></HTML>");
    html.extend(tlv(3, &[]));
    vec![
        (false, flap(1, 200, &[0, 0, 0, 1])),
        (true, flap(1, 700, &signon)),
        c(typing("461758769", 2)),
        c(icbm_send(1, "461758769", &html)),
        c(typing("461758769", 0)),
        s(typing("461758769", 2)),
        s(icbm_recv(
            1,
            "461758769",
            &msg_data(2, &utf16be("zażółć ✓")),
        )),
        s(icbm_recv(1, "461758769", &msg_data(3, b"caf\xe9"))),
        c(icbm_send(2, "BuddyName", &file_offer("report.pdf", 48213))),
        s(icbm_recv(
            2,
            "BuddyName",
            &rendezvous([0x09, 0x46, 0x01, 0x02], &[]),
        )),
        c(icbm_send(4, "461758769", &icq_ch4(123456789, "old style"))),
        s(offline(123456789, 7777, "while you were away")),
    ]
}

/// Run a script, returning events and identity facts.
fn run(script: &[(bool, Vec<u8>)], server: &str, syn: bool) -> (Vec<Event>, Vec<IdentityFact>) {
    let mut f = Flow::new(cfg(), C, server, syn);
    for (c, b) in script {
        f.data(*c, b);
    }
    f.finish()
}

#[test]
fn login_connection_yields_cookie_fact_and_local_id() {
    let (ev, facts) = run(&login_connection(), S, true);
    assert!(ev.is_empty());
    assert_eq!(facts.len(), 1);
    assert_eq!(facts[0].protocol, Protocol::Oscar);
    assert_eq!(facts[0].user, "123456789");
    assert!(facts[0].token.starts_with("oscar-cookie:0102"));
}

#[test]
fn bos_connection_decodes_every_unit_kind() {
    let (ev, facts) = run(&bos_connection(), S, true);
    let token = LocalId::Token(run(&login_connection(), S, true).1[0].token.as_str().into());
    // The outgoing channel-4 block names the user behind the cookie.
    assert_eq!(facts.len(), 1);
    assert_eq!(LocalId::Token(facts[0].token.as_str().into()), token);
    assert_eq!(facts[0].user, "123456789");
    let got: Vec<_> = ev
        .iter()
        .map(|e| {
            (
                e.kind,
                e.outgoing,
                e.local_id.clone(),
                e.remote_id.as_str(),
                e.sender.as_deref(),
                e.text.as_deref(),
                e.file_name.as_deref(),
                e.file_size,
            )
        })
        .collect();
    let known = LocalId::Known("123456789".into());
    use Kind::*;
    assert_eq!(
        got,
        vec![
            (
                Typing,
                true,
                token.clone(),
                "461758769",
                None,
                None,
                None,
                None
            ),
            (
                Message,
                true,
                token.clone(),
                "461758769",
                None,
                Some("Hi & bye"),
                None,
                None
            ),
            (
                Typing,
                false,
                token.clone(),
                "461758769",
                Some("461758769"),
                None,
                None,
                None
            ),
            (
                Message,
                false,
                token.clone(),
                "461758769",
                Some("461758769"),
                Some("zażółć ✓"),
                None,
                None
            ),
            (
                Message,
                false,
                token.clone(),
                "461758769",
                Some("461758769"),
                Some("café"),
                None,
                None
            ),
            (
                File,
                true,
                token.clone(),
                "BuddyName",
                None,
                None,
                Some("report.pdf"),
                Some(48213)
            ),
            (
                Webcam,
                false,
                token.clone(),
                "BuddyName",
                Some("BuddyName"),
                None,
                None,
                None
            ),
            // The channel-4 block names its sender: the local user.
            (
                Message,
                true,
                known.clone(),
                "461758769",
                Some("123456789"),
                Some("old style"),
                None,
                None
            ),
            (
                Message,
                false,
                known.clone(),
                "7777",
                Some("7777"),
                Some("while you were away"),
                None,
                None
            ),
        ]
    );
    assert_eq!(ev[3].text_encoding, Some("utf-16be"));
    assert_eq!(ev[4].text_encoding, Some("windows-1252"));
    assert!(ev
        .iter()
        .all(|e| e.protocol == Protocol::Oscar && !e.flags.midstream));
    // Wire bytes kept only where decoding was not exact (a guessed 8-bit
    // charset), or when asked for.
    let raws: Vec<Option<&[u8]>> = ev.iter().map(|e| e.raw.as_deref()).collect();
    assert_eq!(raws[4], Some(&b"caf\xe9"[..]));
    assert_eq!(raws.iter().filter(|r| r.is_some()).count(), 1);
    let mut raw_cfg = cfg();
    raw_cfg.raw = true;
    let ev = run_split(
        &raw_cfg,
        C,
        S,
        true,
        &as_refs(&bos_connection()),
        |_, _| vec![],
    );
    assert_eq!(
        ev[1].raw.as_deref(),
        Some(&b"<HTML><BODY><FONT>Hi &amp; bye</FONT></BODY></HTML>"[..])
    );
}

#[test]
fn self_info_names_the_user_and_resolves_the_token() {
    let mut script = bos_connection();
    script.truncate(4);
    let mut info = bstr("123456789");
    info.extend_from_slice(&[0, 0, 0, 0]);
    script.push((false, flap(2, 300, &snac(1, 0x0F, &info))));
    script.push((true, flap(2, 800, &icbm_send(1, "bob", &msg_data(0, b"x")))));
    let (ev, facts) = run(&script, S, true);
    assert_eq!(facts.len(), 1, "the cookie token now names a user");
    assert_eq!(facts[0].user, "123456789");
    assert!(matches!(ev[0].local_id, LocalId::Token(_)));
    assert_eq!(
        ev.last().unwrap().local_id,
        LocalId::Known("123456789".into())
    );
    assert_eq!(ev.last().unwrap().sender.as_deref(), Some("123456789"));
}

#[test]
fn split_invariance_at_every_cut() {
    let script = bos_connection();
    let refs = as_refs(&script);
    let whole = check_cut_anywhere(&cfg(), C, S, &refs);
    assert_eq!(whole.len(), 9);
    // Consecutive units of one direction in one chunk.
    let mut merged: Vec<(bool, Vec<u8>)> = Vec::new();
    for (c, b) in &script {
        match merged.last_mut() {
            Some((lc, lb)) if lc == c => lb.extend_from_slice(b),
            _ => merged.push((*c, b.clone())),
        }
    }
    let ev = run_split(&cfg(), C, S, true, &as_refs(&merged), |_, _| vec![]);
    assert_eq!(essence(&ev), whole);
}

#[test]
fn midstream_on_port_443_decides_roles_from_icbms() {
    // No SYN, no sign-on: the capture starts inside a BOS session.
    let script: Vec<(bool, Vec<u8>)> = bos_connection().into_iter().skip(2).collect();
    for server in ["198.51.100.1:443", "198.51.100.1:80", "198.51.100.1:31337"] {
        let (ev, _) = run(&script, server, false);
        assert_eq!(ev.len(), 9, "{server}");
        assert!(ev.iter().all(|e| e.flags.midstream));
        assert!(ev[1].outgoing && ev[1].text.as_deref() == Some("Hi & bye"));
        assert!(!ev[3].outgoing);
        assert_eq!(ev[0].client.to_string(), C);
        assert_eq!(ev[0].local_id, LocalId::Unknown);
    }
}

#[test]
fn gap_inside_a_flap_resyncs_on_the_next_units() {
    let script = bos_connection();
    for dir_client in [true, false] {
        // Lose the middle of the first ICBM of this direction.
        let victim = script
            .iter()
            .position(|(c, b)| *c == dir_client && b.len() > 40 && b[7] == 4)
            .unwrap();
        let ev = run_with_hole(cfg(), C, S, &script, victim, 10..30);
        // One message lost; everything after it decoded, the first one after
        // the gap flagged.
        assert_eq!(ev.len(), 8, "client side {dir_client}: {:#?}", essence(&ev));
        let flagged: Vec<_> = ev.iter().filter(|e| e.flags.gap_before).collect();
        assert_eq!(flagged.len(), 1);
        assert!(flagged[0].lost_bytes >= 20);
        assert_eq!(flagged[0].outgoing, dir_client);
    }
}

#[test]
fn typing_stop_and_pause_are_not_events_and_acks_are_ignored() {
    let script = vec![
        (true, flap(1, 1, &[0, 0, 0, 1, 0, 6, 0, 2, 0xAA, 0xBB])),
        (true, flap(2, 2, &typing("bob", 1))),
        (true, flap(2, 3, &typing("bob", 0))),
        (false, flap(2, 9, &snac(4, 0x0C, &[0; 20]))),
        (true, flap(5, 4, &[])),
    ];
    let (ev, _) = run(&script, S, true);
    assert!(ev.is_empty(), "{ev:?}");
}

#[test]
fn not_oscar_is_not_detected() {
    for first in [
        &b"* OK IMAP4rev1 ready\r\n"[..],
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ] {
        let (ev, found) = detect(
            cfg(),
            C,
            "198.51.100.1:443",
            &[(false, first), (true, first)],
        );
        assert!(ev.is_empty());
        assert_ne!(found, Some(Protocol::Oscar));
    }
}

// --- OFT2 file transfer -----------------------------------------------------

fn oft_header(kind: u16, size: u32, name: &str) -> Vec<u8> {
    let mut h = vec![0u8; 256];
    h[..4].copy_from_slice(b"OFT2");
    h[4..6].copy_from_slice(&256u16.to_be_bytes());
    h[6..8].copy_from_slice(&kind.to_be_bytes());
    h[8..16].copy_from_slice(b"COOKIE!!");
    h[20..22].copy_from_slice(&1u16.to_be_bytes());
    h[22..24].copy_from_slice(&1u16.to_be_bytes());
    h[24..26].copy_from_slice(&1u16.to_be_bytes());
    h[26..28].copy_from_slice(&1u16.to_be_bytes());
    h[28..32].copy_from_slice(&size.to_be_bytes());
    h[32..36].copy_from_slice(&size.to_be_bytes());
    h[68..81].copy_from_slice(b"Cool FileXfer");
    h[192..192 + name.len()].copy_from_slice(name.as_bytes());
    h
}

fn file_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

/// Receiver connects (client), sender prompts from the server side.
fn oft_script(data: &[u8], name: &str) -> Vec<(bool, Vec<u8>)> {
    let mut v = vec![
        (false, oft_header(0x0101, data.len() as u32, name)),
        (true, oft_header(0x0202, data.len() as u32, name)),
    ];
    for piece in data.chunks(1448) {
        v.push((false, piece.to_vec()));
    }
    v.push((true, oft_header(0x0204, data.len() as u32, name)));
    v
}

fn carve_run(
    script: &[(bool, Vec<u8>)],
    server: &str,
    syn: bool,
) -> (Vec<Event>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = cfg();
    config.carve_dir = Some(dir.path().to_owned());
    let mut f = Flow::new(config, C, server, syn);
    for (c, b) in script {
        f.data(*c, b);
    }
    f.close();
    (f.events(), dir)
}

fn carved(dir: &tempfile::TempDir) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn oft_transfer_is_carved_and_hashed_also_midstream_and_on_443() {
    let data = file_bytes(10_000);
    let sha = hex::encode(Sha256::digest(&data));
    for (server, syn) in [
        ("198.51.100.7:5190", true),
        ("198.51.100.7:443", true),
        ("198.51.100.7:443", false),
        ("198.51.100.7:40123", false),
    ] {
        let (ev, dir) = carve_run(&oft_script(&data, "../secret plans.txt"), server, syn);
        assert_eq!(ev.len(), 1, "{server} {syn}");
        let e = &ev[0];
        assert_eq!((e.kind, e.protocol), (Kind::File, Protocol::Oscar));
        assert_eq!(e.file_name.as_deref(), Some("../secret plans.txt"));
        assert_eq!(e.file_size, Some(10_000));
        assert!(!e.outgoing, "the server side sent the file");
        assert_eq!(
            e.remote_id,
            format!("oft-cookie:{}", hex::encode(b"COOKIE!!"))
        );
        let text = e.text.as_deref().unwrap();
        assert!(
            text.starts_with(&format!("10000 of 10000 bytes seen, sha256 {sha}")),
            "{text}"
        );
        assert!(!e.flags.decode_error);
        let files = carved(&dir);
        assert_eq!(files.len(), 1);
        assert!(
            files[0].0.ends_with("-1-_._secret_plans.txt"),
            "{}",
            files[0].0
        );
        assert!(!files[0].0.contains('/'));
        assert_eq!(hex::encode(Sha256::digest(&files[0].1)), sha);
    }
}

#[test]
fn oft_transfer_split_anywhere_hashes_the_same() {
    let data = file_bytes(3000);
    let script = oft_script(&data, "a.bin");
    let refs = as_refs(&script);
    for at in [1, 5, 100, 255, 256, 257, 1000, 1447] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = cfg();
        config.carve_dir = Some(dir.path().to_owned());
        let ev = run_split(&config, C, S, true, &refs, |_, n| {
            (at..n).step_by(at).collect()
        });
        assert_eq!(ev.len(), 1);
        assert_eq!(carved(&dir)[0].1, data, "cut every {at}");
    }
}

#[test]
fn oft_gap_in_data_marks_the_transfer_incomplete() {
    let data = file_bytes(5000);
    let mut f = Flow::new(cfg(), C, S, true);
    f.data(false, &oft_header(0x0101, 5000, "x.bin"));
    f.data(true, &oft_header(0x0202, 5000, "x.bin"));
    f.data(false, &data[..1000]);
    f.gap(false, 1000);
    f.data(false, &data[2000..]);
    f.close();
    let ev = f.events();
    assert_eq!(ev.len(), 1);
    assert!(ev[0].flags.decode_error);
    let text = ev[0].text.as_deref().unwrap();
    assert!(
        text.starts_with("1000 of 5000 bytes seen") && text.contains("incomplete"),
        "{text}"
    );
}

/// Through the AIM rendezvous proxy (5190): proxy frames first, then OFT2.
#[test]
fn oft_through_the_proxy_is_carved() {
    let data = file_bytes(4000);
    let proxy = |cmd: u8, extra: &[u8]| {
        let mut f = vec![0x04, 0x4A, 0x00, cmd, 0, 0, 0, 0, 0, 0];
        f.extend_from_slice(extra);
        let mut v = (f.len() as u16).to_be_bytes().to_vec();
        v.extend(f);
        v
    };
    let mut script = vec![
        (true, proxy(4, b"\x05alice\x00\x05COOKIE!!")),
        (false, proxy(3, &[0, 0x16, 0x1C, 0x09, 0x46])),
        (false, proxy(5, &[])),
    ];
    script.extend(oft_script(&data, "via proxy.txt"));
    let (ev, dir) = carve_run(&script, "198.51.100.9:5190", true);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].file_name.as_deref(), Some("via proxy.txt"));
    assert_eq!(carved(&dir)[0].1, data);
}

#[test]
fn oft_without_carve_dir_still_reports() {
    let data = file_bytes(100);
    let (ev, _) = run(&oft_script(&data, "n.txt"), S, true);
    assert_eq!(ev.len(), 1);
    assert!(!ev[0].text.as_deref().unwrap().contains("carved"));
}

// --- the real capture ---------------------------------------------------------

/// Truth rows keep AIM HTML as sent; `text` is tag-stripped (the raw form is
/// in `raw` with `--raw`). `typing-finished` is not an event (event.rs: only
/// starts are). `?` ids are ones the truth could not name.
#[test]
fn real_icq_on_443_with_gaps_matches_truth() {
    let rows = truth_of("fixtures/real/ndpi-oscar-icq-port443");
    let (events, stats) = pipeline(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/real/ndpi-oscar-icq-port443.pcap"
        ),
        cfg(),
    );
    assert_eq!(stats.gaps, 2);
    let mut free = Matching::new(&events);
    for row in &rows {
        let want_event = !(row.event == "typing" && row.text == b"typing-finished");
        let kind = match row.event.as_str() {
            "message" => Kind::Message,
            _ => Kind::Typing,
        };
        let found = free.take(|e| {
            let outgoing = e.client == row.src;
            let peer = if outgoing {
                &row.recipient
            } else {
                &row.sender
            };
            e.frames.1 == row.frame
                && e.time.epoch_micros_string() == row.timestamp
                && e.kind == kind
                && (e.client == row.src || e.client == row.dst)
                && e.remote_id == *peer
                && (kind == Kind::Typing
                    || e.text.as_deref()
                        == Some(&*html_to_text(&String::from_utf8_lossy(&row.text))))
        });
        match (found, want_event) {
            (Some(_), true) | (None, false) => {}
            (f, _) => panic!("row {row:?}: found {f:?}\n{:#?}", essence(&events)),
        }
    }
    assert!(free.all_taken(), "extra events: {:#?}", essence(&events));
    // The local UIN is in the capture after all: own user info (0001/000F,
    // frame 19, tshark shows it as the buddy name 157901844).
    assert!(events
        .iter()
        .all(|e| e.local_id == LocalId::Known("157901844".into())));
    // Both directions resumed after their gap; the first event after each is flagged.
    let flagged: Vec<u64> = events
        .iter()
        .filter(|e| e.flags.gap_before)
        .map(|e| e.lost_bytes)
        .collect();
    assert_eq!(flagged, vec![9751, 61340]);
}

// --- hostile input ------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_mutations_never_panic(
        flips in proptest::collection::vec((0usize..2000, any::<u8>()), 0..40),
        cuts in proptest::collection::vec(1usize..300, 0..8),
        gap_at in proptest::option::of(0usize..12),
    ) {
        let mut script = bos_connection();
        script.extend(oft_script(&file_bytes(700), "m.bin").into_iter().skip(2));
        let ev = run_mutated(cfg(), C, S, script, &flips, &cuts, gap_at.map(|i| (i, 17)));
        prop_assert!(ev.len() <= 40);
        for e in &ev {
            prop_assert!(e.text.as_ref().map_or(0, |t| t.len()) <= 3 * 0x10000);
        }
    }
}

// --- generated capture fixtures -------------------------------------------------
//
// The pcaps in fixtures/oscar/ are made here from the builders above with the
// fixture generator (tests/support): this test regenerates them in memory and
// checks the checked-in files are current (`IMSCAN_BLESS=1` rewrites
// them). tshark reads them without warnings (`-d tcp.port==443,aim` for 443).

use imscan::time::Timestamp;

const FIXTURE_START: i64 = 1_700_000_000;

fn conversation(client: &str, server: &str, start_s: i64) -> Conversation {
    Conversation::between(client, server).start_at(
        Timestamp::from_secs_nanos(FIXTURE_START + start_s, 0),
        10_000_000,
    )
}

/// Login connection then BOS connection (cookie sign-on), both from SYN to
/// FIN, on 5190: every unit kind both ways; the long UTF-16 message spans
/// three segments.
fn fixture_login_bos() -> Vec<u8> {
    let mut login = conversation("10.1.0.5:40001", "10.1.0.1:5190", 0);
    login.handshake();
    login.play(&login_connection(), 1460);
    login.close();
    let mut bos = conversation("10.1.0.5:40002", "10.1.0.2:5190", 2);
    bos.handshake();
    let mut script = bos_connection();
    let long: String = "Długa wiadomość — ".repeat(40);
    let mut s2c_seq = 400u16;
    script.push((
        false,
        flap(
            2,
            s2c_seq,
            &icbm_recv(1, "461758769", &msg_data(2, &utf16be(&long))),
        ),
    ));
    s2c_seq += 1;
    script.push((false, flap(2, s2c_seq, &typing("461758769", 0))));
    bos.play(&script, 500);
    bos.close();
    pcap_of(&[login, bos])
}

/// A BOS session picked up mid-stream on 443 (no handshake), with one
/// segment lost in each direction, each inside a message.
fn fixture_midstream_443_gaps() -> Vec<u8> {
    let mut c = conversation("10.1.0.6:51000", "10.1.0.3:443", 0);
    let script: Vec<_> = bos_connection().into_iter().skip(2).collect();
    c.play(&script, 24);
    // Segment indices: find the second segment of the first outgoing ICBM
    // and of the first incoming ICBM, and lose them.
    let segs = c.segments().to_vec();
    let lost: Vec<usize> = [Peer::Client, Peer::Server]
        .iter()
        .filter_map(|side| {
            segs.iter()
                .position(|s| {
                    s.from == *side
                        && s.payload.len() >= 10
                        && s.payload[0] == 0x2A
                        && s.payload[7] == 4
                        && (s.payload[9] == 6 || s.payload[9] == 7)
                })
                .map(|i| i + 1)
        })
        .collect();
    for i in lost.into_iter().rev() {
        c.drop_segment(i);
    }
    c.close();
    pcap_of(&[c])
}

const OFT_FILE_LEN: usize = 20_000;

fn oft_fixture(server: &str, handshake: bool) -> Vec<u8> {
    let mut c = conversation("10.1.0.7:52000", server, 0);
    if handshake {
        c.handshake();
    }
    c.play(
        &oft_script(&file_bytes(OFT_FILE_LEN), "Quarterly report.pdf"),
        1448,
    );
    c.close();
    pcap_of(&[c])
}

#[test]
fn generated_fixtures_are_current() {
    // Login + BOS: every unit kind; the long UTF-16 message spans segments.
    let ev = pipeline(
        &check_pcap(
            "fixtures/oscar/icq-login-bos-5190.pcap",
            &fixture_login_bos(),
        ),
        cfg(),
    )
    .0;
    assert_eq!(ev.len(), 10);
    let long = ev
        .iter()
        .find(|e| e.text.as_deref().is_some_and(|t| t.len() > 500));
    assert_eq!(
        long.unwrap().text.as_deref(),
        Some(&*"Długa wiadomość — ".repeat(40))
    );
    assert!(long.unwrap().frames.0 < long.unwrap().frames.1);
    // Mid-stream on 443, one segment lost each way: the rest decodes, roles
    // from the ICBMs, the first event after each hole flagged.
    let ev = pipeline(
        &check_pcap(
            "fixtures/oscar/bos-midstream-443-gaps.pcap",
            &fixture_midstream_443_gaps(),
        ),
        cfg(),
    )
    .0;
    assert_eq!(ev.len(), 7);
    assert_eq!(ev.iter().filter(|e| e.flags.gap_before).count(), 2);
    assert!(ev
        .iter()
        .all(|e| e.flags.midstream && e.client.port() == 51000));
    // The OFT transfers: decoded through the stages by the next test.
    check_pcap(
        "fixtures/oscar/oft-transfer-5190.pcap",
        &oft_fixture("10.1.0.8:5190", true),
    );
    check_pcap(
        "fixtures/oscar/oft-transfer-midstream-443.pcap",
        &oft_fixture("10.1.0.8:443", false),
    );
}

/// The generated OFT captures through the real stages with `--carve`: the
/// carved file hashes like the sent one, also mid-stream on 443.
#[test]
fn generated_oft_captures_carve_the_sent_file() {
    let sent = hex::encode(Sha256::digest(file_bytes(OFT_FILE_LEN)));
    for name in ["oft-transfer-5190", "oft-transfer-midstream-443"] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = cfg();
        config.carve_dir = Some(dir.path().to_owned());
        let path = format!("{}/fixtures/oscar/{name}.pcap", env!("CARGO_MANIFEST_DIR"));
        let (ev, _) = pipeline(&path, config);
        assert_eq!(ev.len(), 1, "{name}");
        assert_eq!(ev[0].file_name.as_deref(), Some("Quarterly report.pdf"));
        assert!(ev[0].text.as_deref().unwrap().contains(&sent), "{name}");
        let files = carved(&dir);
        assert_eq!(files.len(), 1);
        assert!(files[0].0.ends_with("Quarterly_report.pdf"));
        assert_eq!(hex::encode(Sha256::digest(&files[0].1)), sent, "{name}");
    }
}

// --- chat rooms -------------------------------------------------------------------

fn chat_block(text: &[u8], charset: &str) -> Vec<u8> {
    let mut b = tlv(1, text);
    b.extend(tlv(2, charset.as_bytes()));
    b.extend(tlv(3, b"en"));
    tlv(5, &b)
}

fn chat_send(text: &[u8], charset: &str) -> Vec<u8> {
    let mut d = b"chatcook".to_vec();
    d.extend_from_slice(&[0, 3]);
    d.extend(tlv(1, &[]));
    d.extend(tlv(6, &[]));
    d.extend(chat_block(text, charset));
    snac(0x0E, 5, &d)
}

fn chat_recv(sender: &str, text: &[u8], charset: &str) -> Vec<u8> {
    let mut d = b"chatcook".to_vec();
    d.extend_from_slice(&[0, 3]);
    let mut info = bstr(sender);
    info.extend_from_slice(&[0, 0, 0, 0]);
    d.extend(tlv(3, &info));
    d.extend(chat_block(text, charset));
    snac(0x0E, 6, &d)
}

fn room_info(cookie: &str, name: Option<&str>) -> Vec<u8> {
    let mut d = vec![0, 4];
    d.extend(bstr(cookie));
    d.extend_from_slice(&[0, 0, 2]);
    match name {
        Some(n) => {
            d.extend_from_slice(&[0, 1]);
            d.extend(tlv(0x6A, n.as_bytes()));
        }
        None => d.extend_from_slice(&[0, 0]),
    }
    snac(0x0E, 2, &d)
}

#[test]
fn chat_room_lines_are_group_events_and_reflections_name_the_user() {
    let mut signon = vec![0, 0, 0, 1];
    signon.extend(tlv(6, b"chat-cookie"));
    let script = vec![
        (false, flap(1, 1, &[0, 0, 0, 1])),
        (true, flap(1, 1, &signon)),
        (
            false,
            flap(
                2,
                2,
                &room_info("!aol://2719:10-4-harbour", Some("Harbour")),
            ),
        ),
        (
            true,
            flap(2, 2, &chat_send(b"<b>hello</b> room", "us-ascii")),
        ),
        // The server reflects our line: it names us ("Zosia Kowalska").
        (
            false,
            flap(
                2,
                3,
                &chat_recv("Zosia Kowalska", b"<b>hello</b> room", "us-ascii"),
            ),
        ),
        (
            false,
            flap(
                2,
                4,
                &chat_recv("jurek", &utf16be("cześć wszystkim"), "unicode-2-0"),
            ),
        ),
        (true, flap(2, 3, &chat_send(b"second", "us-ascii"))),
        (
            false,
            flap(2, 5, &chat_recv("zosiakowalska", b"second", "us-ascii")),
        ),
    ];
    let (ev, facts) = run(&script, S, true);
    let got: Vec<_> = ev
        .iter()
        .map(|e| {
            (
                e.outgoing,
                e.remote_id.as_str(),
                e.group,
                e.sender.as_deref(),
                e.text.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (true, "Harbour", true, None, Some("hello room")),
            (
                false,
                "Harbour",
                true,
                Some("jurek"),
                Some("cześć wszystkim")
            ),
            (
                true,
                "Harbour",
                true,
                Some("Zosia Kowalska"),
                Some("second")
            ),
        ]
    );
    assert_eq!(facts.len(), 1);
    assert_eq!(facts[0].user, "Zosia Kowalska");
    // Without a name TLV, the room is its cookie string.
    let script = vec![
        (false, flap(1, 1, &[0, 0, 0, 1])),
        (
            false,
            flap(2, 2, &room_info("!aol://2719:10-4-harbour", None)),
        ),
        (false, flap(2, 3, &chat_recv("jurek", b"x", "us-ascii"))),
    ];
    let (ev, _) = run(&script, S, true);
    assert_eq!(ev[0].remote_id, "!aol://2719:10-4-harbour");
}

proptest! {
    /// The pure parsers on arbitrary bytes: no panic, results within the input.
    #[test]
    fn parsers_accept_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        use imscan::proto::oscar::{oft, parser};
        if let Some(f) = parser::Flap::parse(&bytes) {
            prop_assert!(f.data.len() <= bytes.len());
            let _ = parser::parse_unit(&f);
        }
        let mut framed = vec![0x2A, 2, 0, 1];
        framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        framed.extend_from_slice(&bytes);
        let _ = parser::parse_unit(&parser::Flap::parse(&framed).unwrap());
        match parser::hunt(&parser::FlapFraming::ANY, &bytes) {
            parser::Hunt::Found(n) | parser::Hunt::Wait(n) => prop_assert!(n <= bytes.len()),
        }
        let _ = oft::parse_header(&bytes);
        let mut h = oft_header(0x0101, 1, "x");
        h[192..].copy_from_slice(&[0xFF; 64]);
        h[188] = bytes.first().copied().unwrap_or(0) & 3;
        let _ = oft::parse_header(&h);
        let _ = parser::html_to_text(&String::from_utf8_lossy(&bytes));
    }
}

// --- end to end: the imscan binary ----------------------------------------------

#[test]
fn binary_real_icq_capture_finds_every_truth_event() {
    let lines = check_capture("fixtures/real/ndpi-oscar-icq-port443").lines();
    let rows = truth_of("fixtures/real/ndpi-oscar-icq-port443");
    let mut free = Matching::new(&lines);
    for row in rows.iter().filter(|r| r.text != b"typing-finished") {
        let outgoing = row.src.port() == 63357;
        let peer = if outgoing {
            &row.recipient
        } else {
            &row.sender
        };
        let text = html_to_text(&String::from_utf8_lossy(&row.text)).into_owned();
        free.take(|l| {
            l["frames"][1] == row.frame
                && l["time"] == truth_time(&row.timestamp).as_str()
                && l["kind"] == row.event.as_str()
                && l["outgoing"] == outgoing
                && l["remote_id"] == peer.as_str()
                && (row.event == "typing" || l["text"] == text.as_str())
        })
        .unwrap_or_else(|| panic!("row {row:?} not in the JSONL"));
    }
    assert!(free.all_taken(), "events beyond the truth file");
}

#[test]
fn binary_generated_oscar_captures() {
    for case in [
        "icq-login-bos-5190",
        "bos-midstream-443-gaps",
        "oft-transfer-5190",
        "oft-transfer-midstream-443",
    ] {
        let lines = check_capture(&format!("fixtures/oscar/{case}")).lines();
        assert!(!lines.is_empty(), "{case}");
        assert!(lines.iter().all(|l| l["protocol"] == "oscar"));
    }
    // The merge stage resolves the BOS connection's cookie with the login
    // connection's identity fact: every BOS event names the UIN.
    let lines = check_capture("fixtures/oscar/icq-login-bos-5190").lines();
    assert_eq!(lines.len(), 10);
    assert!(
        lines.iter().all(|l| l["local_id"] == "123456789"),
        "{lines:#?}"
    );
}

/// `--carve DIR` through the binary: the carved file hashes like the sent
/// one, from SYN on 5190 and mid-stream on 443.
#[test]
fn binary_carves_oft_transfers() {
    let sent = hex::encode(Sha256::digest(file_bytes(OFT_FILE_LEN)));
    for case in ["oft-transfer-5190", "oft-transfer-midstream-443"] {
        let dir = tempfile::tempdir().unwrap();
        let out = imscan()
            .args(["-F", "jsonl", "--carve"])
            .arg(dir.path())
            .arg(format!("fixtures/oscar/{case}.pcap"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(line["text"].as_str().unwrap().contains(&sent));
        let files = carved(&dir);
        assert_eq!(files.len(), 1);
        assert_eq!(hex::encode(Sha256::digest(&files[0].1)), sent, "{case}");
    }
    // A carve directory that does not exist is a usage error.
    let out = imscan()
        .args([
            "--carve",
            "/nonexistent/imscan-carve",
            "fixtures/oscar/oft-transfer-5190.pcap",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
