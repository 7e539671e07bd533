//! YMSG wire parser: pure functions from bytes to Yahoo! Messenger packets.
//!
//! Owns the 20-byte header, packet framing, the resync rule after a gap, the
//! ordered key/value payload (keys repeat: a list, not a map), Yahoo markup
//! stripping and text decoding. No I/O, no clock, no session state; never
//! panics on wire bytes; allocations are bounded by the 16-bit packet length
//! (protocols.md §2; services and keys as summarised there from libpurple
//! `yahoo/` and imspector-0.9 `yahooprotocolplugin.cpp`).

/// `YMSG` + version u16 + vendor u16 + length u16 + service u16 + status u32 + session u32.
pub const HEADER_LEN: usize = 20;
pub const MAGIC: &[u8; 4] = b"YMSG";
/// The largest packet the 16-bit length allows.
pub const MAX_PACKET: usize = HEADER_LEN + 0xFFFF;
/// Most key/value pairs kept per packet.
pub const MAX_PAIRS: usize = 4096;
/// The key/value separator.
pub const SEP: [u8; 2] = [0xC0, 0x80];

pub mod service {
    pub const LOGON: u16 = 0x01;
    pub const MESSAGE: u16 = 0x06;
    pub const CONF_MSG: u16 = 0x1D;
    pub const FILE_TRANSFER: u16 = 0x46;
    pub const NOTIFY: u16 = 0x4B;
    pub const AUTH_RESP: u16 = 0x54;
    pub const AUTH: u16 = 0x57;
    pub const P2P_FILE_XFER: u16 = 0x4D;
    pub const VERIFY: u16 = 0x4C;
    pub const CHAT_COMMENT: u16 = 0xA8;
    pub const FILE_TRANS_15: u16 = 0xDC;
}

/// The packet header (all fields big-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub vendor: u16,
    pub len: u16,
    pub service: u16,
    pub status: u32,
    pub session: u32,
}

impl Header {
    pub fn parse(b: &[u8]) -> Option<Header> {
        let h = b.get(..HEADER_LEN)?;
        if &h[..4] != MAGIC {
            return None;
        }
        let u16be = |o: usize| u16::from_be_bytes([h[o], h[o + 1]]);
        let u32be = |o: usize| u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        Some(Header {
            version: u16be(4),
            vendor: u16be(6),
            len: u16be(8),
            service: u16be(10),
            status: u32be(12),
            session: u32be(16),
        })
    }

    /// Header and payload bytes.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.len)
    }

    /// A header worth resynchronising on: versions seen in the wild
    /// (up to 0x13, web messenger 0x65), pad 0, a service below 0x300.
    pub fn plausible(&self) -> bool {
        self.version <= 0x100 && self.vendor == 0 && self.service < 0x300
    }
}

/// Where the next packet ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    Unit(usize),
    NeedMore,
    Invalid,
}

/// Cut the next packet from `buf`.
pub fn frame_packet(buf: &[u8]) -> Frame {
    // A fixed-size comparison (not a call to memcmp) on the hot path.
    let magic_ok = match buf.get(..4).and_then(|m| <&[u8; 4]>::try_from(m).ok()) {
        Some(m) => m == MAGIC,
        None => MAGIC.starts_with(buf),
    };
    if !magic_ok {
        return Frame::Invalid;
    }
    let Some(h) = Header::parse(buf) else {
        return Frame::NeedMore;
    };
    let total = h.total_len();
    if buf.len() >= total {
        Frame::Unit(total)
    } else {
        Frame::NeedMore
    }
}

/// Where decoding can start again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boundary {
    At(usize),
    /// A candidate starts here; more bytes are needed to judge it.
    NeedMore(usize),
    Skip(usize),
}

/// The payload starts like key/value pairs: a decimal key of 1–5 digits and
/// the separator (or the payload is empty). `None` when too short to tell.
fn payload_plausible(payload: &[u8], declared: usize) -> Option<bool> {
    if declared == 0 {
        return Some(true);
    }
    let look = declared.min(7);
    if payload.len() < look {
        return None;
    }
    let digits = payload.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 5 {
        return Some(false);
    }
    match payload.get(digits..digits + 2) {
        Some(s) => Some(s == SEP),
        None => Some(digits >= payload.len().min(declared)),
    }
}

/// Find the next `YMSG` header whose fields are plausible and whose payload
/// starts with a key/value pair.
pub fn resync(buf: &[u8]) -> Boundary {
    let mut from = 0;
    while from < buf.len() {
        let Some(i) = memchr::memmem::find(&buf[from..], MAGIC).map(|i| i + from) else {
            // Keep a possible partial magic at the end.
            let keep = (1..4)
                .rev()
                .find(|&k| buf.len() >= k && buf[buf.len() - k..] == MAGIC[..k])
                .unwrap_or(0);
            return if keep > 0 {
                Boundary::NeedMore(buf.len() - keep)
            } else {
                Boundary::Skip(buf.len())
            };
        };
        let Some(h) = Header::parse(&buf[i..]) else {
            return Boundary::NeedMore(i);
        };
        if h.plausible() {
            let payload = &buf[i + HEADER_LEN..];
            match payload_plausible(payload, usize::from(h.len)) {
                Some(true) => return Boundary::At(i),
                None => return Boundary::NeedMore(i),
                Some(false) => {}
            }
        }
        from = i + 1;
    }
    Boundary::Skip(buf.len())
}

/// The web (Flash) client's form: an optional `content-length: N` block,
/// then `<Ymsg Command=".." Status=".." SessionId="..">k^$v^$...</Ymsg>`
/// and a NUL, with `^$` in place of `C0 80` (imspector-0.9
/// `yahooprotocolplugin.cpp`, summarised in protocols.md §2 "Variants").
pub const WEB_OPEN: &[u8] = b"<Ymsg";
const WEB_CLOSE: &[u8] = b"</Ymsg>";
const WEB_SEP: &[u8] = b"^$";
const WEB_LENGTH: &[u8] = b"content-length:";

fn starts_with_prefix_ci(buf: &[u8], pat: &[u8]) -> bool {
    let n = buf.len().min(pat.len());
    buf[..n].eq_ignore_ascii_case(&pat[..n])
}

/// Cut the next unit, binary (`YMSG`) or web form (`<Ymsg`).
pub fn frame_unit(buf: &[u8]) -> Frame {
    match buf.first() {
        None => Frame::NeedMore,
        Some(b'Y') => frame_packet(buf),
        Some(b'<') | Some(b'c') | Some(b'C') => frame_web(buf),
        Some(_) => Frame::Invalid,
    }
}

/// Cut a web-form unit.
pub fn frame_web(buf: &[u8]) -> Frame {
    let mut start = 0;
    if starts_with_prefix_ci(buf, WEB_LENGTH) && !buf.starts_with(b"<") {
        let window = &buf[..buf.len().min(64)];
        match memchr::memmem::find(window, b"\r\n\r\n") {
            Some(i) => start = i + 4,
            None if buf.len() < 64 => return Frame::NeedMore,
            None => return Frame::Invalid,
        }
    }
    let body = &buf[start..];
    if !starts_with_prefix_ci(body, WEB_OPEN) {
        return Frame::Invalid;
    }
    let limit = body.len().min(MAX_PACKET);
    match memchr::memmem::find(&body[..limit], WEB_CLOSE) {
        Some(i) => {
            let mut end = start + i + WEB_CLOSE.len();
            if buf.get(end) == Some(&0) {
                end += 1;
            }
            Frame::Unit(end)
        }
        None if body.len() < MAX_PACKET => Frame::NeedMore,
        None => Frame::Invalid,
    }
}

/// The value of `name="..."` inside a tag.
fn web_attr<'a>(tag: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let mut from = 0;
    while let Some(i) = memchr::memmem::find(&tag[from..], name.as_bytes()) {
        let at = from + i;
        let rest = &tag[at + name.len()..];
        if at > 0 && tag[at - 1] == b' ' && rest.starts_with(b"=\"") {
            let v = &rest[2..];
            return Some(&v[..memchr::memchr(b'"', v).unwrap_or(v.len())]);
        }
        from = at + 1;
    }
    None
}

fn web_number(tag: &[u8], name: &str) -> u32 {
    web_attr(tag, name)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0)
}

/// Parse a web-form unit into a [`Packet`] (header fields from the tag).
pub fn parse_web(unit: &[u8]) -> Option<Packet<'_>> {
    parse_web_with(unit, Vec::new())
}

/// [`parse_web`] filling `pairs` (an empty list whose allocation is reused).
fn parse_web_with<'a>(unit: &'a [u8], mut pairs: Vec<(u32, &'a [u8])>) -> Option<Packet<'a>> {
    let open = memchr::memmem::find(unit, WEB_OPEN)?;
    let tag_end = open + memchr::memchr(b'>', &unit[open..])?;
    let tag = &unit[open..tag_end];
    let close = tag_end + memchr::memmem::find(&unit[tag_end..], WEB_CLOSE)?;
    let body = &unit[tag_end + 1..close];
    pairs.clear();
    let mut fields = body.split(|&b| b == 0).next().unwrap_or_default();
    while !fields.is_empty() && pairs.len() < MAX_PAIRS {
        let Some(k_end) = memchr::memmem::find(fields, WEB_SEP) else {
            break;
        };
        let key = &fields[..k_end];
        let rest = &fields[k_end + 2..];
        let (value, next) = match memchr::memmem::find(rest, WEB_SEP) {
            Some(v_end) => (&rest[..v_end], &rest[v_end + 2..]),
            None => (rest, &rest[rest.len()..]),
        };
        fields = next;
        if let Some(k) = decimal_key(key) {
            pairs.push((k, value));
        }
    }
    Some(Packet {
        header: Header {
            version: web_number(tag, "Version") as u16,
            vendor: 0,
            len: body.len().min(0xFFFF) as u16,
            service: web_number(tag, "Command") as u16,
            status: web_number(tag, "Status"),
            session: web_number(tag, "SessionId"),
        },
        pairs,
    })
}

/// Parse a whole unit of either form.
pub fn parse_unit(unit: &[u8]) -> Option<Packet<'_>> {
    parse_unit_with(unit, Vec::new())
}

/// [`parse_unit`] filling `pairs` (an empty list whose allocation is reused:
/// a session parses every packet into the same list).
pub fn parse_unit_with<'a>(unit: &'a [u8], pairs: Vec<(u32, &'a [u8])>) -> Option<Packet<'a>> {
    if unit.starts_with(MAGIC) {
        Packet::parse_with(unit, pairs)
    } else {
        parse_web_with(unit, pairs)
    }
}

/// The next web-form start (`<Ymsg` followed by a space and an attribute).
fn resync_web(buf: &[u8]) -> Boundary {
    let mut from = 0;
    while from < buf.len() {
        let Some(i) = memchr::memmem::find(&buf[from..], WEB_OPEN).map(|i| i + from) else {
            let keep = (1..WEB_OPEN.len())
                .rev()
                .find(|&k| buf.len() >= k && buf[buf.len() - k..] == WEB_OPEN[..k])
                .unwrap_or(0);
            return if keep > 0 {
                Boundary::NeedMore(buf.len() - keep)
            } else {
                Boundary::Skip(buf.len())
            };
        };
        let tag = &buf[i..buf.len().min(i + 64)];
        if tag.len() < 16 {
            return Boundary::NeedMore(i);
        }
        if tag.get(5) == Some(&b' ') && memchr::memmem::find(tag, b"Command=\"").is_some() {
            return Boundary::At(i);
        }
        from = i + 1;
    }
    Boundary::Skip(buf.len())
}

/// The next unit start of either form: the earliest candidate wins.
pub fn resync_unit(buf: &[u8]) -> Boundary {
    let pos = |b: Boundary| match b {
        Boundary::At(p) | Boundary::NeedMore(p) => (p, 0),
        Boundary::Skip(n) => (n, 1),
    };
    let (a, b) = (resync(buf), resync_web(buf));
    let (pa, ka) = pos(a);
    let (pb, kb) = pos(b);
    if (ka, pa) <= (kb, pb) && (ka == 0 || pa <= pb) {
        a
    } else {
        b
    }
}

fn decimal_key(key: &[u8]) -> Option<u32> {
    if key.is_empty() || key.len() > 9 {
        return None;
    }
    let mut n = 0u32;
    for &d in key {
        let digit = d.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n = n * 10 + u32::from(digit);
    }
    Some(n)
}

/// One packet: its header and its ordered key/value pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub header: Header,
    pub pairs: Vec<(u32, &'a [u8])>,
}

impl<'a> Packet<'a> {
    /// Parse a whole packet as cut by [`frame_packet`]. Pairs whose key is not
    /// a number are dropped; a trailing key without value is ignored.
    pub fn parse(unit: &'a [u8]) -> Option<Packet<'a>> {
        Packet::parse_with(unit, Vec::new())
    }

    /// [`Packet::parse`] filling `pairs` (an empty list whose allocation is reused).
    pub fn parse_with(unit: &'a [u8], mut pairs: Vec<(u32, &'a [u8])>) -> Option<Packet<'a>> {
        let header = Header::parse(unit)?;
        let payload = unit.get(HEADER_LEN..header.total_len())?;
        pairs.clear();
        parse_pairs_into(payload, &mut pairs);
        Some(Packet { header, pairs })
    }

    /// The first value of `key`.
    pub fn get(&self, key: u32) -> Option<&'a [u8]> {
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    pub fn get_str(&self, key: u32) -> Option<&'a str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// The offsets of the `C0 80` separators of a payload, in order. Eight
/// bytes are looked at together: a word's `C0` bytes come out of the exact
/// zero-byte test on the word XOR `C0…C0`, so a packet's dozen separators
/// cost one pass instead of one search each. `C0` is rare elsewhere (it is
/// never valid UTF-8), so each candidate's next byte is simply checked.
struct Separators<'a> {
    payload: &'a [u8],
    /// Offset of the word `mask` belongs to.
    word: usize,
    /// One high bit per `C0` byte of that word not yet reported.
    mask: u64,
}

impl<'a> Separators<'a> {
    fn new(payload: &'a [u8]) -> Self {
        Separators {
            payload,
            word: 0,
            mask: c0_bytes(word_at(payload, 0)),
        }
    }
}

/// The eight bytes at `at` as a little-endian word, zero-padded past the end
/// (zero is not `C0`).
fn word_at(b: &[u8], at: usize) -> u64 {
    let word = |i: usize| {
        b.get(i..i + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map(u64::from_le_bytes)
    };
    if let Some(w) = word(at) {
        return w;
    }
    // The last word of a payload: the payload's last eight bytes, shifted
    // so that byte `at` comes first (no copy into a padded buffer).
    let past = (at + 8).saturating_sub(b.len());
    if let Some(last) = b.len().checked_sub(8).and_then(word) {
        return last.checked_shr(8 * past as u32).unwrap_or(0);
    }
    let mut w = [0u8; 8];
    for (d, s) in w.iter_mut().zip(b.get(at..).unwrap_or_default()) {
        *d = *s;
    }
    u64::from_le_bytes(w)
}

/// The high bit of each byte of `w` that is `C0`, and no other bit.
fn c0_bytes(w: u64) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let y = w ^ 0xC0C0_C0C0_C0C0_C0C0;
    // Per byte, (y & 7F) + 7F sets the high bit unless the low bits are all
    // zero, and never carries into the next byte.
    !(((y & LOW7) + LOW7) | y | LOW7)
}

impl Iterator for Separators<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        loop {
            while self.mask != 0 {
                let at = self.word + (self.mask.trailing_zeros() / 8) as usize;
                self.mask &= self.mask - 1;
                if self.payload.get(at + 1) == Some(&SEP[1]) {
                    return Some(at);
                }
            }
            self.word += 8;
            if self.word >= self.payload.len() {
                return None;
            }
            self.mask = c0_bytes(word_at(self.payload, self.word));
        }
    }
}

/// Split `k C0 80 v C0 80 ...` into ordered pairs.
pub fn parse_pairs(payload: &[u8]) -> Vec<(u32, &[u8])> {
    let mut out = Vec::new();
    parse_pairs_into(payload, &mut out);
    out
}

/// [`parse_pairs`] appending to `out` (a list kept across packets, so that
/// its allocation is reused). A value runs to the next separator or to the
/// end of the payload; a trailing key without separator is ignored; at most
/// [`MAX_PAIRS`] pairs are kept.
pub fn parse_pairs_into<'a>(payload: &'a [u8], out: &mut Vec<(u32, &'a [u8])>) {
    let mut start = 0usize;
    let mut key: Option<&'a [u8]> = None;
    for sep in Separators::new(payload) {
        let field = &payload[start..sep];
        start = sep + SEP.len();
        match key.take() {
            None => key = Some(field),
            Some(k) => {
                if let Some(k) = decimal_key(k) {
                    out.push((k, field));
                    if out.len() >= MAX_PAIRS {
                        return;
                    }
                }
            }
        }
    }
    if let Some(k) = key.and_then(decimal_key) {
        out.push((k, &payload[start..]));
    }
}

/// Text decoded from a packet field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub text: String,
    pub encoding: &'static str,
    /// Some bytes could not be decoded exactly.
    pub lossy: bool,
}

/// UTF-8 when the packet says so (key 97 = 1) or the bytes are valid UTF-8;
/// else the legacy code page (cp1252).
pub fn decode(bytes: &[u8], utf8_flag: bool) -> Decoded {
    match std::str::from_utf8(bytes) {
        Ok(s) => Decoded {
            text: s.to_string(),
            encoding: "utf-8",
            lossy: false,
        },
        Err(_) if utf8_flag => Decoded {
            text: String::from_utf8_lossy(bytes).into_owned(),
            encoding: "utf-8",
            lossy: true,
        },
        Err(_) => {
            let (t, _, had_errors) = encoding_rs::WINDOWS_1252.decode(bytes);
            Decoded {
                text: t.into_owned(),
                encoding: "windows-1252",
                lossy: had_errors,
            }
        }
    }
}

/// Tags Yahoo clients wrap text in (formatting only).
const MARKUP_TAGS: [&str; 7] = ["font", "fade", "alt", "b", "i", "u", "s"];

/// Remove Yahoo markup: `ESC [ ... m` colour/style codes and
/// `<font …>`, `<fade …>`, `<alt …>`, `<b>`, `<i>`, `<u>`, `<s>` and their
/// closing tags. Other `<…>` text is left as typed.
pub fn strip_markup(text: &str) -> std::borrow::Cow<'_, str> {
    let b = text.as_bytes();
    // ESC and `<` are ASCII: every offset found here is a char boundary.
    let Some(mut at) = memchr::memchr2(0x1b, b'<', b) else {
        return std::borrow::Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len());
    let mut kept_from = 0;
    loop {
        let next_from = match markup_len(&b[at..]) {
            Some(n) => {
                out.push_str(&text[kept_from..at]);
                kept_from = at + n;
                at + n
            }
            None => at + 1,
        };
        match b
            .get(next_from..)
            .and_then(|r| memchr::memchr2(0x1b, b'<', r))
        {
            Some(i) => at = next_from + i,
            None => break,
        }
    }
    out.push_str(&text[kept_from..]);
    std::borrow::Cow::Owned(out)
}

/// Length of the Yahoo markup at the start of `b` (which starts with ESC or
/// `<`), or `None` when it is text as typed.
fn markup_len(b: &[u8]) -> Option<usize> {
    match b {
        // `ESC [` + up to 16 code characters (hex colour, `x` off, `l` link,
        // digits) + `m`.
        [0x1b, b'[', code @ ..] => {
            let n = code
                .iter()
                .take(17)
                .position(|c| !(c.is_ascii_hexdigit() || b"#xl;,".contains(c)))?;
            (code.get(n) == Some(&b'm')).then_some(2 + n + 1)
        }
        [b'<', tag @ ..] => {
            let end = memchr::memchr(b'>', tag)?;
            let inner = &tag[..end];
            let inner = &inner[inner.iter().take_while(|&&c| c == b'/').count()..];
            let name_len = inner.iter().take_while(|c| c.is_ascii_alphabetic()).count();
            let name = &inner[..name_len];
            let known = MARKUP_TAGS
                .iter()
                .any(|t| name.eq_ignore_ascii_case(t.as_bytes()));
            (known && inner.get(name_len).map_or(true, |&c| c == b' ')).then_some(1 + end + 1)
        }
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Build a packet (test helper, also used by the session tests).
    pub(crate) fn packet(service: u16, status: u32, pairs: &[(u32, &[u8])]) -> Vec<u8> {
        let mut payload = Vec::new();
        for (k, v) in pairs {
            payload.extend_from_slice(k.to_string().as_bytes());
            payload.extend_from_slice(&SEP);
            payload.extend_from_slice(v);
            payload.extend_from_slice(&SEP);
        }
        let mut p = MAGIC.to_vec();
        p.extend_from_slice(&0x0010u16.to_be_bytes());
        p.extend_from_slice(&0u16.to_be_bytes());
        p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        p.extend_from_slice(&service.to_be_bytes());
        p.extend_from_slice(&status.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(&payload);
        p
    }

    #[test]
    fn the_documented_example_parses() {
        let bytes: Vec<u8> = [
            &b"YMSG"[..],
            &[
                0x00, 0x10, 0x00, 0x00, 0x00, 0x21, 0x00, 0x06, 0x5a, 0x55, 0xaa, 0x56, 0x12, 0x34,
                0x56, 0x78,
            ],
            b"1\xc0\x80alice\xc0\x805\xc0\x80bob\xc0\x8097\xc0\x801\xc0\x8014\xc0\x80hi\xc0\x80",
        ]
        .concat();
        assert_eq!(frame_packet(&bytes), Frame::Unit(53));
        let p = Packet::parse(&bytes).unwrap();
        assert_eq!(p.header.service, service::MESSAGE);
        assert_eq!(p.header.status, 0x5A55_AA56);
        assert_eq!(p.header.session, 0x1234_5678);
        assert_eq!(p.get_str(1), Some("alice"));
        assert_eq!(p.get_str(5), Some("bob"));
        assert_eq!(p.get_str(14), Some("hi"));
        assert_eq!(
            bytes,
            packet(
                6,
                0x5A55_AA56,
                &[(1, b"alice"), (5, b"bob"), (97, b"1"), (14, b"hi")]
            )
        );
    }

    #[test]
    fn framing_asks_for_more_and_rejects_non_ymsg() {
        let p = packet(6, 0, &[(1, b"a")]);
        for cut in 0..p.len() {
            assert_eq!(frame_packet(&p[..cut]), Frame::NeedMore, "cut {cut}");
        }
        assert_eq!(frame_packet(b"YMSX"), Frame::Invalid);
        assert_eq!(frame_packet(b"GET /"), Frame::Invalid);
    }

    #[test]
    fn repeated_keys_keep_their_order_and_bad_keys_are_dropped() {
        let pairs = parse_pairs(b"4\xc0\x80a\xc0\x8014\xc0\x80x\xc0\x80zz\xc0\x80q\xc0\x804\xc0\x80b\xc0\x8014\xc0\x80\xc0\x80");
        assert_eq!(
            pairs,
            vec![(4, &b"a"[..]), (14, b"x"), (4, b"b"), (14, b"")]
        );
        assert_eq!(parse_pairs(b"14\xc0\x80no end"), vec![(14, &b"no end"[..])]);
        assert!(parse_pairs(b"").is_empty());
        assert!(parse_pairs(b"\xc0\x80\xc0\x80\xc0").is_empty());
    }

    #[test]
    fn separators_are_found_at_every_offset_and_across_words() {
        for len in 0..40 {
            for at in 0..len {
                let mut payload = vec![b'x'; len];
                payload[at] = 0xC0;
                if at + 1 < len {
                    payload[at + 1] = 0x80;
                }
                let seps: Vec<usize> = Separators::new(&payload).collect();
                let expected = if at + 1 < len { vec![at] } else { vec![] };
                assert_eq!(seps, expected, "len {len}, C0 at {at}");
            }
        }
        // Separators back to back, and a C0 C0 80 run, in the last word.
        let p = b"0123456789\xc0\x80\xc0\x80\xc0\xc0\x80";
        assert_eq!(Separators::new(p).collect::<Vec<_>>(), vec![10, 12, 15]);
    }

    #[test]
    fn hostile_pair_counts_stop_at_the_cap_and_bad_keys_do_not_count() {
        let pair = b"7\xc0\x80v\xc0\x80";
        let many: Vec<u8> = pair.repeat(MAX_PAIRS + 900);
        let pairs = parse_pairs(&many);
        assert_eq!(pairs.len(), MAX_PAIRS);
        assert!(pairs.iter().all(|&(k, v)| k == 7 && v == b"v"));
        // Thousands of pairs with keys that are not numbers are skipped
        // without taking a place: the good pair after them is kept.
        let mut junk = b"k\xc0\x80v\xc0\x80".repeat(MAX_PAIRS + 10);
        junk.extend_from_slice(b"14\xc0\x80kept\xc0\x80");
        assert_eq!(parse_pairs(&junk), vec![(14, &b"kept"[..])]);
        // Keys longer than nine digits are not numbers either.
        assert!(parse_pairs(b"1234567890\xc0\x80v\xc0\x80").is_empty());
        assert_eq!(
            parse_pairs(b"123456789\xc0\x80v\xc0\x80"),
            vec![(123_456_789, &b"v"[..])]
        );
    }

    #[test]
    fn a_reused_pair_list_is_emptied_first() {
        let big = packet(6, 0, &[(1, b"a"), (5, b"b"), (14, b"c"), (97, b"1")]);
        let small = packet(6, 0, &[(4, b"z")]);
        let p = Packet::parse_with(&big, Vec::new()).unwrap();
        assert_eq!(p.pairs.len(), 4);
        let q = Packet::parse_with(&small, p.pairs).unwrap();
        assert_eq!(q.pairs, vec![(4, &b"z"[..])]);
        let web = b"<Ymsg Command=\"6\" Status=\"1\">4^$w^$</Ymsg>";
        let r = parse_unit_with(web, q.pairs).unwrap();
        assert_eq!(r.pairs, vec![(4, &b"w"[..])]);
    }

    #[test]
    fn resync_finds_a_plausible_header() {
        let good = packet(6, 0, &[(4, b"bob"), (14, b"hi")]);
        let mut s = b"garbage YMSG\x00\x10\x01\x00".to_vec(); // vendor != 0: not plausible
        s.extend_from_slice(&[0; 12]);
        let at = s.len();
        s.extend_from_slice(&good);
        assert_eq!(resync(&s), Boundary::At(at));
        assert_eq!(resync(b"xxYMS"), Boundary::NeedMore(2));
        assert_eq!(resync(b"xxYMSG\x00"), Boundary::NeedMore(2));
        assert_eq!(resync(b"nothing here"), Boundary::Skip(12));
        // A header whose payload is not key/value pairs is passed over.
        let mut bad = packet(6, 0, &[]);
        bad[9] = 8;
        bad.extend_from_slice(b"\xff\xff\xff\xff\xff\xff\xff\xff");
        assert_eq!(resync(&bad), Boundary::Skip(bad.len()));
    }

    #[test]
    fn web_form_units_frame_and_parse() {
        let unit = b"content-length: 95\r\n\r\n<Ymsg Command=\"6\" Status=\"1\" Version=\"102\" VendorId=\"402\" SessionId=\"77\">1^$alice^$5^$bob^$14^$hi web^$</Ymsg>\0";
        assert_eq!(frame_unit(unit), Frame::Unit(unit.len()));
        for cut in 0..unit.len() - 1 {
            assert_eq!(frame_unit(&unit[..cut]), Frame::NeedMore, "cut {cut}");
        }
        let p = parse_unit(unit).unwrap();
        assert_eq!(
            (p.header.service, p.header.status, p.header.session),
            (6, 1, 77)
        );
        assert_eq!(p.get_str(14), Some("hi web"));
        assert_eq!(p.get_str(5), Some("bob"));
        let bare = b"<Ymsg Command=\"75\" Status=\"22\">49^$TYPING^$13^$1^$</Ymsg>";
        assert_eq!(frame_unit(bare), Frame::Unit(bare.len()));
        assert_eq!(parse_unit(bare).unwrap().header.service, 0x4B);
        assert_eq!(frame_unit(b"<html>"), Frame::Invalid);
        // Resync finds whichever form comes first.
        let mut mixed = b"junk ".to_vec();
        mixed.extend_from_slice(bare);
        mixed.extend_from_slice(&packet(6, 0, &[(4, b"x"), (14, b"y")]));
        assert_eq!(resync_unit(&mixed), Boundary::At(5));
        let bin_first = [&b"zz"[..], &packet(6, 0, &[(4, b"x")]), bare].concat();
        assert_eq!(resync_unit(&bin_first), Boundary::At(2));
        assert_eq!(resync_unit(b"nothing"), Boundary::Skip(7));
    }

    #[test]
    fn markup_is_stripped_and_other_text_kept() {
        assert_eq!(
            strip_markup("\u{1b}[1m\u{1b}[#ff0000m<font face=\"Arial\" size=\"10\">hi <b>there</b></font>\u{1b}[x1m"),
            "hi there"
        );
        assert_eq!(
            strip_markup("<FADE #ff0000,#00ff00>x</FADE> a<b c"),
            "x a<b c"
        );
        assert_eq!(
            strip_markup("1 < 2 and <html> stays"),
            "1 < 2 and <html> stays"
        );
        assert_eq!(strip_markup("\u{1b}[unterminated"), "\u{1b}[unterminated");
        assert_eq!(strip_markup("héllo <ding>"), "héllo <ding>");
    }

    #[test]
    fn text_encodings() {
        assert_eq!(decode("é".as_bytes(), true).encoding, "utf-8");
        let cp = decode(b"caf\xe9", false);
        assert_eq!(
            (cp.text.as_str(), cp.encoding, cp.lossy),
            ("café", "windows-1252", false)
        );
        let bad = decode(b"caf\xe9", true);
        assert!(bad.lossy);
    }

    mod arbitrary_bytes {
        use super::super::*;
        use proptest::prelude::*;

        /// The markup rules read one char at a time: the reference for
        /// [`strip_markup`].
        fn strip_markup_model(text: &str) -> String {
            let mut out = String::new();
            let mut rest = text;
            while let Some(c) = rest.chars().next() {
                if c == '\u{1b}' && rest[1..].starts_with('[') {
                    let code = rest[2..]
                        .bytes()
                        .take(17)
                        .position(|b| !(b.is_ascii_hexdigit() || b"#xl;,".contains(&b)));
                    if let Some(n) = code {
                        if rest.as_bytes().get(2 + n) == Some(&b'm') {
                            rest = &rest[2 + n + 1..];
                            continue;
                        }
                    }
                }
                if c == '<' {
                    if let Some(end) = rest.find('>') {
                        let inner = rest[1..end].trim_start_matches('/');
                        let name: String = inner
                            .chars()
                            .take_while(|ch| ch.is_ascii_alphabetic())
                            .collect::<String>()
                            .to_ascii_lowercase();
                        let after = inner[name.len()..].chars().next();
                        if MARKUP_TAGS.contains(&name.as_str())
                            && after.map_or(true, |ch| ch == ' ')
                        {
                            rest = &rest[end + 1..];
                            continue;
                        }
                    }
                }
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
            out
        }

        /// The separator search as first written, one search per field: the
        /// reference for the word-at-a-time [`parse_pairs`].
        fn parse_pairs_model(payload: &[u8]) -> Vec<(u32, &[u8])> {
            fn find_sep(b: &[u8]) -> Option<usize> {
                b.windows(2).position(|w| w == SEP)
            }
            let mut out = Vec::new();
            let mut rest = payload;
            while !rest.is_empty() && out.len() < MAX_PAIRS {
                let Some(k_end) = find_sep(rest) else {
                    break;
                };
                let key = &rest[..k_end];
                rest = &rest[k_end + 2..];
                let (value, next) = match find_sep(rest) {
                    Some(v_end) => (&rest[..v_end], &rest[v_end + 2..]),
                    None => (rest, &rest[rest.len()..]),
                };
                rest = next;
                if let Some(k) = decimal_key(key) {
                    out.push((k, value));
                }
            }
            out
        }

        proptest! {
            /// The byte-run stripper agrees with the plain char-by-char
            /// reading of the markup rules on any text.
            #[test]
            fn markup_stripping_matches_the_char_by_char_model(
                parts in proptest::collection::vec(
                    prop_oneof![
                        Just("\u{1b}[".to_string()), Just("m".to_string()), Just("<".to_string()),
                        Just(">".to_string()), Just("/".to_string()), Just(" ".to_string()),
                        Just("font".to_string()), Just("B".to_string()), Just("fade".to_string()),
                        Just("#ff00".to_string()), Just("x1".to_string()), Just("é".to_string()),
                        "[a-z0-9;,#]{0,4}",
                    ],
                    0..24,
                )
            ) {
                let text: String = parts.concat();
                prop_assert_eq!(strip_markup(&text).into_owned(), strip_markup_model(&text));
            }

            /// Payloads made of separators, their halves, keys and text in
            /// any order and at any offset split exactly as the model does.
            #[test]
            fn pairs_split_like_the_one_search_per_field_model(
                parts in proptest::collection::vec(
                    prop_oneof![
                        Just(vec![0xC0, 0x80]), Just(vec![0xC0]), Just(vec![0x80]),
                        Just(vec![0xC0, 0xC0, 0x80]), Just(b"14".to_vec()), Just(b"1".to_vec()),
                        Just(b"4294967295".to_vec()), Just(b"x".to_vec()),
                        proptest::collection::vec(any::<u8>(), 0..12),
                    ],
                    0..40,
                )
            ) {
                let payload: Vec<u8> = parts.concat();
                prop_assert_eq!(parse_pairs(&payload), parse_pairs_model(&payload));
            }

            #[test]
            fn framing_resync_and_views_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
                if let Frame::Unit(n) = frame_packet(&bytes) {
                    prop_assert!(n <= bytes.len() && n <= MAX_PACKET);
                    let p = Packet::parse(&bytes[..n]);
                    prop_assert!(p.is_some_and(|p| p.pairs.len() <= MAX_PAIRS));
                }
                match resync(&bytes) {
                    Boundary::At(p) | Boundary::NeedMore(p) => prop_assert!(p < bytes.len()),
                    Boundary::Skip(p) => prop_assert!(p <= bytes.len()),
                }
                if let Frame::Unit(n) = frame_unit(&bytes) {
                    prop_assert!(n <= bytes.len());
                    let _ = parse_unit(&bytes[..n]);
                }
                let _ = parse_web(&bytes);
                match resync_unit(&bytes) {
                    Boundary::At(p) | Boundary::NeedMore(p) => prop_assert!(p < bytes.len()),
                    Boundary::Skip(p) => prop_assert!(p <= bytes.len()),
                }
                let d = decode(&bytes, bytes.first() == Some(&1));
                let stripped = strip_markup(&d.text);
                prop_assert!(stripped.len() <= d.text.len());
            }

            #[test]
            fn any_packet_round_trips(pairs in proptest::collection::vec((0u32..100_000, proptest::collection::vec(0u8..0xC0, 0..40)), 0..20)) {
                let refs: Vec<(u32, &[u8])> = pairs.iter().map(|(k, v)| (*k, v.as_slice())).collect();
                let p = super::packet(6, 0, &refs);
                prop_assert_eq!(frame_packet(&p), Frame::Unit(p.len()));
                prop_assert_eq!(Packet::parse(&p).unwrap().pairs, refs);
            }
        }
    }
}
