//! Gadu-Gadu wire parser: pure functions from one packet (type u32 LE, length
//! u32 LE, body) to a [`GgPacket`]: welcome, the login variants (GG 6/7/8 and
//! the GG 10.5/11 protobuf login), the GG 6/8/11 message packets, typing
//! notices and DCC7 file offers. It includes the tiny protobuf reader the GG 11
//! packets need. No I/O, no clock, no session state; every length is checked.
//!
//! Layouts: protocols.md §6 (from libgadu `protocol.html`, `packets.proto`,
//! `libgadu.h`), and the real GG 11 capture described in
//! fixtures/real/PROVENANCE-oscar-gg.md.

use std::borrow::Cow;

use crate::event::Id;
use crate::proto::oscar::parser::{html_to_text, Framing, Reader};
use crate::proto::utf8_lossy;
use compact_str::ToCompactString;

pub const GG_HEADER_LEN: usize = 8;
/// Largest body accepted (texts are ≤ 2000 characters; GG 11 messages carry
/// plain + xhtml, and image replies are larger but still well under this).
pub const GG_MAX_BODY: usize = 0x1_0000;

pub mod ty {
    pub const WELCOME: u32 = 0x01;
    pub const LOGIN_OK: u32 = 0x03;
    pub const RECV_MSG: u32 = 0x0A;
    pub const SEND_MSG: u32 = 0x0B;
    pub const LOGIN: u32 = 0x0C;
    pub const LOGIN_EXT: u32 = 0x13;
    pub const LOGIN60: u32 = 0x15;
    pub const LOGIN70: u32 = 0x19;
    pub const DCC7_NEW: u32 = 0x20;
    pub const LOGIN80BETA: u32 = 0x29;
    pub const SEND_MSG80: u32 = 0x2D;
    pub const RECV_MSG80: u32 = 0x2E;
    pub const LOGIN80: u32 = 0x31;
    pub const LOGIN80_OK: u32 = 0x35;
    pub const TYPING_NOTIFY: u32 = 0x59;
    pub const RECV_OWN_MSG: u32 = 0x5A;
    pub const SEND_MSG110: u32 = 0x7D;
    pub const RECV_MSG110: u32 = 0x7E;
    pub const RECV_OWN_MSG110: u32 = 0x82;
    pub const LOGIN105: u32 = 0x83;
    pub const CHAT_RECV_MSG: u32 = 0x88;
    pub const CHAT_SEND_MSG: u32 = 0x8D;
    pub const CHAT_RECV_OWN_MSG: u32 = 0x8E;
    pub const LOGIN110_OK: u32 = 0x9D;
}

/// Packet types a client sends (protocols.md §6; libgadu `libgadu.h`).
const CLIENT_TYPES: &[u32] = &[
    0x02, 0x08, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x19, 0x1F,
    0x20, 0x21, 0x22, 0x23, 0x25, 0x29, 0x2D, 0x31, 0x38, 0x40, 0x46, 0x47, 0x4A, 0x59, 0x63, 0x77,
    0x78, 0x7B, 0x7C, 0x7D, 0x83, 0x86, 0x89, 0x8D, 0x90, 0xA2,
];
/// Packet types a server sends.
const SERVER_TYPES: &[u32] = &[
    0x01, 0x02, 0x03, 0x05, 0x06, 0x07, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x14,
    0x16, 0x17, 0x18, 0x1F, 0x20, 0x21, 0x22, 0x23, 0x25, 0x27, 0x2E, 0x35, 0x36, 0x37, 0x41, 0x43,
    0x44, 0x47, 0x59, 0x5A, 0x5F, 0x7E, 0x7F, 0x82, 0x87, 0x88, 0x8C, 0x8E, 0x8F, 0x91, 0x9D, 0xA1,
];

/// GG packet framing for one direction (the type space is per direction).
#[derive(Clone, Copy, Debug)]
pub struct GgFraming {
    /// True for client → server bytes.
    pub from_client: bool,
}

impl Framing for GgFraming {
    const HEADER_LEN: usize = GG_HEADER_LEN;
    const MAX_BODY: usize = GG_MAX_BODY;

    fn body_len(&self, h: &[u8]) -> Option<usize> {
        let (t, len) = header(h)?;
        // Every known type is below 0x100; leave room for unknown newer ones.
        if t == 0 || t > 0x3FF || len > GG_MAX_BODY {
            return None;
        }
        Some(len)
    }

    fn candidate(&self, h: &[u8]) -> bool {
        header(h).is_some_and(|(t, _)| self.knows(t))
    }
}

impl GgFraming {
    pub fn knows(&self, t: u32) -> bool {
        let table = if self.from_client {
            CLIENT_TYPES
        } else {
            SERVER_TYPES
        };
        table.contains(&t)
    }
}

fn header(h: &[u8]) -> Option<(u32, usize)> {
    let t = u32::from_le_bytes(h.get(0..4)?.try_into().ok()?);
    let len = u32::from_le_bytes(h.get(4..8)?.try_into().ok()?);
    Some((t, usize::try_from(len).ok()?))
}

/// Who wrote a message relative to the monitored client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgDir {
    /// The client sends it (SEND_MSG*).
    Send,
    /// The server delivers a peer's message (RECV_MSG*).
    Recv,
    /// The server echoes a message the local user sent from another device.
    RecvOwn,
}

/// A chat message of any dialect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GgMessage<'a> {
    pub dir: MsgDir,
    /// Recipient (send) or sender (receive) uin, decimal; absent in GG 11
    /// chat packets.
    pub peer: Option<Id>,
    /// GG 11 chat (multi-user conversation) id.
    pub chat_id: Option<u64>,
    /// Conference attribute: the other participants (GG 6/8).
    pub conference: Vec<u32>,
    pub class: u32,
    /// The message text as shown to the user.
    pub text: String,
    pub encoding: &'static str,
    /// The bytes the text was decoded from.
    pub raw: &'a [u8],
    /// Decoding replaced bytes.
    pub lossy: bool,
}

/// Which login packet named the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginKind {
    Legacy(u32),
    Gg105,
}

/// One decoded GG packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GgPacket<'a> {
    Welcome,
    /// c→s login: the local uin.
    Login {
        uin: Id,
        kind: LoginKind,
        status: Option<u32>,
    },
    /// s→c login accepted (GG 11 names the uin).
    LoginOk {
        uin: Option<Id>,
    },
    Message(GgMessage<'a>),
    /// 0x59: `length` 0 = stopped, anything else = typing; `uin` = the peer.
    Typing {
        uin: u32,
        length: u16,
    },
    /// 0x20 DCC7_NEW: a file (type 4) or voice (type 1) offer.
    Dcc7New {
        from: u32,
        to: u32,
        kind: u32,
        name: &'a [u8],
        size: u64,
    },
    /// Known but not an event (acks, lists, status…), or unknown.
    Other {
        ty: u32,
    },
}

/// Parse one whole packet (header + body) sent by the client (`from_client`)
/// or by the server. Damaged bodies decode as `Other`.
pub fn parse_packet(unit: &[u8], from_client: bool) -> Option<GgPacket<'_>> {
    let (t, len) = header(unit)?;
    let body = unit.get(GG_HEADER_LEN..GG_HEADER_LEN.checked_add(len)?)?;
    let other = GgPacket::Other { ty: t };
    let parsed = if from_client {
        match t {
            ty::LOGIN
            | ty::LOGIN_EXT
            | ty::LOGIN60
            | ty::LOGIN70
            | ty::LOGIN80BETA
            | ty::LOGIN80 => parse_login(t, body),
            ty::LOGIN105 => parse_login105(body),
            ty::SEND_MSG => parse_msg_old(body, MsgDir::Send),
            ty::SEND_MSG80 => parse_msg80(body, MsgDir::Send),
            ty::SEND_MSG110 | ty::CHAT_SEND_MSG => parse_msg110(body, MsgDir::Send),
            ty::TYPING_NOTIFY => parse_typing(body),
            ty::DCC7_NEW => parse_dcc7_new(body),
            _ => None,
        }
    } else {
        match t {
            ty::WELCOME => Some(GgPacket::Welcome),
            ty::LOGIN_OK | ty::LOGIN80_OK => Some(GgPacket::LoginOk { uin: None }),
            ty::LOGIN110_OK => Some(GgPacket::LoginOk {
                uin: Proto::new(body)
                    .find_varint(3)
                    .map(|u| u.to_compact_string()),
            }),
            ty::RECV_MSG => parse_msg_old(body, MsgDir::Recv),
            ty::RECV_MSG80 => parse_msg80(body, MsgDir::Recv),
            ty::RECV_OWN_MSG => parse_msg80(body, MsgDir::RecvOwn),
            ty::RECV_MSG110 | ty::CHAT_RECV_MSG => parse_msg110(body, MsgDir::Recv),
            ty::RECV_OWN_MSG110 | ty::CHAT_RECV_OWN_MSG => parse_msg110(body, MsgDir::RecvOwn),
            ty::TYPING_NOTIFY => parse_typing(body),
            ty::DCC7_NEW => parse_dcc7_new(body),
            _ => None,
        }
    };
    Some(parsed.unwrap_or(other))
}

fn parse_login(t: u32, body: &[u8]) -> Option<GgPacket<'static>> {
    let mut r = Reader::new(body);
    let mut uin = r.u32le()?;
    if t == ty::LOGIN60 || t == ty::LOGIN70 {
        // GG 6/7 set flag bits in the uin word (protocols.md §6).
        uin &= !(0x0400_0000 | 0x4000_0000);
    }
    let status = match t {
        // uin, language[2], hash type, hash[64], status.
        ty::LOGIN80 | ty::LOGIN80BETA => body.get(71..75).map(le32),
        // uin, hash u32, status (GG 4-6).
        ty::LOGIN | ty::LOGIN_EXT | ty::LOGIN60 => body.get(8..12).map(le32),
        // uin, hash type, hash[64], status.
        ty::LOGIN70 => body.get(69..73).map(le32),
        _ => None,
    };
    Some(GgPacket::Login {
        uin: uin.to_compact_string(),
        kind: LoginKind::Legacy(t),
        status,
    })
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn parse_login105(body: &[u8]) -> Option<GgPacket<'static>> {
    let p = Proto::new(body);
    let uin = uin_bytes(p.find_bytes(2)?)?;
    let status = p.find(8).and_then(|v| match v {
        Wire::Fixed32(s) => Some(s),
        Wire::Varint(s) => u32::try_from(s).ok(),
        _ => None,
    });
    Some(GgPacket::Login {
        uin,
        kind: LoginKind::Gg105,
        status,
    })
}

/// GG 11 uin bytes: `[magic 0|1][len][ASCII digits]`.
pub fn uin_bytes(b: &[u8]) -> Option<Id> {
    let (&_magic, rest) = b.split_first()?;
    let (&len, digits) = rest.split_first()?;
    let digits = digits.get(..usize::from(len))?;
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // All ASCII digits: valid UTF-8.
    std::str::from_utf8(digits).ok().map(Id::from)
}

fn parse_typing(body: &[u8]) -> Option<GgPacket<'static>> {
    let mut r = Reader::new(body);
    let length = r.u16le()?;
    let uin = r.u32le()?;
    Some(GgPacket::Typing { uin, length })
}

fn parse_dcc7_new(body: &[u8]) -> Option<GgPacket<'_>> {
    let mut r = Reader::new(body);
    r.take(8)?; // id
    let from = r.u32le()?;
    let to = r.u32le()?;
    let kind = r.u32le()?;
    let name = r.take(255)?;
    let lo = r.u32le()?;
    // libgadu writes size u32 + a zero u32: read as u64 LE.
    let hi = r.u32le().unwrap_or(0);
    let name = match memchr::memchr(0, name) {
        Some(i) => &name[..i],
        None => name,
    };
    Some(GgPacket::Dcc7New {
        from,
        to,
        kind,
        name,
        size: u64::from(lo) | (u64::from(hi) << 32),
    })
}

/// GG 6 SEND_MSG / RECV_MSG: fixed header, CP1250 text up to NUL, attributes.
fn parse_msg_old(body: &[u8], dir: MsgDir) -> Option<GgPacket<'_>> {
    let mut r = Reader::new(body);
    let peer = r.u32le()?;
    r.u32le()?; // seq
    if dir != MsgDir::Send {
        r.u32le()?; // time
    }
    let class = r.u32le()?;
    let rest = r.rest();
    let (text, attrs) = match memchr::memchr(0, rest) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let t = decode_plain(text);
    Some(GgPacket::Message(GgMessage {
        dir,
        peer: Some(peer.to_compact_string()),
        chat_id: None,
        conference: conference(attrs),
        class,
        text: t.0,
        encoding: "windows-1250",
        raw: text,
        lossy: t.1,
    }))
}

/// GG 8 SEND_MSG80 / RECV_MSG80 / RECV_OWN_MSG: HTML (UTF-8) at the fixed
/// offset, plain CP1250 at `offset_plain`, attributes at `offset_attributes`.
fn parse_msg80(body: &[u8], dir: MsgDir) -> Option<GgPacket<'_>> {
    let mut r = Reader::new(body);
    let peer = r.u32le()?;
    r.u32le()?; // seq
    if dir != MsgDir::Send {
        r.u32le()?; // time
    }
    let class = r.u32le()?;
    let off_plain = usize::try_from(r.u32le()?).ok()?;
    let off_attr = usize::try_from(r.u32le()?).ok()?;
    let html_start = body.len() - r.rest().len();
    let html = nul_str(body.get(html_start..).unwrap_or(&[]));
    let plain = body.get(off_plain..).map(nul_str).unwrap_or(&[]);
    let attrs = body.get(off_attr..).unwrap_or(&[]);
    let (stripped, html_lossy) = html_text(html);
    let (text, encoding, raw, lossy) = if !stripped.is_empty() {
        (stripped, "utf-8", html, html_lossy)
    } else {
        let (t, bad) = decode_plain(plain);
        (t, "windows-1250", plain, bad)
    };
    Some(GgPacket::Message(GgMessage {
        dir,
        peer: Some(peer.to_compact_string()),
        chat_id: None,
        conference: conference(attrs),
        class,
        text,
        encoding,
        raw,
        lossy,
    }))
}

/// GG 11 protobuf message (SEND_MSG110 / RECV_MSG110 / own / chat variants).
fn parse_msg110(body: &[u8], dir: MsgDir) -> Option<GgPacket<'_>> {
    // One pass over the fields (the first of each number wins).
    let (mut peer, mut chat_id, mut plain, mut xhtml) = (None, None, None, None);
    for (field, v) in Proto::new(body) {
        match (field, v) {
            (1, Wire::Bytes(b)) if peer.is_none() => peer = Some(uin_bytes(b)),
            (5, Wire::Bytes(b)) if plain.is_none() => plain = Some(b),
            (6, Wire::Bytes(b)) if xhtml.is_none() => xhtml = Some(b),
            (10, Wire::Fixed64(x) | Wire::Varint(x)) if chat_id.is_none() => chat_id = Some(x),
            _ => {}
        }
    }
    let peer = peer.flatten();
    let plain = plain.unwrap_or(&[]);
    let xhtml = xhtml.unwrap_or(&[]);
    // Field 2 is a class word (0x08) when sending but `flags` with other
    // meanings when receiving (0x4040 image, 0x09 archive): no class bits.
    let class = 0;
    let (stripped, xhtml_lossy) = html_text(xhtml);
    let (text, raw, lossy) = if !stripped.is_empty() {
        (stripped, xhtml, xhtml_lossy)
    } else {
        let p = utf8_lossy(plain);
        let lossy = matches!(p, Cow::Owned(_));
        (crlf_to_lf(p), plain, lossy)
    };
    if peer.is_none() && chat_id.is_none() && text.is_empty() {
        return None;
    }
    Some(GgPacket::Message(GgMessage {
        dir,
        peer,
        chat_id,
        conference: Vec::new(),
        class,
        text,
        encoding: "utf-8",
        raw,
        lossy,
    }))
}

/// The text of a UTF-8 HTML part: `\r` dropped, tags stripped, entities
/// decoded (libgadu `message.c`); and whether the bytes were not valid UTF-8.
fn html_text(html: &[u8]) -> (String, bool) {
    let s = utf8_lossy(html);
    let lossy = matches!(s, Cow::Owned(_));
    let text = if s.contains('\r') {
        html_to_text(&s.replace('\r', "")).into_owned()
    } else {
        match html_to_text(&s) {
            Cow::Owned(t) => t,
            Cow::Borrowed(_) => s.into_owned(),
        }
    };
    (text, lossy)
}

fn crlf_to_lf(s: Cow<'_, str>) -> String {
    if s.contains("\r\n") {
        s.replace("\r\n", "\n")
    } else {
        s.into_owned()
    }
}

fn nul_str(b: &[u8]) -> &[u8] {
    match memchr::memchr(0, b) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// CP1250 plain text, CRLF → LF (protocol.html 1.1); returns (text, lossy).
fn decode_plain(b: &[u8]) -> (String, bool) {
    let (s, _, bad) = encoding_rs::WINDOWS_1250.decode(b);
    (crlf_to_lf(s), bad)
}

/// The conference attribute (kind 0x01: count u32 + count uins) when present.
fn conference(attrs: &[u8]) -> Vec<u32> {
    let mut r = Reader::new(attrs);
    while let Some(kind) = r.u8() {
        match kind {
            0x01 => {
                let Some(count) = r.u32le() else { break };
                // Bounded by the bytes present, not by the announced count.
                let mut out = Vec::new();
                for _ in 0..count {
                    match r.u32le() {
                        Some(u) => out.push(u),
                        None => break,
                    }
                }
                return out;
            }
            0x02 => {
                let Some(n) = r.u16le() else { break };
                if r.take(usize::from(n)).is_none() {
                    break;
                }
            }
            0x04 => {
                if r.take(8).is_none() {
                    break;
                }
            }
            _ => break,
        }
    }
    Vec::new()
}

// ---------------------------------------------------------------------------
// A minimal protobuf reader (wire types 0, 1, 2, 5), enough for GG 11.
// ---------------------------------------------------------------------------

/// One protobuf field value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Iterates the fields of a protobuf message; stops at the first malformed one.
#[derive(Clone, Copy, Debug)]
pub struct Proto<'a> {
    rest: &'a [u8],
}

impl<'a> Proto<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Proto { rest: b }
    }

    pub fn find(self, field: u64) -> Option<Wire<'a>> {
        self.into_iter()
            .find_map(|(f, v)| (f == field).then_some(v))
    }

    pub fn find_bytes(self, field: u64) -> Option<&'a [u8]> {
        self.into_iter().find_map(|(f, v)| match v {
            Wire::Bytes(b) if f == field => Some(b),
            _ => None,
        })
    }

    pub fn find_varint(self, field: u64) -> Option<u64> {
        self.into_iter().find_map(|(f, v)| match v {
            Wire::Varint(x) if f == field => Some(x),
            _ => None,
        })
    }
}

impl<'a> Iterator for Proto<'a> {
    type Item = (u64, Wire<'a>);

    fn next(&mut self) -> Option<(u64, Wire<'a>)> {
        let (key, n) = varint(self.rest)?;
        let mut rest = &self.rest[n..];
        let field = key >> 3;
        let value = match key & 7 {
            0 => {
                let (v, n) = varint(rest)?;
                rest = &rest[n..];
                Wire::Varint(v)
            }
            1 => {
                let b: [u8; 8] = rest.get(..8)?.try_into().ok()?;
                rest = &rest[8..];
                Wire::Fixed64(u64::from_le_bytes(b))
            }
            2 => {
                let (len, n) = varint(rest)?;
                let len = usize::try_from(len).ok()?;
                let end = n.checked_add(len)?;
                let b = rest.get(n..end)?;
                rest = &rest[end..];
                Wire::Bytes(b)
            }
            5 => {
                let b: [u8; 4] = rest.get(..4)?.try_into().ok()?;
                rest = &rest[4..];
                Wire::Fixed32(u32::from_le_bytes(b))
            }
            _ => {
                self.rest = &[];
                return None;
            }
        };
        self.rest = rest;
        Some((field, value))
    }
}

/// A base-128 varint: value and bytes used (at most 10).
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn packet(t: u32, body: &[u8]) -> Vec<u8> {
        let mut v = t.to_le_bytes().to_vec();
        v.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v.extend_from_slice(body);
        v
    }

    pub fn pb_bytes(field: u64, b: &[u8]) -> Vec<u8> {
        let mut v = pb_varint_raw(field << 3 | 2);
        v.extend(pb_varint_raw(b.len() as u64));
        v.extend_from_slice(b);
        v
    }

    pub fn pb_varint(field: u64, x: u64) -> Vec<u8> {
        let mut v = pb_varint_raw(field << 3);
        v.extend(pb_varint_raw(x));
        v
    }

    fn pb_varint_raw(mut x: u64) -> Vec<u8> {
        let mut v = Vec::new();
        loop {
            let b = (x & 0x7F) as u8;
            x >>= 7;
            if x == 0 {
                v.push(b);
                return v;
            }
            v.push(b | 0x80);
        }
    }

    pub fn uin_field(uin: &str) -> Vec<u8> {
        let mut v = vec![1, uin.len() as u8];
        v.extend_from_slice(uin.as_bytes());
        v
    }

    #[test]
    fn protocols_md_send_msg80_example() {
        let bytes: Vec<u8> = [
            0x2d, 0, 0, 0, 0x23, 0, 0, 0, 0x87, 0xd6, 0x12, 0, 0, 0xf1, 0x53, 0x65, 8, 0, 0, 0,
            0x17, 0, 0, 0, 0x1a, 0, 0, 0, b'h', b'i', 0, b'h', b'i', 0, 2, 6, 0, 0, 0, 8, 0, 0, 0,
        ]
        .to_vec();
        let Some(GgPacket::Message(m)) = parse_packet(&bytes, true) else {
            panic!()
        };
        assert_eq!(m.peer.as_deref(), Some("1234567"));
        assert_eq!(m.text, "hi");
        assert_eq!(m.dir, MsgDir::Send);
        assert!(m.conference.is_empty());
    }

    #[test]
    fn old_send_msg_cp1250_with_conference() {
        let mut b = 5u32.to_le_bytes().to_vec();
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&[0xA5, 0xB9, b'\r', b'\n', b'x', 0]); // Ą ą CRLF x
        b.push(1);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&7u32.to_le_bytes());
        b.extend_from_slice(&9u32.to_le_bytes());
        let bytes = packet(0x0B, &b);
        let Some(GgPacket::Message(m)) = parse_packet(&bytes, true) else {
            panic!()
        };
        assert_eq!(m.text, "Ąą\nx");
        assert_eq!(m.conference, vec![7, 9]);
        // The same type from the server is GG_DISCONNECTING, not a message.
        assert_eq!(
            parse_packet(&packet(0x0B, &b), false),
            Some(GgPacket::Other { ty: 0x0B })
        );
    }

    #[test]
    fn recv_msg80_prefers_html_and_falls_back_to_plain() {
        let mut b = 42u32.to_le_bytes().to_vec();
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&8u32.to_le_bytes());
        let html = "<span>a &amp; b<br>c</span>\0";
        let off_plain = 24 + html.len();
        b.extend_from_slice(&(off_plain as u32).to_le_bytes());
        b.extend_from_slice(&((off_plain + 4) as u32).to_le_bytes());
        b.extend_from_slice(html.as_bytes());
        b.extend_from_slice(b"abc\0");
        let bytes = packet(0x2E, &b);
        let Some(GgPacket::Message(m)) = parse_packet(&bytes, false) else {
            panic!()
        };
        assert_eq!(m.text, "a & b\nc");
        assert_eq!(m.peer.as_deref(), Some("42"));
        // Empty HTML: the CP1250 plain part.
        let mut e = 42u32.to_le_bytes().to_vec();
        e.extend_from_slice(&[0; 8]);
        e.extend_from_slice(&8u32.to_le_bytes());
        e.extend_from_slice(&25u32.to_le_bytes());
        e.extend_from_slice(&29u32.to_le_bytes());
        e.extend_from_slice(b"\0\x8Cle\0");
        let bytes = packet(0x2E, &e);
        let Some(GgPacket::Message(m)) = parse_packet(&bytes, false) else {
            panic!()
        };
        assert_eq!(m.text, "Śle");
        assert_eq!(m.encoding, "windows-1250");
    }

    #[test]
    fn gg11_login_and_messages() {
        let mut login = pb_bytes(1, b"pl");
        login.extend(pb_bytes(2, &uin_field("41925307")));
        login.extend_from_slice(&[0x45, 2, 0, 0, 0]); // field 8 fixed32 = 2
        assert_eq!(
            parse_packet(&packet(0x83, &login), true),
            Some(GgPacket::Login {
                uin: "41925307".into(),
                kind: LoginKind::Gg105,
                status: Some(2)
            })
        );
        let mut send = pb_bytes(1, &uin_field("5817263"));
        send.extend(pb_varint(2, 8));
        send.extend(pb_varint(3, 77));
        send.extend(pb_bytes(5, b"<b>x</b> &amp;"));
        send.extend(pb_bytes(6, b"<span>&lt;b&gt;x&lt;/b&gt; &amp;amp;</span>"));
        let bytes = packet(0x7D, &send);
        let Some(GgPacket::Message(m)) = parse_packet(&bytes, true) else {
            panic!()
        };
        assert_eq!(m.text, "<b>x</b> &amp;");
        assert_eq!(m.peer.as_deref(), Some("5817263"));
        // A chat message carries a chat id (fixed64) and no peer.
        let mut chat = pb_varint(3, 1);
        chat.extend(pb_bytes(5, b"hej"));
        chat.push(10 << 3 | 1);
        chat.extend_from_slice(&99u64.to_le_bytes());
        let bytes = packet(0x88, &chat);
        let Some(GgPacket::Message(m)) = parse_packet(&bytes, false) else {
            panic!()
        };
        assert_eq!(
            (m.chat_id, m.peer, m.text.as_str()),
            (Some(99), None, "hej")
        );
    }

    #[test]
    fn typing_and_dcc7() {
        let mut t = 0xa784u16.to_le_bytes().to_vec();
        t.extend_from_slice(&5817263u32.to_le_bytes());
        assert_eq!(
            parse_packet(&packet(0x59, &t), true),
            Some(GgPacket::Typing {
                uin: 5817263,
                length: 0xa784
            })
        );
        let mut d = vec![0u8; 8];
        d.extend_from_slice(&1u32.to_le_bytes());
        d.extend_from_slice(&2u32.to_le_bytes());
        d.extend_from_slice(&4u32.to_le_bytes());
        let mut name = [0u8; 255];
        name[..5].copy_from_slice(b"a.txt");
        d.extend_from_slice(&name);
        d.extend_from_slice(&1000u32.to_le_bytes());
        d.extend_from_slice(&[0; 4]);
        d.extend_from_slice(&[0; 20]);
        assert_eq!(
            parse_packet(&packet(0x20, &d), true),
            Some(GgPacket::Dcc7New {
                from: 1,
                to: 2,
                kind: 4,
                name: b"a.txt",
                size: 1000
            })
        );
    }

    #[test]
    fn protobuf_reader_rejects_truncation_and_bad_wire_types() {
        assert_eq!(Proto::new(&[0x0A, 0x05, 1, 2]).count(), 0);
        assert_eq!(Proto::new(&[0x0B]).count(), 0);
        assert_eq!(Proto::new(&[0xFF; 11]).count(), 0);
        assert_eq!(uin_bytes(&[0, 3, b'1', b'2']), None);
        assert_eq!(uin_bytes(&[0, 2, b'1', b'2']).as_deref(), Some("12"));
    }

    #[test]
    fn every_truncation_is_safe() {
        let mut body = 1u32.to_le_bytes().to_vec();
        body.extend_from_slice(&[0xFF; 30]);
        for t in [
            0x0A, 0x0B, 0x2D, 0x2E, 0x5A, 0x7D, 0x7E, 0x83, 0x9D, 0x59, 0x20, 0x31,
        ] {
            let p = packet(t, &body);
            for n in 0..p.len() {
                let _ = parse_packet(&p[..n], true);
                let _ = parse_packet(&p[..n], false);
            }
        }
    }
}
