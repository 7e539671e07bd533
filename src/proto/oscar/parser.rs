//! OSCAR (AIM/ICQ) wire parser: pure functions from bytes to protocol units
//! (FLAP frames, SNACs, TLV chains, ICBMs, sign-on and cookie exchanges,
//! rendezvous proposals, typing notices, ICQ offline messages). No I/O, no
//! clock, no session state; every length from the wire is checked and nothing
//! panics. Gadu-Gadu shares the unit measuring and the chain-of-two resync.
//!
//! Layouts: protocols.md §3 (FLAP, SNAC, TLV, ICBM channels 1/2/4, typing
//! 0004/0014, sign-on, 0001/000F, 0017/0003); ICQ offline messages (0015/0003,
//! meta type 0x41) follow the ICQ protocol notes (all fields little-endian).

use std::borrow::Cow;

// ---------------------------------------------------------------------------
// Length-framed units: measuring them and finding them again after a gap.
// ---------------------------------------------------------------------------

/// What a length-framed protocol tells [`unit_len`] and [`hunt`] about its headers.
pub trait Framing {
    /// Bytes of the fixed header.
    const HEADER_LEN: usize;
    /// Largest body a plausible header may announce (the buffer budget).
    const MAX_BODY: usize;

    /// The body length announced by a plausible header, or `None` when the
    /// bytes cannot start a unit. `header` is exactly `HEADER_LEN` bytes.
    fn body_len(&self, header: &[u8]) -> Option<usize>;

    /// Stricter check for a resync candidate after a gap (e.g. a known
    /// packet type for this direction). `header` passed `body_len`.
    fn candidate(&self, header: &[u8]) -> bool {
        let _ = header;
        true
    }

    /// Whether `next` is a plausible header right after the unit headed by
    /// `cur` (the second link of the chain-of-two check).
    fn chains(&self, cur: &[u8], next: &[u8]) -> bool {
        let _ = (cur, next);
        true
    }
}

/// Where the unit at the start of `buf` ends, per its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitLen {
    /// The first `n` bytes are one whole unit.
    Complete(usize),
    /// The header is plausible; more bytes are needed.
    Incomplete,
    /// The bytes cannot start a unit: the stream is out of step.
    Bad,
}

/// Measure the unit at the start of `buf`.
pub fn unit_len<F: Framing>(framing: &F, buf: &[u8]) -> UnitLen {
    let Some(h) = buf.get(..F::HEADER_LEN) else {
        return UnitLen::Incomplete;
    };
    match framing.body_len(h) {
        None => UnitLen::Bad,
        Some(len) if buf.len() >= F::HEADER_LEN + len => UnitLen::Complete(F::HEADER_LEN + len),
        Some(_) => UnitLen::Incomplete,
    }
}

/// Result of looking for a unit boundary after a gap or damage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hunt {
    /// A confirmed unit starts this many bytes in.
    Found(usize),
    /// No confirmed start yet: the first `n` bytes can be dropped, the rest
    /// must be looked at again with more bytes.
    Wait(usize),
}

/// Find the next unit boundary in `buf` (protocols.md §0 "Gaps"): a
/// candidate header is accepted when the header right after its unit is
/// plausible too and chains to it ("chain of two"), or when it sits at the
/// very start of `buf` (a segment start after a gap) and its unit ends exactly
/// at the end of `buf` (clients write one unit per send).
pub fn hunt<F: Framing>(framing: &F, buf: &[u8]) -> Hunt {
    let h = F::HEADER_LEN;
    // The first candidate that cannot be confirmed yet: kept (and waited
    // for) unless a later candidate is confirmed first.
    let mut unconfirmed = None;
    let mut i = 0;
    while i + h <= buf.len() {
        let cand = &buf[i..i + h];
        if let Some(len) = framing.body_len(cand).filter(|_| framing.candidate(cand)) {
            let next = i + h + len;
            if next + h <= buf.len() {
                let nxt = &buf[next..next + h];
                if framing.body_len(nxt).is_some()
                    && framing.candidate(nxt)
                    && framing.chains(cand, nxt)
                {
                    return Hunt::Found(i);
                }
            } else if i == 0 && next == buf.len() {
                return Hunt::Found(0);
            } else if unconfirmed.is_none() {
                unconfirmed = Some(i);
            }
        }
        i += 1;
    }
    // Every position with a whole header was rejected or waits; the last
    // few bytes may still start one.
    Hunt::Wait(unconfirmed.unwrap_or(buf.len().saturating_sub(h - 1)))
}

/// The largest buffer a hunt may need: two headers and one largest body.
pub fn hunt_cap<F: Framing>() -> usize {
    2 * F::HEADER_LEN + F::MAX_BODY
}

// ---------------------------------------------------------------------------
// FLAP, SNAC, TLV.
// ---------------------------------------------------------------------------

pub const FLAP_HEADER_LEN: usize = 6;

/// One FLAP frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flap<'a> {
    pub channel: u8,
    pub seq: u16,
    pub data: &'a [u8],
}

impl<'a> Flap<'a> {
    /// Parse a whole unit as measured by [`unit_len`] with [`FlapFraming`].
    pub fn parse(unit: &'a [u8]) -> Option<Flap<'a>> {
        if unit.len() < FLAP_HEADER_LEN || unit[0] != 0x2A {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([unit[4], unit[5]]));
        let data = unit.get(FLAP_HEADER_LEN..FLAP_HEADER_LEN + len)?;
        Some(Flap {
            channel: unit[1],
            seq: u16::from_be_bytes([unit[2], unit[3]]),
            data,
        })
    }
}

/// FLAP header plausibility: `2A`, channel 1..=5, a SNAC frame long enough
/// for its header; consecutive FLAPs of a direction count up by one
/// (protocols.md §3 "Resync").
///
/// After a gap, `after` (the sequence number of the direction's last whole
/// FLAP, when one was seen) also bounds where a candidate's sequence may be:
/// ahead of it by at most [`FlapFraming::SEQ_WINDOW`] (FLAPs lost in the gap).
#[derive(Clone, Copy, Debug, Default)]
pub struct FlapFraming {
    pub after: Option<u16>,
}

impl FlapFraming {
    /// No sequence known: any sequence number is plausible.
    pub const ANY: FlapFraming = FlapFraming { after: None };
    /// How far a sequence may jump over a gap (an eighth of the space).
    pub const SEQ_WINDOW: u16 = 8192;
}

impl Framing for FlapFraming {
    const HEADER_LEN: usize = FLAP_HEADER_LEN;
    const MAX_BODY: usize = 0xFFFF;

    fn body_len(&self, h: &[u8]) -> Option<usize> {
        if h.len() < FLAP_HEADER_LEN || h[0] != 0x2A || !(1..=5).contains(&h[1]) {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
        match h[1] {
            // A SNAC needs its 10-byte header.
            2 if len < 10 => None,
            // Keep-alives carry nothing.
            5 if len > 64 => None,
            _ => Some(len),
        }
    }

    fn candidate(&self, h: &[u8]) -> bool {
        match self.after {
            Some(last) => {
                let seq = u16::from_be_bytes([h[2], h[3]]);
                (1..=Self::SEQ_WINDOW).contains(&seq.wrapping_sub(last))
            }
            None => true,
        }
    }

    fn chains(&self, cur: &[u8], next: &[u8]) -> bool {
        let a = u16::from_be_bytes([cur[2], cur[3]]);
        let b = u16::from_be_bytes([next[2], next[3]]);
        b == a.wrapping_add(1)
    }
}

/// A SNAC header and its data (after any 0x8000 extra block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snac<'a> {
    pub family: u16,
    pub subtype: u16,
    pub flags: u16,
    pub request_id: u32,
    pub data: &'a [u8],
}

impl<'a> Snac<'a> {
    pub fn parse(b: &'a [u8]) -> Option<Snac<'a>> {
        let mut r = Reader::new(b);
        let family = r.u16()?;
        let subtype = r.u16()?;
        let flags = r.u16()?;
        let request_id = r.u32()?;
        if flags & 0x8000 != 0 {
            // protocols.md §7 trap 11: skip the extra block first.
            let n = usize::from(r.u16()?);
            r.take(n)?;
        }
        Some(Snac {
            family,
            subtype,
            flags,
            request_id,
            data: r.rest(),
        })
    }
}

/// Iterates a TLV chain; stops at the first truncated TLV (see `truncated`).
#[derive(Clone, Debug)]
pub struct Tlvs<'a> {
    rest: &'a [u8],
    pub truncated: bool,
}

impl<'a> Tlvs<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Tlvs {
            rest: b,
            truncated: false,
        }
    }

    /// The value of the first TLV of type `t`.
    pub fn find(b: &'a [u8], t: u16) -> Option<&'a [u8]> {
        Tlvs::new(b).find_map(|(ty, v)| (ty == t).then_some(v))
    }
}

impl<'a> Iterator for Tlvs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<(u16, &'a [u8])> {
        if self.rest.is_empty() {
            return None;
        }
        let mut r = Reader::new(self.rest);
        let (Some(t), Some(len)) = (r.u16(), r.u16()) else {
            self.truncated = true;
            self.rest = &[];
            return None;
        };
        let Some(v) = r.take(usize::from(len)) else {
            self.truncated = true;
            self.rest = &[];
            return None;
        };
        self.rest = r.rest();
        Some((t, v))
    }
}

/// A bounds-checked big-endian cursor.
#[derive(Clone, Copy, Debug)]
pub struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b }
    }
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Some(a)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    pub fn u16le(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_le_bytes([s[0], s[1]]))
    }
    pub fn u32le(&mut self) -> Option<u32> {
        self.take(4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    /// A u8-length-prefixed string (screen names).
    pub fn bstr(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }
    pub fn rest(&self) -> &'a [u8] {
        self.b
    }
}

// ---------------------------------------------------------------------------
// Text: charsets and HTML.
// ---------------------------------------------------------------------------

/// Decoded message text with the charset it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text<'a> {
    pub text: Cow<'a, str>,
    pub encoding: &'static str,
    /// Decoding replaced bytes (the raw bytes should be kept).
    pub lossy: bool,
}

/// Decode an OSCAR message fragment by its charset word: 2 = UTF-16BE;
/// 0 (ASCII) and 3 (ISO-8859-1, often really a Windows code page): UTF-8 when
/// the bytes are valid UTF-8, else windows-1252 (protocols.md §3).
pub fn decode_charset(charset: u16, bytes: &[u8]) -> Text<'_> {
    if charset == 2 {
        let (s, _, bad) = encoding_rs::UTF_16BE.decode(bytes);
        return Text {
            text: s,
            encoding: "utf-16be",
            lossy: bad || bytes.len() % 2 != 0,
        };
    }
    decode_8bit(bytes)
}

/// UTF-8 when valid, else windows-1252 (a superset of ISO-8859-1's printables).
pub fn decode_8bit(bytes: &[u8]) -> Text<'_> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Text {
            text: Cow::Borrowed(s),
            encoding: if bytes.is_ascii() {
                "us-ascii"
            } else {
                "utf-8"
            },
            lossy: false,
        },
        Err(_) => {
            let (s, _, bad) = encoding_rs::WINDOWS_1252.decode(bytes);
            Text {
                text: s,
                encoding: "windows-1252",
                lossy: bad,
            }
        }
    }
}

/// Strip HTML markup for the `text` field: tags removed, `<br>` and `</p>`
/// become line breaks, entities decoded once (named XML/HTML basics and
/// numeric). Text without `<` or `&` comes back borrowed.
pub fn html_to_text(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let Some(mut pos) = memchr::memchr2(b'<', b'&', b) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len());
    // `<`, `>`, `&` and `;` are ASCII, so every cut below is on a char boundary.
    let mut copied = 0;
    loop {
        out.push_str(&s[copied..pos]);
        if b[pos] == b'<' {
            // A tag starts with a letter, `/` or `!`; anything else is text.
            let tag_start = matches!(b.get(pos + 1), Some(c) if c.is_ascii_alphabetic() || *c == b'/' || *c == b'!');
            match memchr::memchr(b'>', &b[pos..]).filter(|_| tag_start) {
                Some(end) => {
                    let inner = &b[pos + 1..pos + end];
                    let closing = inner.first() == Some(&b'/');
                    let name = &inner[usize::from(closing)..];
                    let name_len = name
                        .iter()
                        .take_while(|c| c.is_ascii_alphanumeric())
                        .count();
                    let name = &name[..name_len];
                    if name.eq_ignore_ascii_case(b"br")
                        || (closing && name.eq_ignore_ascii_case(b"p"))
                    {
                        out.push('\n');
                    }
                    copied = pos + end + 1;
                }
                None => {
                    out.push('<');
                    copied = pos + 1;
                }
            }
        } else {
            let (decoded, used) = decode_entity(&s[pos..]);
            out.push(decoded.unwrap_or('&'));
            copied = pos + used;
        }
        match memchr::memchr2(b'<', b'&', &b[copied..]) {
            Some(n) => pos = copied + n,
            None => break,
        }
    }
    out.push_str(&s[copied..]);
    Cow::Owned(out)
}

/// Decode one entity at the start of `s` (which starts with `&`); returns the
/// character and bytes used, or `None` and 1 when it is not an entity.
fn decode_entity(s: &str) -> (Option<char>, usize) {
    // Entities are short: look for the `;` in the next few bytes only, so a
    // text of many `&` stays linear.
    let Some(semi) = s.as_bytes().iter().take(13).position(|&c| c == b';') else {
        return (None, 1);
    };
    let name = &s[1..semi];
    let c = match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        "nbsp" => Some('\u{a0}'),
        _ => {
            if let Some(hex) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
            } else if let Some(dec) = name.strip_prefix('#') {
                dec.parse::<u32>().ok().and_then(char::from_u32)
            } else {
                None
            }
        }
    };
    match c {
        Some(c) => (Some(c), semi + 1),
        None => (None, 1),
    }
}

// ---------------------------------------------------------------------------
// OSCAR units.
// ---------------------------------------------------------------------------

/// Capability GUIDs of rendezvous proposals (protocols.md §3, channel 2).
pub mod cap {
    const fn guid(prefix: [u8; 4]) -> [u8; 16] {
        [
            prefix[0], prefix[1], prefix[2], prefix[3], 0x4C, 0x7F, 0x11, 0xD1, 0x82, 0x22, 0x44,
            0x45, 0x53, 0x54, 0x00, 0x00,
        ]
    }
    pub const SEND_FILE: [u8; 16] = guid([0x09, 0x46, 0x13, 0x43]);
    pub const DIRECT_IM: [u8; 16] = guid([0x09, 0x46, 0x13, 0x45]);
    pub const GET_FILE: [u8; 16] = guid([0x09, 0x46, 0x13, 0x48]);
    pub const TALK: [u8; 16] = guid([0x09, 0x46, 0x13, 0x41]);
    pub const ICQ_RELAY: [u8; 16] = guid([0x09, 0x46, 0x13, 0x49]);
    pub const VIDEO: [u8; 16] = guid([0x09, 0x46, 0x01, 0x00]);
    pub const LIVE_VIDEO: [u8; 16] = guid([0x09, 0x46, 0x01, 0x01]);
    pub const CAMERA: [u8; 16] = guid([0x09, 0x46, 0x01, 0x02]);
}

/// What a rendezvous proposal asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rendezvous {
    /// SendFile: name bytes (no charset on the wire) and total size.
    File {
        name: Vec<u8>,
        size: u64,
        count: u16,
    },
    /// GetFile (browse the peer's files): a file event without a name.
    GetFile,
    /// Video/AV/camera.
    Webcam,
    /// ICQ "type-2" message through the server relay.
    IcqText { text: Vec<u8>, utf8: bool },
    /// Direct IM, voice, chat invitations and the rest: no event.
    Other,
}

/// A message body of an ICBM or offline message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IcbmBody<'a> {
    /// Channel 1 text: the charset and the text bytes (borrowed unless
    /// several fragments had to be joined).
    Text {
        charset: u16,
        raw: Cow<'a, [u8]>,
        auto_reply: bool,
    },
    /// Channel 2 proposal (only initial proposals, request number 1).
    Rendezvous(Rendezvous),
    /// Channel 4 (old ICQ) text; `uin` = the sender's UIN from the block.
    Icq { uin: u32, text: Vec<u8> },
    /// Nothing to report (acks, cancels, unknown channels).
    None,
}

/// One OSCAR protocol unit that matters for events or identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OscarUnit<'a> {
    /// Channel 1 hello. `screen_name` = TLV 1 (legacy login), `cookie` = TLV 6
    /// (BOS/chat sign-on). The server's hello has neither.
    SignOn {
        screen_name: Option<&'a [u8]>,
        cookie: Option<&'a [u8]>,
        has_tlvs: bool,
    },
    /// Channel 4 or 0017/0003: the login server names the user and hands a
    /// cookie for the BOS connection.
    AuthReply {
        screen_name: Option<&'a [u8]>,
        cookie: Option<&'a [u8]>,
    },
    /// 0017/0002 or 0017/0006 (c→s): the screen name logging in.
    AuthRequest { screen_name: &'a [u8] },
    /// 0001/000F (s→c): own user info, starts with the local screen name.
    SelfInfo { screen_name: &'a [u8] },
    /// 0004/0006 (c→s): a message to `peer`.
    IcbmSend { peer: &'a [u8], body: IcbmBody<'a> },
    /// 0004/0007 (s→c): a message from `peer`.
    IcbmRecv { peer: &'a [u8], body: IcbmBody<'a> },
    /// 0004/0014 (both): typing notice about the conversation with `peer`.
    Typing { peer: &'a [u8], event: u16 },
    /// 0015/0003 meta 0x41 (s→c): an ICQ offline message.
    OfflineMsg {
        owner: u32,
        sender: u32,
        text: Vec<u8>,
    },
    /// 000E/0002 (s→c, chat connection): the room's name (TLV 0x006A), or
    /// its cookie string (`!aol://2719:10-4-<room>`) when unnamed.
    ChatRoomInfo { name: &'a [u8] },
    /// 000E/0005 (c→s): a line the local user writes to the room.
    ChatSend { text: ChatText<'a> },
    /// 000E/0006 (s→c): a line in the room from `sender` (the local user's
    /// own line comes back this way when reflection is on).
    ChatRecv {
        sender: &'a [u8],
        text: ChatText<'a>,
    },
    /// Anything else (keep-alives, other SNACs).
    Other { channel: u8 },
}

/// The message block (TLV 5) of a chat-room line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChatText<'a> {
    pub bytes: &'a [u8],
    /// The charset name of inner TLV 2 (`us-ascii`, `unicode-2-0`, `utf-8`…).
    pub charset: &'a [u8],
}

impl ChatText<'_> {
    /// Decode by the charset name: `unicode-2-0` is UTF-16BE, the rest 8-bit.
    pub fn decode(&self) -> Text<'_> {
        if self.charset.eq_ignore_ascii_case(b"unicode-2-0") {
            decode_charset(2, self.bytes)
        } else {
            decode_8bit(self.bytes)
        }
    }
}

/// Decode one FLAP into the unit it carries. Returns `None` only when the
/// bytes are not a FLAP at all; damaged SNACs become `Other`.
pub fn parse_unit<'a>(flap: &Flap<'a>) -> OscarUnit<'a> {
    let other = OscarUnit::Other {
        channel: flap.channel,
    };
    match flap.channel {
        1 => {
            let mut r = Reader::new(flap.data);
            if r.u32() != Some(1) {
                return other;
            }
            let tlvs = r.rest();
            OscarUnit::SignOn {
                screen_name: Tlvs::find(tlvs, 1),
                cookie: Tlvs::find(tlvs, 6),
                has_tlvs: !tlvs.is_empty(),
            }
        }
        4 => {
            let screen_name = Tlvs::find(flap.data, 1);
            let cookie = Tlvs::find(flap.data, 6);
            if screen_name.is_none() && cookie.is_none() {
                return other;
            }
            OscarUnit::AuthReply {
                screen_name,
                cookie,
            }
        }
        2 => Snac::parse(flap.data).map_or(other.clone(), |s| parse_snac(&s).unwrap_or(other)),
        _ => other,
    }
}

fn parse_snac<'a>(s: &Snac<'a>) -> Option<OscarUnit<'a>> {
    match (s.family, s.subtype) {
        (0x0001, 0x000F) => {
            let mut r = Reader::new(s.data);
            Some(OscarUnit::SelfInfo {
                screen_name: r.bstr()?,
            })
        }
        (0x0017, 0x0002) | (0x0017, 0x0006) => Some(OscarUnit::AuthRequest {
            screen_name: Tlvs::find(s.data, 1)?,
        }),
        (0x0017, 0x0003) => Some(OscarUnit::AuthReply {
            screen_name: Tlvs::find(s.data, 1),
            cookie: Tlvs::find(s.data, 6),
        }),
        (0x0004, 0x0006) => {
            let mut r = Reader::new(s.data);
            r.take(8)?;
            let channel = r.u16()?;
            let peer = r.bstr()?;
            let tlvs = r.rest();
            Some(OscarUnit::IcbmSend {
                peer,
                body: parse_icbm_body(channel, tlvs),
            })
        }
        (0x0004, 0x0007) => {
            let mut r = Reader::new(s.data);
            r.take(8)?;
            let channel = r.u16()?;
            let peer = r.bstr()?;
            r.u16()?; // warning level
            let count = r.u16()?;
            // Skip the user-info TLVs by count: their types overlap the
            // message TLVs (protocols.md §3).
            for _ in 0..count {
                r.u16()?;
                let n = usize::from(r.u16()?);
                r.take(n)?;
            }
            Some(OscarUnit::IcbmRecv {
                peer,
                body: parse_icbm_body(channel, r.rest()),
            })
        }
        (0x0004, 0x0014) => {
            let mut r = Reader::new(s.data);
            r.take(8)?;
            r.u16()?;
            let peer = r.bstr()?;
            let event = r.u16()?;
            Some(OscarUnit::Typing { peer, event })
        }
        (0x0015, 0x0003) => parse_offline(s.data),
        (0x000E, 0x0002) => {
            let mut r = Reader::new(s.data);
            r.u16()?; // exchange
            let cookie = r.bstr()?;
            r.u16()?; // instance
            r.u8()?; // detail level
            let count = r.u16()?;
            let mut name = None;
            for _ in 0..count {
                let t = r.u16()?;
                let n = usize::from(r.u16()?);
                let v = r.take(n)?;
                if t == 0x006A {
                    name = Some(v);
                }
            }
            Some(OscarUnit::ChatRoomInfo {
                name: name.unwrap_or(cookie),
            })
        }
        (0x000E, 0x0005) => {
            let mut r = Reader::new(s.data);
            r.take(8)?;
            r.u16()?; // channel 3
            Some(OscarUnit::ChatSend {
                text: chat_text(Tlvs::find(r.rest(), 5)?)?,
            })
        }
        (0x000E, 0x0006) => {
            let mut r = Reader::new(s.data);
            r.take(8)?;
            r.u16()?;
            let tlvs = r.rest();
            let sender = Reader::new(Tlvs::find(tlvs, 3)?).bstr()?;
            Some(OscarUnit::ChatRecv {
                sender,
                text: chat_text(Tlvs::find(tlvs, 5)?)?,
            })
        }
        _ => None,
    }
}

fn parse_icbm_body(channel: u16, tlvs: &[u8]) -> IcbmBody<'_> {
    match channel {
        1 => {
            let Some(data) = Tlvs::find(tlvs, 2) else {
                return IcbmBody::None;
            };
            let auto_reply = Tlvs::find(tlvs, 4).is_some();
            let mut raw: Cow<'_, [u8]> = Cow::Borrowed(&[]);
            let mut charset = None;
            let mut r = Reader::new(data);
            while let (Some(id), Some(_ver), Some(len)) = (r.u8(), r.u8(), r.u16()) {
                let Some(frag) = r.take(usize::from(len)) else {
                    break;
                };
                if id == 1 {
                    let mut f = Reader::new(frag);
                    let (Some(cs), Some(_subset)) = (f.u16(), f.u16()) else {
                        continue;
                    };
                    // Several text fragments concatenate; the first charset wins.
                    if charset.is_none() {
                        raw = Cow::Borrowed(f.rest());
                    } else {
                        raw.to_mut().extend_from_slice(f.rest());
                    }
                    charset.get_or_insert(cs);
                }
            }
            match charset {
                Some(charset) => IcbmBody::Text {
                    charset,
                    raw,
                    auto_reply,
                },
                None => IcbmBody::None,
            }
        }
        2 => Tlvs::find(tlvs, 5)
            .and_then(parse_rendezvous)
            .map_or(IcbmBody::None, IcbmBody::Rendezvous),
        4 => {
            let Some(v) = Tlvs::find(tlvs, 5) else {
                return IcbmBody::None;
            };
            let mut r = Reader::new(v);
            let (Some(uin), Some(kind), Some(_flags), Some(len)) =
                (r.u32le(), r.u8(), r.u8(), r.u16le())
            else {
                return IcbmBody::None;
            };
            let text = r.take(usize::from(len)).unwrap_or(r.rest());
            let text = cut_nul(text);
            // Type 1 plain, 4 URL (fields split by 0xFE); others are not chat.
            match kind {
                1 => IcbmBody::Icq {
                    uin,
                    text: text.to_vec(),
                },
                4 => IcbmBody::Icq {
                    uin,
                    text: text
                        .iter()
                        .map(|&b| if b == 0xFE { b' ' } else { b })
                        .collect(),
                },
                _ => IcbmBody::None,
            }
        }
        _ => IcbmBody::None,
    }
}

fn chat_text(block: &[u8]) -> Option<ChatText<'_>> {
    Some(ChatText {
        bytes: Tlvs::find(block, 1)?,
        charset: Tlvs::find(block, 2).unwrap_or(b"us-ascii"),
    })
}

fn cut_nul(b: &[u8]) -> &[u8] {
    match memchr::memchr(0, b) {
        Some(i) => &b[..i],
        None => b,
    }
}

fn parse_rendezvous(v: &[u8]) -> Option<Rendezvous> {
    let mut r = Reader::new(v);
    let kind = r.u16()?;
    r.take(8)?;
    let cap: [u8; 16] = r.take(16)?.try_into().ok()?;
    let tlvs = r.rest();
    // Events only for the initial proposal (type 0, request number 1).
    if kind != 0 {
        return None;
    }
    if let Some(n) = Tlvs::find(tlvs, 0x000A) {
        if n.len() == 2 && u16::from_be_bytes([n[0], n[1]]) != 1 {
            return None;
        }
    }
    let svc = Tlvs::find(tlvs, 0x2711);
    Some(match cap {
        cap::SEND_FILE => {
            let svc = svc?;
            let mut s = Reader::new(svc);
            let _multi = s.u16()?;
            let count = s.u16()?;
            let size = s.u32()?;
            let name = cut_nul(s.rest()).to_vec();
            Rendezvous::File {
                name,
                size: u64::from(size),
                count,
            }
        }
        cap::GET_FILE => Rendezvous::GetFile,
        cap::VIDEO | cap::LIVE_VIDEO | cap::CAMERA => Rendezvous::Webcam,
        cap::ICQ_RELAY => parse_icq_relay(svc?).unwrap_or(Rendezvous::Other),
        _ => Rendezvous::Other,
    })
}

fn parse_icq_relay(v: &[u8]) -> Option<Rendezvous> {
    let mut r = Reader::new(v);
    let n = usize::from(r.u16le()?);
    let block = r.take(n)?;
    // Protocol version u16 then the plugin GUID: all zero = a normal message.
    if block.len() >= 18 && block[2..18].iter().any(|&b| b != 0) {
        return Some(Rendezvous::Other);
    }
    let n = usize::from(r.u16le()?);
    r.take(n)?;
    let kind = r.u8()?;
    let _flags = r.u8()?;
    r.u16le()?; // status
    r.u16le()?; // priority
    let len = usize::from(r.u16le()?);
    if kind != 1 {
        return Some(Rendezvous::Other);
    }
    let text = cut_nul(r.take(len)?).to_vec();
    // Optional colours then the "UTF-8" capability GUID string.
    let tail = r.rest();
    let utf8 = memchr::memmem::find(tail, b"0946134E-4C7F-11D1-8222-444553540000").is_some();
    Some(Rendezvous::IcqText { text, utf8 })
}

fn parse_offline(d: &[u8]) -> Option<OscarUnit<'static>> {
    let v = Tlvs::find(d, 1)?;
    let mut r = Reader::new(v);
    r.u16le()?; // chunk length
    let owner = r.u32le()?;
    let meta = r.u16le()?;
    if meta != 0x0041 {
        return None;
    }
    r.u16le()?; // request sequence
    let sender = r.u32le()?;
    r.take(6)?; // year u16, month, day, hour, minute
    let kind = r.u8()?;
    let _flags = r.u8()?;
    let len = usize::from(r.u16le()?);
    if kind != 1 && kind != 4 {
        return None;
    }
    let text = cut_nul(r.take(len).unwrap_or(r.rest())).to_vec();
    Some(OscarUnit::OfflineMsg {
        owner,
        sender,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn flap(channel: u8, seq: u16, data: &[u8]) -> Vec<u8> {
        let mut v = vec![0x2A, channel];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&(data.len() as u16).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn snac(family: u16, subtype: u16, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&family.to_be_bytes());
        v.extend_from_slice(&subtype.to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 0, 0, 1]);
        v.extend_from_slice(data);
        v
    }

    fn tlv(t: u16, v: &[u8]) -> Vec<u8> {
        let mut o = t.to_be_bytes().to_vec();
        o.extend_from_slice(&(v.len() as u16).to_be_bytes());
        o.extend_from_slice(v);
        o
    }

    #[test]
    fn unit_len_measures_and_rejects() {
        let u = flap(2, 1, &snac(4, 0x14, &[0; 12]));
        for n in 0..u.len() {
            assert_eq!(unit_len(&FlapFraming::ANY, &u[..n]), UnitLen::Incomplete);
        }
        assert_eq!(unit_len(&FlapFraming::ANY, &u), UnitLen::Complete(u.len()));
        assert_eq!(unit_len(&FlapFraming::ANY, b"* OK IMAP"), UnitLen::Bad);
        // Channel 6 does not exist; a SNAC frame shorter than a SNAC header.
        assert_eq!(
            unit_len(&FlapFraming::ANY, &[0x2A, 6, 0, 0, 0, 0]),
            UnitLen::Bad
        );
        assert_eq!(
            unit_len(&FlapFraming::ANY, &[0x2A, 2, 0, 0, 0, 4]),
            UnitLen::Bad
        );
    }

    #[test]
    fn hunt_uses_the_last_sequence_when_known() {
        let a = flap(2, 7, &snac(4, 6, &[1; 20]));
        // Right after the last seen FLAP (seq 5: one FLAP lost): accepted.
        let after = FlapFraming { after: Some(5) };
        assert_eq!(hunt(&after, &a), Hunt::Found(0));
        // A sequence behind the last one (a stale or fake header): not.
        let behind = FlapFraming { after: Some(9) };
        assert_eq!(hunt(&behind, &a), Hunt::Wait(a.len() - 5));
    }

    #[test]
    fn hunt_finds_chain_of_two_after_cut_unit() {
        let a = flap(2, 7, &snac(4, 6, &[1; 20]));
        let b = flap(2, 8, &snac(4, 6, &[2; 20]));
        let c = flap(2, 9, &snac(4, 6, &[3; 20]));
        let mut tail = a[10..].to_vec();
        let at = tail.len();
        tail.extend_from_slice(&b);
        tail.extend_from_slice(&c);
        assert_eq!(hunt(&FlapFraming::ANY, &tail), Hunt::Found(at));
    }

    #[test]
    fn hunt_rejects_candidate_whose_successor_does_not_chain() {
        let mut junk = vec![0x2A, 2, 0, 5, 0, 10];
        junk.extend_from_slice(&[0x41; 10]);
        junk.extend_from_slice(&[0x2A, 2, 0, 9, 0, 10]); // seq 9, not 6
        let at = junk.len();
        junk.extend(flap(2, 20, &snac(4, 6, &[0; 10])));
        junk.extend(flap(2, 21, &snac(4, 6, &[0; 10])));
        assert_eq!(hunt(&FlapFraming::ANY, &junk), Hunt::Found(at));
    }

    #[test]
    fn hunt_prefers_a_later_confirmed_chain_over_an_unconfirmable_candidate() {
        // A fake header announcing a long body, then two real chained FLAPs.
        let mut b = vec![0x2A, 2, 0x12, 0x34, 0xF0, 0x00];
        b.extend_from_slice(&[0x41; 20]);
        let at = b.len();
        b.extend(flap(2, 20, &snac(4, 6, &[0; 10])));
        b.extend(flap(2, 21, &snac(4, 6, &[0; 10])));
        assert_eq!(hunt(&FlapFraming::ANY, &b), Hunt::Found(at));
        // Alone, the fake candidate is waited for.
        assert_eq!(hunt(&FlapFraming::ANY, &b[..at]), Hunt::Wait(0));
    }

    #[test]
    fn many_ampersands_stay_linear_and_literal() {
        let s = "&".repeat(100_000);
        assert_eq!(html_to_text(&s), s);
    }

    #[test]
    fn hunt_accepts_exact_segment_and_waits_for_confirmation() {
        let a = flap(2, 7, &snac(4, 6, &[1; 20]));
        assert_eq!(hunt(&FlapFraming::ANY, &a), Hunt::Found(0));
        // Not at the start: cannot confirm, keep it.
        let mut b = vec![0x41, 0x42];
        b.extend_from_slice(&a);
        assert_eq!(hunt(&FlapFraming::ANY, &b), Hunt::Wait(2));
        assert_eq!(hunt(&FlapFraming::ANY, &a[..20]), Hunt::Wait(0));
        // Nothing plausible: drop all but a possible header prefix.
        assert_eq!(hunt(&FlapFraming::ANY, &[0x41; 100]), Hunt::Wait(95));
    }

    #[test]
    fn parses_icbm_send_channel1_utf16() {
        let mut frag = vec![0x05, 0x01, 0x00, 0x01, 0x01];
        let text: Vec<u8> = "héllo"
            .encode_utf16()
            .flat_map(|u| u.to_be_bytes())
            .collect();
        frag.extend_from_slice(&[0x01, 0x01]);
        frag.extend_from_slice(&((text.len() + 4) as u16).to_be_bytes());
        frag.extend_from_slice(&[0, 2, 0, 0]);
        frag.extend_from_slice(&text);
        let mut d = vec![0u8; 8];
        d.extend_from_slice(&[0, 1, 5]);
        d.extend_from_slice(b"12345");
        d.extend(tlv(2, &frag));
        d.extend(tlv(3, &[]));
        let f = flap(2, 1, &snac(4, 6, &d));
        let unit = parse_unit(&Flap::parse(&f).unwrap());
        let OscarUnit::IcbmSend { peer, body } = unit else {
            panic!("{unit:?}")
        };
        assert_eq!(peer, b"12345");
        let IcbmBody::Text { charset, raw, .. } = body else {
            panic!()
        };
        assert_eq!(decode_charset(charset, &raw).text, "héllo");
    }

    #[test]
    fn recv_skips_user_info_tlvs_by_count() {
        let mut d = vec![0u8; 8];
        d.extend_from_slice(&[0, 1, 3]);
        d.extend_from_slice(b"bob");
        d.extend_from_slice(&[0, 0, 0, 1]);
        // A user-info TLV of type 2 that must not be taken as the message.
        d.extend(tlv(2, b"not a message"));
        let mut frag = vec![1, 1, 0, 6, 0, 0, 0, 0];
        frag.extend_from_slice(b"hi");
        d.extend(tlv(2, &frag));
        let f = flap(2, 1, &snac(4, 7, &d));
        let unit = parse_unit(&Flap::parse(&f).unwrap());
        assert_eq!(
            unit,
            OscarUnit::IcbmRecv {
                peer: b"bob",
                body: IcbmBody::Text {
                    charset: 0,
                    raw: Cow::Borrowed(b"hi"),
                    auto_reply: false
                }
            }
        );
    }

    #[test]
    fn snac_extra_block_is_skipped() {
        let mut d = vec![0, 4, 0, 0x14, 0x80, 0, 0, 0, 0, 1, 0, 2, 0xAA, 0xBB];
        d.extend_from_slice(&[0; 8]);
        d.extend_from_slice(&[0, 1, 2]);
        d.extend_from_slice(b"me");
        d.extend_from_slice(&[0, 2]);
        let f = flap(2, 1, &d);
        assert_eq!(
            parse_unit(&Flap::parse(&f).unwrap()),
            OscarUnit::Typing {
                peer: b"me",
                event: 2
            }
        );
    }

    #[test]
    fn rendezvous_file_offer_and_webcam() {
        let mut v = vec![0, 0];
        v.extend_from_slice(&[7; 8]);
        v.extend_from_slice(&cap::SEND_FILE);
        v.extend(tlv(0x0A, &[0, 1]));
        let mut svc = vec![0, 1, 0, 1, 0, 0, 0x30, 0x39];
        svc.extend_from_slice(b"report.pdf\0junk");
        v.extend(tlv(0x2711, &svc));
        let mut d = vec![0u8; 8];
        d.extend_from_slice(&[0, 2, 3]);
        d.extend_from_slice(b"bob");
        d.extend(tlv(5, &v));
        let f = flap(2, 1, &snac(4, 6, &d));
        let OscarUnit::IcbmSend { body, .. } = parse_unit(&Flap::parse(&f).unwrap()) else {
            panic!()
        };
        assert_eq!(
            body,
            IcbmBody::Rendezvous(Rendezvous::File {
                name: b"report.pdf".to_vec(),
                size: 12345,
                count: 1
            })
        );
        // A webcam proposal; and a later request number (2) is no event.
        let mut w = vec![0, 0];
        w.extend_from_slice(&[7; 8]);
        w.extend_from_slice(&cap::CAMERA);
        assert_eq!(parse_rendezvous(&w), Some(Rendezvous::Webcam));
        w.extend(tlv(0x0A, &[0, 2]));
        assert_eq!(parse_rendezvous(&w), None);
    }

    #[test]
    fn channel4_and_offline_messages() {
        let mut v = 123456u32.to_le_bytes().to_vec();
        v.extend_from_slice(&[1, 0, 4, 0]);
        v.extend_from_slice(b"abc\0");
        assert_eq!(
            parse_icbm_body(4, &tlv(5, &v)),
            IcbmBody::Icq {
                uin: 123456,
                text: b"abc".to_vec()
            }
        );
        let mut m = Vec::new();
        m.extend_from_slice(&0u16.to_le_bytes());
        m.extend_from_slice(&111u32.to_le_bytes());
        m.extend_from_slice(&0x41u16.to_le_bytes());
        m.extend_from_slice(&2u16.to_le_bytes());
        m.extend_from_slice(&222u32.to_le_bytes());
        m.extend_from_slice(&[0xD0, 0x07, 1, 2, 3, 4, 1, 0, 3, 0]);
        m.extend_from_slice(b"yo\0");
        assert_eq!(
            parse_offline(&tlv(1, &m)),
            Some(OscarUnit::OfflineMsg {
                owner: 111,
                sender: 222,
                text: b"yo".to_vec()
            })
        );
    }

    #[test]
    fn html_stripping_and_entities() {
        assert_eq!(
            html_to_text("<HTML><BODY><FONT>HI!</FONT></BODY></HTML>"),
            "HI!"
        );
        assert_eq!(
            html_to_text("a<br>b &lt;c&gt; &amp;amp; &#65;&#x42;"),
            "a\nb <c> &amp; AB"
        );
        assert_eq!(html_to_text("1 < 2 & x"), "1 < 2 & x");
        assert_eq!(html_to_text("<P>a</p><BR/>b<!-- c -->"), "a\n\nb");
        assert_eq!(html_to_text("a <b"), "a <b");
        assert!(matches!(html_to_text("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn truncated_inputs_never_panic() {
        let f = flap(2, 1, &snac(4, 7, &[0; 30]));
        for n in 0..f.len() {
            if let Some(fl) = Flap::parse(&f[..n]) {
                let _ = parse_unit(&fl);
            }
            let _ = Snac::parse(&f[6..n.max(6)]);
            let _ = Tlvs::new(&f[..n]).count();
        }
    }
}
