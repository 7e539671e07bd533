//! The all-chat conversations the decoder benches measure, as (client →
//! server, server → client) byte streams of about a given size: IRC, XMPP,
//! MSN switchboard, MSN HTTP gateway, YMSG, OSCAR and Gadu-Gadu. Shared by
//! the per-decoder benches (`proto`, `proto_msn_yahoo`, `proto_oscar_gg`),
//! which feed one stream pair to one `FlowDecoder`, and by the `chat`
//! captures of `pipeline`, which cut many copies into TCP segments. The
//! bytes are the measure: a change here changes every figure taken with
//! them. Included by each bench with `#[path]`; not part of the library.
// Each bench uses only its own protocols' generators.
#![allow(dead_code)]

#[path = "../../tests/support/oscar.rs"]
mod oscar;
#[path = "../../tests/support/ymsg.rs"]
mod ymsg;
use oscar::{flap, snac, tlv};

/// The chat lines of the IRC and XMPP conversations.
pub const TEXTS: [&str; 4] = [
    "are we still on for Thursday? bring the blue folder, please",
    "Καλημέρα σε όλους! Ο καιρός είναι καλός, ξεκινάμε στις δέκα.",
    "ok",
    "the build is green again, I'll merge the reassembly branch after lunch if nobody objects",
];

/// (client → server, server → client) bytes of an IRC session: channel and
/// private PRIVMSGs both ways until each direction holds `per_direction`
/// bytes.
pub fn irc_streams(per_direction: usize) -> (Vec<u8>, Vec<u8>) {
    let mut c = b"NICK dave\r\nUSER dave 0 * :Dave\r\n".to_vec();
    let mut s = b":irc.example 001 dave :Welcome\r\n".to_vec();
    let mut i = 0;
    while c.len() < per_direction || s.len() < per_direction {
        let t = TEXTS[i % TEXTS.len()];
        if i % 3 == 0 {
            c.extend_from_slice(format!("PRIVMSG #harbor :{t}\r\n").as_bytes());
        } else {
            s.extend_from_slice(
                format!(
                    ":erin{}!~erin@10.88.0.22 PRIVMSG {} :{t}\r\n",
                    i % 7,
                    if i % 2 == 0 { "#harbor" } else { "dave" }
                )
                .as_bytes(),
            );
        }
        i += 1;
    }
    (c, s)
}

/// (client → server, server → client) bytes of an XMPP c2s stream after
/// resource binding: chat messages both ways (with chat states and an
/// entity) until each direction holds `per_direction` bytes.
pub fn xmpp_streams(per_direction: usize) -> (Vec<u8>, Vec<u8>) {
    let mut c = b"<?xml version='1.0'?><stream:stream to='imscan.test' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>".to_vec();
    let mut s = b"<?xml version='1.0'?><stream:stream from='imscan.test' id='x1' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><iq type='result' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>dave@imscan.test/laptop</jid></bind></iq>".to_vec();
    let mut i = 0;
    while c.len() < per_direction || s.len() < per_direction {
        let t = TEXTS[i % TEXTS.len()];
        if i % 3 == 0 {
            c.extend_from_slice(
                format!("<message to=\"erin@imscan.test\" type=\"chat\" id=\"m{i}\"><body>{t} &amp; more</body><active xmlns=\"http://jabber.org/protocol/chatstates\"/></message>").as_bytes(),
            );
        } else {
            s.extend_from_slice(
                format!("<message from='erin@imscan.test/mcabber' to='dave@imscan.test/laptop' type='chat' id='r{i}'><body>{t}</body></message>").as_bytes(),
            );
        }
        i += 1;
    }
    (c, s)
}

/// An MSNP text/plain MIME message body.
pub fn mime_text(t: &str) -> String {
    format!("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nX-MMS-IM-Format: FN=Segoe%20UI; EF=; CO=0; CS=0; PF=0\r\n\r\n{t}")
}

/// (client → server, server → client) bytes of an MSNP switchboard chat
/// (typing notices and text messages) of about `total` bytes in all.
pub fn msn_stream(total: usize) -> (Vec<u8>, Vec<u8>) {
    let mut c = b"USR 1 alice@hotmail.com 1234.5678.9012\r\n".to_vec();
    let mut s = b"USR 1 OK alice@hotmail.com Alice\r\nJOI bob@hotmail.com Bob 0\r\n".to_vec();
    let typing = "MIME-Version: 1.0\r\nContent-Type: text/x-msmsgscontrol\r\nTypingUser: alice@hotmail.com\r\n\r\n\r\n";
    let mut i = 2u64;
    while c.len() + s.len() < total {
        let out = mime_text(&format!(
            "message number {i}, which says something of ordinary length"
        ));
        c.extend_from_slice(format!("MSG {i} U {}\r\n{typing}", typing.len()).as_bytes());
        c.extend_from_slice(format!("MSG {i} N {}\r\n{out}", out.len()).as_bytes());
        let inc = mime_text(&format!("reply {i}: sure, sounds good to me"));
        s.extend_from_slice(format!("MSG bob@hotmail.com Bob {}\r\n{inc}", inc.len()).as_bytes());
        i += 1;
    }
    (c, s)
}

/// A YMSG packet (version 16) of `service` with the key/value `pairs`.
pub fn ymsg(service: u16, pairs: &[(u32, &[u8])]) -> Vec<u8> {
    ymsg::packet(service, 0x5A55_AA56, 0x0042_1337, None, pairs)
}

/// (client → server, server → client) bytes of a YMSG session (typing
/// notices and messages) of about `total` bytes in all.
pub fn yahoo_stream(total: usize) -> (Vec<u8>, Vec<u8>) {
    let mut c = ymsg(0x57, &[(1, b"alice_y")]);
    let mut s = Vec::new();
    let mut i = 0u64;
    while c.len() + s.len() < total {
        let t = format!("message number {i}, which says something of ordinary length");
        c.extend_from_slice(&ymsg(
            0x4B,
            &[
                (49, b"TYPING"),
                (1, b"alice_y"),
                (14, b" "),
                (13, b"1"),
                (5, b"bob_y"),
            ],
        ));
        c.extend_from_slice(&ymsg(
            6,
            &[
                (1, b"alice_y"),
                (5, b"bob_y"),
                (97, b"1"),
                (14, t.as_bytes()),
            ],
        ));
        let r = format!("reply {i}: sure, sounds good to me");
        s.extend_from_slice(&ymsg(
            6,
            &[
                (4, b"bob_y"),
                (5, b"alice_y"),
                (97, b"1"),
                (14, r.as_bytes()),
            ],
        ));
        i += 1;
    }
    (c, s)
}

/// The MSN switchboard chat of [`msn_stream`] carried by the MSN HTTP
/// gateway: POSTs of up to 4000 bytes of it, answered by 200 responses.
pub fn gateway_stream(total: usize) -> (Vec<u8>, Vec<u8>) {
    let (mc, ms) = msn_stream(total);
    let wrap_req = |body: &[u8]| {
        let mut v = format!("POST /gateway/gateway.dll?SessionID=1234.5 HTTP/1.1\r\nContent-Type: application/x-msn-messenger\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        v.extend_from_slice(body);
        v
    };
    let wrap_resp = |body: &[u8]| {
        let mut v = format!("HTTP/1.1 200 OK\r\nX-MSN-Messenger: SessionID=1234.6; GW-IP=1.2.3.4\r\nContent-Type: application/x-msn-messenger\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        v.extend_from_slice(body);
        v
    };
    let c: Vec<u8> = mc.chunks(4000).flat_map(wrap_req).collect();
    let s: Vec<u8> = ms.chunks(4000).flat_map(wrap_resp).collect();
    (c, s)
}

/// An ICBM SNAC (family 4): outgoing (subtype 6) or incoming (7) message
/// of `text` in `charset` with `peer`.
pub fn icbm(subtype: u16, peer: &str, charset: u16, text: &[u8]) -> Vec<u8> {
    let mut d = b"12345678".to_vec();
    d.extend_from_slice(&[0, 1, peer.len() as u8]);
    d.extend_from_slice(peer.as_bytes());
    if subtype == 7 {
        d.extend_from_slice(&[0, 0, 0, 1]);
        d.extend(tlv(1, &[0, 0x50]));
    }
    let mut f = vec![0x05, 0x01, 0x00, 0x01, 0x01, 0x01, 0x01];
    f.extend_from_slice(&((text.len() + 4) as u16).to_be_bytes());
    f.extend_from_slice(&charset.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(text);
    d.extend(tlv(2, &f));
    snac(4, subtype, &d)
}

/// (client → server, server → client) byte streams of an OSCAR BOS session
/// (typing notices, HTML and UTF-16 messages) of about `total` bytes in all.
pub fn oscar_streams(total: usize) -> (Vec<u8>, Vec<u8>) {
    let mut c = flap(1, 0, &[0, 0, 0, 1, 0, 6, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
    let mut s = flap(1, 0, &[0, 0, 0, 1]);
    let out_text = b"<HTML><BODY><FONT FACE=\"Arial\">See you at the harbour at seven, bring the charts &amp; the tea.</FONT></BODY></HTML>";
    let in_text: Vec<u8> = "Sure \u{2014} zażółć gęślą jaźń, see you there!"
        .encode_utf16()
        .flat_map(|u| u.to_be_bytes())
        .collect();
    let mut seq = [1u16, 1u16];
    while c.len() + s.len() < total {
        let mut typing = vec![0u8; 8];
        typing.extend_from_slice(&[0, 1, 9]);
        typing.extend_from_slice(b"461758769");
        typing.extend_from_slice(&[0, 2]);
        c.extend(flap(2, seq[0], &snac(4, 0x14, &typing)));
        c.extend(flap(
            2,
            seq[0].wrapping_add(1),
            &icbm(6, "461758769", 0, out_text),
        ));
        seq[0] = seq[0].wrapping_add(2);
        s.extend(flap(2, seq[1], &icbm(7, "461758769", 2, &in_text)));
        seq[1] = seq[1].wrapping_add(1);
    }
    (c, s)
}

/// A GG packet: type, length (little-endian), body.
pub fn gg_packet(t: u32, body: &[u8]) -> Vec<u8> {
    let mut v = t.to_le_bytes().to_vec();
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// (client → server, server → client) byte streams of a GG session mixing
/// GG 8 and GG 11 messages and typing notices, about `total` bytes in all.
pub fn gg_streams(total: usize) -> (Vec<u8>, Vec<u8>) {
    let mut login = 1_234_567u32.to_le_bytes().to_vec();
    login.extend_from_slice(&[0u8; 120]);
    let mut c = gg_packet(0x31, &login);
    let mut s = gg_packet(0x01, &[1, 2, 3, 4]);
    let html = "<span style=\"color:#000000\">Cześć! Spotkajmy się o siódmej przy przystani, weź mapy.</span>";
    let plain = b"Czesc! Spotkajmy sie o siodmej przy przystani, wez mapy.";
    let mut m80 = 7_654_321u32.to_le_bytes().to_vec();
    m80.extend_from_slice(&[0, 0, 0, 0, 8, 0, 0, 0]);
    let off_plain = 20 + html.len() + 1;
    m80.extend_from_slice(&(off_plain as u32).to_le_bytes());
    m80.extend_from_slice(&((off_plain + plain.len() + 1) as u32).to_le_bytes());
    m80.extend_from_slice(html.as_bytes());
    m80.push(0);
    m80.extend_from_slice(plain);
    m80.push(0);
    let send80 = gg_packet(0x2D, &m80);
    let text = "Dobrze, będę! Пока, до вечера. Bis später!";
    let mut m110 = vec![0x0A, 9, 0, 7];
    m110.extend_from_slice(b"7654321");
    m110.extend_from_slice(&[0x10, 8, 0x18, 5, 0x25, 0, 0, 0, 0]);
    m110.push(0x2A);
    m110.push(text.len() as u8);
    m110.extend_from_slice(text.as_bytes());
    let x = format!("<span>{text}</span>");
    m110.push(0x32);
    m110.push(x.len() as u8);
    m110.extend_from_slice(x.as_bytes());
    let recv110 = gg_packet(0x7E, &m110);
    let mut typing = 5u16.to_le_bytes().to_vec();
    typing.extend_from_slice(&7_654_321u32.to_le_bytes());
    let typing = gg_packet(0x59, &typing);
    while c.len() + s.len() < total {
        c.extend_from_slice(&typing);
        c.extend_from_slice(&send80);
        s.extend_from_slice(&typing);
        s.extend_from_slice(&recv110);
    }
    (c, s)
}
