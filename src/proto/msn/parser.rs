//! MSNP wire parser: pure functions from bytes to MSN protocol units.
//!
//! Owns command framing (CRLF lines, payload commands with a byte count),
//! the resync rule after a gap, and the views over a `MSG` payload: MIME
//! headers, typing, old-style invitations, P2P/MSNSLP INVITEs and their
//! base64 `Context`. No I/O, no clock, no session state; never panics on wire
//! bytes and never allocates more than the caps below
//! (protocols.md §1; quirks from imspector-0.9 `msnprotocolplugin.cpp` and
//! libpurple `msn/` as summarised there).

use crate::event::Id;

/// Where the next unit of an in-step stream ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole unit of this many bytes starts the buffer.
    Unit(usize),
    /// More bytes are needed; `Some(n)` when the unit is known to be `n` bytes.
    NeedMore(Option<usize>),
    /// The bytes do not start a unit: the stream is out of step.
    Invalid,
    /// A command line with no end within [`MAX_LINE`]: over the line cap.
    TooLong,
}

/// Where decoding can start again in an out-of-step stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boundary {
    /// A command starts at this offset.
    At(usize),
    /// A candidate starts at this offset; more bytes are needed to judge it.
    NeedMore(usize),
    /// No candidate before this offset.
    Skip(usize),
}

/// Longest command line accepted (CRLF included).
pub const MAX_LINE: usize = 8 * 1024;
/// Largest payload accepted; a longer declared length means the stream is out of step.
pub const MAX_PAYLOAD: usize = 256 * 1024;

/// Commands whose last parameter is the byte length of a payload that follows
/// the CRLF (union over MSNP versions, protocols.md §1 "Framing").
const PAYLOAD_COMMANDS: [&[u8; 3]; 20] = [
    b"MSG", b"UUM", b"UBM", b"NOT", b"UUX", b"UBX", b"UUN", b"UBN", b"ADL", b"RML", b"FQY", b"GCF",
    b"QRY", b"PAG", b"IPG", b"SDG", b"NFY", b"PUT", b"DEL", b"SBS",
];

/// Payload commands whose length must be present (a line without it is garbage).
const STRICT_PAYLOAD: [&[u8; 3]; 6] = [b"MSG", b"UUM", b"UBM", b"NOT", b"SDG", b"UBX"];

/// Commands accepted as a resync point.
const KNOWN_COMMANDS: [&[u8; 3]; 52] = [
    b"VER", b"CVR", b"USR", b"XFR", b"RNG", b"ANS", b"CAL", b"IRO", b"JOI", b"BYE", b"MSG", b"OUT",
    b"CHG", b"ILN", b"NLN", b"FLN", b"SYN", b"LST", b"LSG", b"ADD", b"ADC", b"REM", b"REA", b"PRP",
    b"BPR", b"BLP", b"GTC", b"CHL", b"QRY", b"PNG", b"QNG", b"NOT", b"UUM", b"UBM", b"UBX", b"UUX",
    b"UUN", b"UBN", b"ADL", b"RML", b"FQY", b"GCF", b"PAG", b"IPG", b"SDG", b"NFY", b"PUT", b"DEL",
    b"SBS", b"URL", b"ACK", b"NAK",
];

/// Server-initiated commands that carry no transaction id; their first
/// parameter is an address (or a number for `RNG`/`NOT`).
const NO_TRID: [&[u8; 3]; 7] = [b"MSG", b"JOI", b"BYE", b"UBM", b"UBX", b"IPG", b"NFY"];

/// One MSNP command: its name, its line (without CRLF) and its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command<'a> {
    pub name: [u8; 3],
    pub line: &'a [u8],
    pub payload: Option<&'a [u8]>,
}

impl<'a> Command<'a> {
    /// The command name as text (`MSG`, `217`).
    pub fn name(&self) -> &str {
        std::str::from_utf8(&self.name).unwrap_or("???")
    }

    pub fn is(&self, name: &[u8; 3]) -> bool {
        &self.name == name
    }

    /// Parameters after the name, split on spaces.
    pub fn params(&self) -> impl Iterator<Item = &'a [u8]> {
        let line: &'a [u8] = self.line;
        line.split(|&b| b == b' ').skip(1).filter(|p| !p.is_empty())
    }

    /// The `i`-th parameter after the name (0-based), as text.
    pub fn param(&self, i: usize) -> Option<&'a str> {
        self.params()
            .nth(i)
            .and_then(|p| std::str::from_utf8(p).ok())
    }

    pub fn param_count(&self) -> usize {
        self.params().count()
    }
}

fn is_name(n: &[u8]) -> bool {
    n.len() == 3 && (n.iter().all(u8::is_ascii_uppercase) || n.iter().all(u8::is_ascii_digit))
}

/// Whether the bytes available could start a command line.
fn prefix_ok(buf: &[u8]) -> bool {
    let head = &buf[..buf.len().min(3)];
    let all_upper = head.iter().all(u8::is_ascii_uppercase);
    let all_digit = head.iter().all(u8::is_ascii_digit);
    if !(all_upper || all_digit) {
        return false;
    }
    match buf.get(3) {
        None => true,
        Some(b) => matches!(b, b' ' | b'\r' | b'\n'),
    }
}

fn line_chars_ok(line: &[u8]) -> bool {
    // Folded without stopping early, so that it runs many bytes at a time.
    line.iter()
        .fold(true, |ok, &b| ok & ((b >= 0x20) | (b == b'\t')))
}

/// A decimal length of at most 10 digits.
pub fn parse_len(tok: &[u8]) -> Option<u64> {
    if tok.is_empty() || tok.len() > 10 {
        return None;
    }
    let mut n = 0u64;
    for &b in tok {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n = n * 10 + u64::from(digit);
    }
    Some(n)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether `name` is one of `list` (fixed-size comparisons, no memcmp).
fn listed<const N: usize>(list: &[&[u8; 3]; N], name: &[u8; 3]) -> bool {
    list.contains(&name)
}

/// The number of space-separated tokens of `line`, counted up to `most`.
fn tokens_up_to(line: &[u8], most: usize) -> usize {
    line.split(|&b| b == b' ')
        .filter(|t| !t.is_empty())
        .take(most)
        .count()
}

/// Cut the next command (line plus payload) from `buf`.
pub fn frame_command(buf: &[u8]) -> Frame {
    if buf.is_empty() {
        return Frame::NeedMore(None);
    }
    if !prefix_ok(buf) {
        return Frame::Invalid;
    }
    let window = &buf[..buf.len().min(MAX_LINE)];
    let Some(nl) = memchr::memchr(b'\n', window) else {
        return if buf.len() >= MAX_LINE {
            Frame::TooLong
        } else {
            Frame::NeedMore(None)
        };
    };
    let line = trim_cr(&buf[..nl]);
    let line_len = nl + 1;
    let Some(&name) = line.first_chunk::<3>() else {
        return Frame::Invalid;
    };
    if !line_chars_ok(line) {
        return Frame::Invalid;
    }
    let last = &line[memchr::memrchr(b' ', line).map_or(0, |i| i + 1)..];
    let declared = if listed(&PAYLOAD_COMMANDS, &name) {
        match parse_len(last).filter(|_| tokens_up_to(line, 2) >= 2) {
            Some(n) => Some(n),
            None if listed(&STRICT_PAYLOAD, &name) => return Frame::Invalid,
            None => None,
        }
    } else if name.iter().all(u8::is_ascii_digit) && tokens_up_to(line, 3) >= 3 {
        // Numeric errors answering ADL/RML/FQY may carry a payload: decide by
        // whether the next bytes start a command (protocols.md §1).
        match parse_len(last) {
            Some(n) if n > 0 => {
                let rest = &buf[line_len..];
                if rest.len() < 4 {
                    return Frame::NeedMore(None);
                }
                if prefix_ok(&rest[..4]) && is_name(&rest[..3]) {
                    None
                } else {
                    Some(n)
                }
            }
            _ => None,
        }
    } else {
        None
    };
    match declared {
        None => Frame::Unit(line_len),
        Some(n) if n > MAX_PAYLOAD as u64 => Frame::Invalid,
        Some(n) => {
            let total = line_len + n as usize;
            if buf.len() >= total {
                Frame::Unit(total)
            } else {
                Frame::NeedMore(Some(total))
            }
        }
    }
}

/// Split a whole unit (as cut by [`frame_command`]) into its command view.
pub fn parse_command(unit: &[u8]) -> Option<Command<'_>> {
    let nl = memchr::memchr(b'\n', unit)?;
    let line = trim_cr(&unit[..nl]);
    let name: [u8; 3] = line.get(..3)?.try_into().ok()?;
    if !is_name(&name) {
        return None;
    }
    let rest = &unit[nl + 1..];
    Some(Command {
        name,
        line,
        payload: if rest.is_empty() { None } else { Some(rest) },
    })
}

/// Whether a complete line is a plausible resync point: a known command
/// followed by a transaction id (or, for server commands without one, an
/// address or number).
fn plausible_line(line: &[u8]) -> bool {
    if line.len() < 3 || !line_chars_ok(line) {
        return false;
    }
    let name = &line[..3];
    let numeric = name.iter().all(u8::is_ascii_digit);
    if !numeric && !KNOWN_COMMANDS.iter().any(|c| &c[..] == name) {
        return false;
    }
    if line.len() > 3 && line[3] != b' ' {
        return false;
    }
    let mut params = line[3..].split(|&b| b == b' ').filter(|p| !p.is_empty());
    let Some(first) = params.next() else {
        // Bare `OUT` (and a few others) are legal, but too weak for a resync.
        return false;
    };
    if first.iter().all(u8::is_ascii_digit) && first.len() <= 10 {
        return true;
    }
    NO_TRID.iter().any(|c| &c[..] == name) && (first.contains(&b'@') || first == b"Hotmail")
}

/// Whether the first bytes of a candidate's payload fit its command: MIME
/// payloads (`MSG`, `UUM`, `UBM`) start with a header, `SDG` with `Routing`.
/// `None` when too few bytes are there to tell.
fn payload_fits(name: &[u8], payload: &[u8], declared: usize) -> Option<bool> {
    const MIME: [&[u8]; 2] = [b"MIME-Version:", b"Content-Type:"];
    let heads: &[&[u8]] = match name {
        b"MSG" | b"UUM" | b"UBM" => &MIME,
        b"SDG" => &[b"Routing:"],
        _ => return Some(true),
    };
    let need = heads.iter().map(|h| h.len()).min().unwrap_or(0);
    if declared < need {
        return Some(false);
    }
    if payload.len()
        < heads
            .iter()
            .map(|h| h.len())
            .max()
            .unwrap_or(0)
            .min(declared)
    {
        return None;
    }
    Some(heads.iter().any(|h| {
        payload
            .get(..h.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(h))
    }))
}

fn known(name: &[u8]) -> bool {
    KNOWN_COMMANDS.iter().any(|c| &c[..] == name)
}

/// Whether a candidate may start at `i`: the buffer start, a line start, or
/// a known command name followed by a space (a payload has no terminator, so
/// the command after it starts mid-line), or a prefix of one at the end.
fn candidate_at(buf: &[u8], i: usize) -> bool {
    if i == 0 || buf[i - 1] == b'\n' {
        return true;
    }
    match buf.get(i..i + 4) {
        Some(w) => w[3] == b' ' && known(&w[..3]),
        None => {
            let tail = &buf[i..];
            KNOWN_COMMANDS.iter().any(|c| c.starts_with(tail))
        }
    }
}

/// Find the next command boundary in an out-of-step buffer: a candidate
/// position (see `candidate_at`) holding a known command with a transaction
/// id (or, for server commands, an address), whose payload, if any, starts
/// the way that command's payload must. Lines typed by a user inside a lost
/// body (`MSG 1 N 5`) fail the payload test.
pub fn resync(buf: &[u8]) -> Boundary {
    for pos in 0..buf.len() {
        if !candidate_at(buf, pos) {
            continue;
        }
        let cand = &buf[pos..];
        if !prefix_ok(cand) {
            continue;
        }
        let window = &cand[..cand.len().min(MAX_LINE)];
        match memchr::memchr(b'\n', window) {
            None if cand.len() < MAX_LINE => return Boundary::NeedMore(pos),
            None => {}
            Some(nl) if plausible_line(trim_cr(&cand[..nl])) => {
                let name = &cand[..3];
                let body = &cand[nl + 1..];
                let verdict = match frame_command(cand) {
                    Frame::Unit(n) => payload_fits(name, &cand[nl + 1..n], n - nl - 1),
                    Frame::NeedMore(Some(total)) => payload_fits(name, body, total - nl - 1),
                    Frame::NeedMore(None) => None,
                    Frame::Invalid | Frame::TooLong => Some(false),
                };
                match verdict {
                    Some(true) => return Boundary::At(pos),
                    None => return Boundary::NeedMore(pos),
                    Some(false) => {}
                }
            }
            Some(_) => {}
        }
    }
    Boundary::Skip(buf.len())
}

/// An MSN address as an id: the part before `;` (MSNP16+ endpoint GUID), lowercased.
pub fn normalize_id(addr: &str) -> String {
    let cut = addr.split(';').next().unwrap_or_default();
    cut.trim().to_ascii_lowercase()
}

/// [`normalize_id`] as an [`Id`]: addresses of up to 24 bytes need no allocation.
pub fn address_id(addr: &str) -> Id {
    // `;` is ASCII: the cut is a char boundary.
    let cut = &addr[..memchr::memchr(b';', addr.as_bytes()).unwrap_or(addr.len())];
    let mut id = Id::from(cut.trim());
    id.make_ascii_lowercase();
    id
}

/// The MIME-like header block and body of a `MSG` payload. Headers are
/// looked up in the block on demand (a payload has a handful), except
/// `Content-Type`, which every payload is classified by: it is picked up
/// while the block's end is searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mime<'a> {
    pub head: &'a [u8],
    pub body: &'a [u8],
    /// The value of the first `Content-Type` header, as [`Mime::header`] finds it.
    content_type: Option<&'a [u8]>,
}

/// Most header lines looked at per payload (more are ignored).
const MAX_HEADERS: usize = 64;

/// The value of `line` (one header line, CR and all) when it is header
/// `name` (case-insensitive): leading whitespace, the name, optional blanks,
/// `:`, and the value, trimmed.
fn header_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let line = &line[line.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
    // Most lines are some other header: their first letter says so.
    if !line.first()?.eq_ignore_ascii_case(name.first()?) {
        return None;
    }
    let line = trim_cr(line);
    let head = line.get(..name.len()).filter(|_| line.len() > name.len())?;
    // Clients write the names as documented: an exact comparison first.
    if head != name && !head.eq_ignore_ascii_case(name) {
        return None;
    }
    let rest = &line[name.len()..];
    let rest = &rest[rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count()..];
    rest.strip_prefix(b":").map(<[u8]>::trim_ascii)
}

impl<'a> Mime<'a> {
    /// Split at the first blank line (`\r\n\r\n` or `\n\n`); header names are
    /// matched case-insensitively. One pass over the header lines finds the
    /// blank line and the `Content-Type`.
    pub fn parse(payload: &'a [u8]) -> Mime<'a> {
        const NAME: &[u8] = b"Content-Type";
        let mut content_type = None;
        let mut line_start = 0usize;
        let mut lines = 0usize;
        let mut blank = None;
        for nl in memchr::memchr_iter(b'\n', payload) {
            if nl >= 3 && &payload[nl - 3..=nl] == b"\r\n\r\n" {
                blank = Some((nl - 3, 4));
            } else if nl >= 1 && payload[nl - 1] == b'\n' {
                blank = Some((nl - 1, 2));
            }
            if blank.is_some() {
                break;
            }
            // A header line of the block (it ends before any blank line).
            if content_type.is_none() && lines < MAX_HEADERS {
                content_type = header_value(&payload[line_start..nl], NAME);
            }
            lines += 1;
            line_start = nl + 1;
        }
        let (head, body) = match blank {
            Some((i, n)) => (&payload[..i], &payload[i + n..]),
            None => {
                // The block runs to the end: its last line has no newline.
                if content_type.is_none() && lines < MAX_HEADERS && line_start < payload.len() {
                    content_type = header_value(&payload[line_start..], NAME);
                }
                (payload, &payload[payload.len()..])
            }
        };
        Mime {
            head,
            body,
            content_type,
        }
    }

    /// The `Name: value` lines of the header block, trimmed.
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        let head: &'a [u8] = self.head;
        head.split(|&b| b == b'\n')
            .take(MAX_HEADERS)
            .filter_map(|l| {
                let l = trim_cr(l);
                let c = memchr::memchr(b':', l)?;
                Some((l[..c].trim_ascii(), l[c + 1..].trim_ascii()))
            })
    }

    /// The value of the first header called `name` (case-insensitive),
    /// among the first [`MAX_HEADERS`] lines.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        let name = name.as_bytes();
        let head: &'a [u8] = self.head;
        let mut start = 0usize;
        for _ in 0..MAX_HEADERS {
            if start >= head.len() {
                break;
            }
            let end = memchr::memchr(b'\n', &head[start..]).map_or(head.len(), |i| start + i);
            if let Some(v) = header_value(&head[start..end], name) {
                return Some(v);
            }
            start = end + 1;
        }
        None
    }

    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The media type of `Content-Type`, without parameters (compare it
    /// case-insensitively).
    pub fn media_type(&self) -> &'a [u8] {
        media_type_of(self.content_type.unwrap_or_default())
    }

    /// The `charset` parameter of `Content-Type`.
    pub fn charset(&self) -> Option<&'a str> {
        charset_of(self.content_type?)
    }
}

/// The media type of a `Content-Type` value.
fn media_type_of(ct: &[u8]) -> &[u8] {
    ct[..memchr::memchr(b';', ct).unwrap_or(ct.len())].trim_ascii()
}

/// The `charset` parameter of a `Content-Type` value (the first one that is
/// text), without quotes.
fn charset_of(ct: &[u8]) -> Option<&str> {
    let mut rest = ct;
    while let Some(semi) = rest.iter().position(|&b| b == b';') {
        rest = &rest[semi + 1..];
        let param = &rest[..rest.iter().position(|&b| b == b';').unwrap_or(rest.len())];
        let param = param.trim_ascii();
        let Some(eq) = param.iter().position(|&b| b == b'=') else {
            continue;
        };
        let name = &param[..eq];
        if !name.eq_ignore_ascii_case(b"charset") {
            continue;
        }
        // Quotes are ASCII: trimming them first cannot change whether the
        // value is UTF-8.
        let v = param[eq + 1..].trim_ascii();
        let v = &v[v.iter().take_while(|&&b| b == b'"').count()..];
        let v = &v[..v.len() - v.iter().rev().take_while(|&&b| b == b'"').count()];
        if let Ok(v) = std::str::from_utf8(v) {
            return Some(v);
        }
    }
    None
}

/// The file-transfer application GUID (MSN ≤ 6 invitations and MSNSLP EUF-GUID).
pub const GUID_FILE: &str = "{5D3E02AB-6190-11D3-BBBB-00C04F795683}";
/// MSNSLP EUF-GUID: the sender offers its webcam.
pub const GUID_WEBCAM_SEND: &str = "{4BD96FC0-AB17-4425-A14A-439185962DC8}";
/// MSNSLP EUF-GUID: the sender asks to view the peer's webcam.
pub const GUID_WEBCAM_ASK: &str = "{1C9AA97E-9C05-4583-A3BD-908A196F1E92}";

/// What a `MSG` payload carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MsgContent<'a> {
    /// `text/plain`: chat text in `charset` (UTF-8 when absent).
    Text {
        charset: Option<&'a str>,
        body: &'a [u8],
    },
    /// `text/x-msmsgscontrol` with `TypingUser`.
    Typing { user: &'a str },
    /// `text/x-msmsgsinvite` (MSN ≤ 6 invitations).
    Invite(Invitation),
    /// `application/x-msnmsgrp2p`: a binary P2P chunk.
    P2p(P2pChunk<'a>),
    /// `text/x-msnmsgr-datacast` (1 nudge, 2 wink, 3 voice clip).
    Datacast(u32),
    /// Anything else (profiles, emoticon objects, ink, ...): not chat.
    Other,
}

/// Classify a `MSG` payload by its `Content-Type`.
pub fn classify(payload: &[u8]) -> MsgContent<'_> {
    /// The `Content-Type` of chat text as MSN Messenger 6 and later,
    /// Windows Live Messenger and libpurple write it: taken without parsing.
    const TEXT_UTF8: &[u8] = b"text/plain; charset=UTF-8";
    let mime = Mime::parse(payload);
    let ct = mime.content_type.unwrap_or_default();
    if ct == TEXT_UTF8 {
        return MsgContent::Text {
            charset: Some("UTF-8"),
            body: mime.body,
        };
    }
    let media = media_type_of(ct);
    let is = |t: &str| media.eq_ignore_ascii_case(t.as_bytes());
    if is("text/plain") {
        MsgContent::Text {
            charset: charset_of(ct),
            body: mime.body,
        }
    } else if is("text/x-msmsgscontrol") {
        match mime.header_str("TypingUser") {
            Some(user) => MsgContent::Typing { user },
            None => MsgContent::Other,
        }
    } else if is("text/x-msmsgsinvite") {
        MsgContent::Invite(Invitation::parse(mime.body))
    } else if is("application/x-msnmsgrp2p") {
        let v2 = mime
            .header_str("P2P-Dest")
            .is_some_and(|d| d.contains(";{"));
        MsgContent::P2p(P2pChunk::parse(mime.body, v2))
    } else if is("text/x-msnmsgr-datacast") {
        let id = Mime::parse(mime.body)
            .header_str("ID")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        MsgContent::Datacast(id)
    } else {
        MsgContent::Other
    }
}

/// An MSN ≤ 6 invitation (`text/x-msmsgsinvite` body of `Key: value` lines).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invitation {
    pub command: String,
    pub guid: Option<String>,
    pub app_name: Option<String>,
    pub file: Option<String>,
    pub size: Option<u64>,
}

impl Invitation {
    pub fn parse(body: &[u8]) -> Invitation {
        let m = Mime::parse(body);
        let text = |k: &str| m.header(k).map(|v| String::from_utf8_lossy(v).into_owned());
        Invitation {
            command: text("Invitation-Command").unwrap_or_default(),
            guid: text("Application-GUID"),
            app_name: text("Application-Name"),
            file: text("Application-File"),
            size: m.header("Application-FileSize").and_then(parse_len),
        }
    }

    /// Only `INVITE` creates an event.
    pub fn is_invite(&self) -> bool {
        self.command.eq_ignore_ascii_case("INVITE")
    }

    pub fn is_file(&self) -> bool {
        self.guid
            .as_deref()
            .is_some_and(|g| g.eq_ignore_ascii_case(GUID_FILE))
    }
}

/// The P2P v1 binary header (48 bytes, little-endian).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct P2pHeader {
    pub session_id: u32,
    pub id: u32,
    pub offset: u64,
    pub total_size: u64,
    pub chunk_len: u32,
    pub flags: u32,
}

pub const P2P_V1_HEADER: usize = 48;

impl P2pHeader {
    pub fn parse(b: &[u8]) -> Option<P2pHeader> {
        let h = b.get(..P2P_V1_HEADER)?;
        let u32le = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        let u64le = |o: usize| u64::from(u32le(o)) | (u64::from(u32le(o + 4)) << 32);
        Some(P2pHeader {
            session_id: u32le(0),
            id: u32le(4),
            offset: u64le(8),
            total_size: u64le(16),
            chunk_len: u32le(32),
            flags: u32le(36),
        })
    }
}

/// One P2P chunk: the v1 header when the body is v1, and its data bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct P2pChunk<'a> {
    pub v1: Option<P2pHeader>,
    /// The chunk's data (v1), or the whole body (v2: SLP is found by search).
    pub data: &'a [u8],
}

impl<'a> P2pChunk<'a> {
    pub fn parse(body: &'a [u8], v2: bool) -> P2pChunk<'a> {
        if !v2 {
            if let Some(h) = P2pHeader::parse(body) {
                let end = P2P_V1_HEADER.saturating_add(h.chunk_len as usize);
                if let Some(data) = body.get(P2P_V1_HEADER..end) {
                    return P2pChunk { v1: Some(h), data };
                }
            }
        }
        P2pChunk {
            v1: None,
            data: body,
        }
    }
}

/// What an MSNSLP INVITE offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlpOffer {
    /// A file (EUF-GUID file, AppID 2); name and size from the Context.
    File {
        name: Option<String>,
        size: Option<u64>,
    },
    /// A webcam invitation (either webcam GUID).
    Webcam,
    /// Display pictures, emoticons and other sessions: not user events.
    Other,
}

/// An MSNSLP `INVITE` (the SIP-like text inside P2P data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlpInvite {
    pub to: Option<String>,
    pub from: Option<String>,
    pub euf_guid: Option<String>,
    pub app_id: Option<u32>,
    pub session_id: Option<u32>,
    pub context: Vec<u8>,
}

/// Largest decoded Context kept (the file header is 574/637 bytes).
const MAX_CONTEXT: usize = 2048;

impl SlpInvite {
    /// Find `INVITE MSNMSGR:` in `data` and parse what is there (a truncated
    /// Context yields what its complete base64 groups hold).
    pub fn find(data: &[u8]) -> Option<SlpInvite> {
        let at = memchr::memmem::find(data, b"INVITE MSNMSGR:")?;
        let text = &data[at..];
        let mut inv = SlpInvite {
            to: None,
            from: None,
            euf_guid: None,
            app_id: None,
            session_id: None,
            context: Vec::new(),
        };
        for line in text.split(|&b| b == b'\n').skip(1) {
            let line = trim_cr(line);
            let Some(c) = memchr::memchr(b':', line) else {
                continue;
            };
            let (k, v) = (line[..c].trim_ascii(), line[c + 1..].trim_ascii());
            let v_str = || String::from_utf8_lossy(v).into_owned();
            match k.to_ascii_lowercase().as_slice() {
                b"to" if inv.to.is_none() => inv.to = Some(slp_address(&v_str())),
                b"from" if inv.from.is_none() => inv.from = Some(slp_address(&v_str())),
                b"euf-guid" => inv.euf_guid = Some(v_str()),
                b"appid" => inv.app_id = parse_len(v).and_then(|n| u32::try_from(n).ok()),
                b"sessionid" => inv.session_id = parse_len(v).and_then(|n| u32::try_from(n).ok()),
                b"context" => inv.context = base64_decode(v, MAX_CONTEXT),
                _ => {}
            }
        }
        Some(inv)
    }

    pub fn offer(&self) -> SlpOffer {
        let guid = self.euf_guid.as_deref().unwrap_or_default();
        if guid.eq_ignore_ascii_case(GUID_FILE) && self.app_id.unwrap_or(2) == 2 {
            let (name, size) = file_context(&self.context);
            SlpOffer::File { name, size }
        } else if guid.eq_ignore_ascii_case(GUID_WEBCAM_SEND)
            || guid.eq_ignore_ascii_case(GUID_WEBCAM_ASK)
        {
            SlpOffer::Webcam
        } else {
            SlpOffer::Other
        }
    }
}

/// `<msnmsgr:bob@x.com;{guid}>` → `bob@x.com`.
fn slp_address(v: &str) -> String {
    let v = v.trim().trim_start_matches('<').trim_end_matches('>');
    let v = v
        .strip_prefix("msnmsgr:")
        .or_else(|| v.strip_prefix("MSNMSGR:"))
        .unwrap_or(v);
    normalize_id(v)
}

/// File size (LE u64 at 8) and UTF-16LE name (at 20, up to 260 units) from a
/// decoded file-transfer Context; parts the bytes do not reach are `None`.
pub fn file_context(ctx: &[u8]) -> (Option<String>, Option<u64>) {
    let size = ctx
        .get(8..16)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes);
    let name_bytes = ctx.get(20..).map(|b| &b[..b.len().min(520)]);
    let name = name_bytes.and_then(|b| {
        let units: Vec<u16> = b
            .chunks_exact(2)
            .map(|p| u16::from_le_bytes([p[0], p[1]]))
            .take_while(|&u| u != 0)
            .collect();
        if units.is_empty() {
            None
        } else {
            Some(
                char::decode_utf16(units)
                    .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect(),
            )
        }
    });
    (name, size)
}

/// Standard base64 (RFC 4648) decoding that stops at the first byte outside
/// the alphabet or at `=`, keeps only complete bytes, and at most `cap` of them.
pub fn base64_decode(text: &[u8], cap: usize) -> Vec<u8> {
    fn val(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity((text.len() / 4 * 3).min(cap));
    let mut acc = 0u32;
    let mut bits = 0u32;
    for &c in text {
        let Some(v) = val(c) else {
            break;
        };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            if out.len() >= cap {
                break;
            }
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(stream: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Frame::Unit(n) = frame_command(&stream[pos..]) {
            out.push(&stream[pos..pos + n]);
            pos += n;
        }
        out
    }

    #[test]
    fn plain_lines_and_payload_commands_are_framed() {
        let s = b"USR 1 OK a@b.com Alice\r\nMSG 4 N 5\r\nhelloJOI c@d.com C\r\n";
        let u = units(s);
        assert_eq!(u.len(), 3);
        assert_eq!(u[1], b"MSG 4 N 5\r\nhello");
        let c = parse_command(u[1]).unwrap();
        assert_eq!(c.name(), "MSG");
        assert_eq!(c.payload, Some(&b"hello"[..]));
        assert_eq!(c.param(0), Some("4"));
        let j = parse_command(u[2]).unwrap();
        assert!(j.is(b"JOI"));
        assert_eq!(j.payload, None);
    }

    #[test]
    fn payload_length_counts_bytes_not_characters() {
        let s = "MSG a@b.com A 6\r\nh\u{e9}llo".as_bytes();
        assert_eq!(s.len() - 17, 6);
        assert_eq!(frame_command(s), Frame::Unit(s.len()));
    }

    #[test]
    fn partial_units_ask_for_more_with_the_total_when_known() {
        assert_eq!(frame_command(b"MS"), Frame::NeedMore(None));
        assert_eq!(frame_command(b"MSG 1 U 10"), Frame::NeedMore(None));
        assert_eq!(
            frame_command(b"MSG 1 U 10\r\nabc"),
            Frame::NeedMore(Some(22))
        );
    }

    #[test]
    fn hostile_lengths_and_lines_are_invalid_without_allocating() {
        assert_eq!(frame_command(b"MSG 1 U 4294967295\r\n"), Frame::Invalid);
        assert_eq!(frame_command(b"MSG 1 U 99999999999999\r\n"), Frame::Invalid);
        assert_eq!(frame_command(b"MSG 1 U\r\n"), Frame::Invalid);
        assert_eq!(frame_command(b"MSG 1 U -5\r\n"), Frame::Invalid);
        assert_eq!(frame_command(b"hello\r\n"), Frame::Invalid);
        assert_eq!(frame_command(b"MSGX 1\r\n"), Frame::Invalid);
        assert_eq!(frame_command(b"MSG 1 \x00 5\r\n"), Frame::Invalid);
        let long = vec![b'A'; MAX_LINE + 10];
        assert_eq!(frame_command(&long[..3]), Frame::NeedMore(None));
        let mut long_line = b"CHG ".to_vec();
        long_line.resize(MAX_LINE + 1, b'x');
        assert_eq!(frame_command(&long_line), Frame::TooLong);
        assert_eq!(frame_command(&long_line[..MAX_LINE]), Frame::TooLong);
        assert_eq!(
            frame_command(&long_line[..MAX_LINE - 1]),
            Frame::NeedMore(None)
        );
    }

    #[test]
    fn numeric_errors_carry_a_payload_only_when_no_command_follows() {
        assert_eq!(frame_command(b"217 5\r\nOUT\r\n"), Frame::Unit(7));
        assert_eq!(frame_command(b"241 7 4\r\nMSG 1"), Frame::Unit(9));
        assert_eq!(frame_command(b"241 7 4\r\n<ml>"), Frame::Unit(13));
        assert_eq!(frame_command(b"241 7 4\r\n<m"), Frame::NeedMore(None));
    }

    #[test]
    fn gcf_without_a_length_is_a_plain_line() {
        assert_eq!(frame_command(b"GCF 4 Shields.xml\r\n"), Frame::Unit(19));
        assert_eq!(
            frame_command(b"GCF 4 Shields.xml 3\r\nabc"),
            Frame::Unit(24)
        );
    }

    #[test]
    fn resync_skips_body_text_and_checks_the_payload() {
        // Tail of a lost MSG body, containing a line that looks like a command.
        let s = b"lo there\r\nMSG 1 N 5\r\nabcdeJOI x@y.com X\r\nMSG x@y.com X 2\r\nhi";
        match resync(s) {
            Boundary::At(p) => assert!(s[p..].starts_with(b"JOI x@y.com")),
            other => panic!("{other:?}"),
        }
        // The command right after a payload (no CRLF between) is found.
        let s = b"Hey BrianMSG 97 U 96\r\nMIME-Version: 1.0\r\n";
        assert_eq!(resync(s), Boundary::At(9));
        // A MSG candidate is accepted on the start of its MIME payload.
        let t = b"xx\r\nMSG x@y.com X 30\r\nMIME-Version: 1.0\r\n";
        assert_eq!(resync(t), Boundary::At(4));
        assert_eq!(resync(&t[..25]), Boundary::NeedMore(4));
        // No line start with a command at all: everything can go.
        assert_eq!(resync(b"abc\r\ndef\r\n"), Boundary::Skip(10));
        // A trid-less MSG whose first parameter is no address is not enough.
        assert_eq!(
            resync(b"MSG hello there 5\r\nJOI a@b C\r\n"),
            Boundary::At(19)
        );
        // An incomplete line at the end may be a candidate.
        assert_eq!(resync(b"abc\r\nUS"), Boundary::NeedMore(5));
        assert_eq!(resync(b"abcdefMS"), Boundary::NeedMore(6));
        assert_eq!(resync(b"abcdefXY"), Boundary::Skip(8));
    }

    #[test]
    fn resync_never_panics_on_any_prefix() {
        let s = b"\r\nMSG 1 N 3\r\nabcUSR 5 OK a@b.com A\r\n";
        for i in 0..s.len() {
            let _ = resync(&s[i..]);
            let _ = frame_command(&s[i..]);
        }
    }

    #[test]
    fn mime_headers_charset_and_body() {
        let p = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=ISO-8859-1\r\nX-MMS-IM-Format: FN=Arial\r\n\r\nhi\r\nthere";
        let m = Mime::parse(p);
        assert_eq!(m.media_type(), b"text/plain");
        assert_eq!(m.charset(), Some("ISO-8859-1"));
        assert_eq!(m.body, b"hi\r\nthere");
        assert_eq!(m.header_str("content-type").map(|s| s.len()), Some(30));
        match classify(p) {
            MsgContent::Text { charset, body } => {
                assert_eq!(charset, Some("ISO-8859-1"));
                assert_eq!(body, b"hi\r\nthere");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn typing_nudge_and_other_content() {
        let t = b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgscontrol\r\nTypingUser: a@b.com\r\n\r\n\r\n";
        assert_eq!(classify(t), MsgContent::Typing { user: "a@b.com" });
        let n = b"MIME-Version: 1.0\r\nContent-Type: text/x-msnmsgr-datacast\r\n\r\nID: 1\r\n\r\n";
        assert_eq!(classify(n), MsgContent::Datacast(1));
        let p = b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsprofile; charset=UTF-8\r\n\r\n";
        assert_eq!(classify(p), MsgContent::Other);
        let no_user = b"Content-Type: text/x-msmsgscontrol\r\n\r\n";
        assert_eq!(classify(no_user), MsgContent::Other);
    }

    #[test]
    fn old_style_file_invitation() {
        let p = b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsinvite; charset=UTF-8\r\n\r\nApplication-Name: File Transfer\r\nApplication-GUID: {5d3e02ab-6190-11d3-bbbb-00c04f795683}\r\nInvitation-Command: INVITE\r\nInvitation-Cookie: 123\r\nApplication-File: report.pdf\r\nApplication-FileSize: 48213\r\n\r\n";
        match classify(p) {
            MsgContent::Invite(inv) => {
                assert!(inv.is_invite() && inv.is_file());
                assert_eq!(inv.file.as_deref(), Some("report.pdf"));
                assert_eq!(inv.size, Some(48213));
            }
            other => panic!("{other:?}"),
        }
    }

    pub(crate) fn file_context_bytes(name: &str, size: u64) -> Vec<u8> {
        let mut c = vec![0u8; 574];
        c[0..4].copy_from_slice(&574u32.to_le_bytes());
        c[4..8].copy_from_slice(&2u32.to_le_bytes());
        c[8..16].copy_from_slice(&size.to_le_bytes());
        for (i, u) in name.encode_utf16().enumerate().take(259) {
            c[20 + 2 * i..22 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
        c
    }

    pub(crate) fn base64_encode(b: &[u8]) -> String {
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

    #[test]
    fn base64_round_trip_and_truncation() {
        let data: Vec<u8> = (0..=255u8).collect();
        let enc = base64_encode(&data);
        assert_eq!(base64_decode(enc.as_bytes(), 4096), data);
        assert_eq!(base64_decode(b"aGk=", 10), b"hi");
        assert_eq!(base64_decode(b"aGVsbG8", 10), b"hello");
        assert_eq!(base64_decode(enc.as_bytes(), 5).len(), 5);
        assert_eq!(base64_decode(b"!!!", 5), b"");
    }

    #[test]
    fn slp_file_invite_gives_name_and_size() {
        let ctx = base64_encode(&file_context_bytes("h\u{e9}llo world.txt", 123_456));
        let slp = format!(
            "INVITE MSNMSGR:bob@x.com MSNSLP/1.0\r\nTo: <msnmsgr:bob@x.com>\r\nFrom: <msnmsgr:Alice@x.com;{{abc}}>\r\nCall-ID: {{1}}\r\nContent-Type: application/x-msnmsgr-sessionreqbody\r\nContent-Length: 10\r\n\r\nEUF-GUID: {GUID_FILE}\r\nSessionID: 42\r\nAppID: 2\r\nContext: {ctx}\r\n\r\n\0"
        );
        let inv = SlpInvite::find(slp.as_bytes()).unwrap();
        assert_eq!(inv.to.as_deref(), Some("bob@x.com"));
        assert_eq!(inv.from.as_deref(), Some("alice@x.com"));
        assert_eq!(inv.session_id, Some(42));
        assert_eq!(
            inv.offer(),
            SlpOffer::File {
                name: Some("h\u{e9}llo world.txt".into()),
                size: Some(123_456)
            }
        );
        // A truncated Context still gives the size.
        let cut = &slp[..slp.find("Context: ").unwrap() + 9 + 24];
        let inv = SlpInvite::find(cut.as_bytes()).unwrap();
        assert_eq!(
            inv.offer(),
            SlpOffer::File {
                name: None,
                size: Some(123_456)
            }
        );
    }

    #[test]
    fn slp_webcam_and_display_picture() {
        let cam = format!(
            "INVITE MSNMSGR:b@x MSNSLP/1.0\r\n\r\nEUF-GUID: {}\r\nAppID: 4\r\n",
            GUID_WEBCAM_ASK.to_lowercase()
        );
        assert_eq!(
            SlpInvite::find(cam.as_bytes()).unwrap().offer(),
            SlpOffer::Webcam
        );
        let pic = b"INVITE MSNMSGR:b@x MSNSLP/1.0\r\n\r\nEUF-GUID: {A4268EEC-FEC5-49E5-95C3-F126696BDBF6}\r\nAppID: 1\r\n";
        assert_eq!(SlpInvite::find(pic).unwrap().offer(), SlpOffer::Other);
        assert_eq!(SlpInvite::find(b"BYE MSNMSGR:b@x"), None);
    }

    #[test]
    fn p2p_v1_header_and_data() {
        let mut body = vec![0u8; 48];
        body[4..8].copy_from_slice(&7u32.to_le_bytes());
        body[16..24].copy_from_slice(&5u64.to_le_bytes());
        body[32..36].copy_from_slice(&5u32.to_le_bytes());
        body.extend_from_slice(b"hello\0\0\0\0");
        let c = P2pChunk::parse(&body, false);
        let h = c.v1.unwrap();
        assert_eq!(
            (h.session_id, h.id, h.total_size, h.chunk_len),
            (0, 7, 5, 5)
        );
        assert_eq!(c.data, b"hello");
        // A chunk length beyond the body falls back to the raw body.
        body[32..36].copy_from_slice(&5000u32.to_le_bytes());
        assert_eq!(P2pChunk::parse(&body, false).v1, None);
        assert_eq!(P2pChunk::parse(&body[..10], false).v1, None);
    }

    #[test]
    fn ids_drop_endpoint_guids_and_case() {
        assert_eq!(normalize_id("Bob@Live.COM;{1234-abcd}"), "bob@live.com");
        assert_eq!(normalize_id("a@b.c"), "a@b.c");
    }

    #[test]
    fn content_type_is_picked_up_as_header_finds_it() {
        let cases: [&[u8]; 7] = [
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nhi",
            b"content-type :text/x-msmsgscontrol\r\nTypingUser: a@b\r\n\r\n",
            b"  CONTENT-TYPE:\ttext/plain\n\nbody",
            b"Content-Type: first\r\nContent-Type: second\r\n\r\n",
            b"Content-Typo: x\r\nContent-Type: y",
            b"Content-Type",
            b"\r\n\r\nContent-Type: in the body",
        ];
        for p in cases {
            let m = Mime::parse(p);
            assert_eq!(m.content_type, m.header("Content-Type"), "{p:?}");
        }
        assert_eq!(Mime::parse(cases[3]).content_type, Some(&b"first"[..]));
        assert_eq!(Mime::parse(cases[6]).content_type, None);
    }

    #[test]
    fn the_usual_text_content_type_is_classified_as_the_general_rules_do() {
        let usual = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nhi";
        let spelled = b"MIME-Version: 1.0\r\nContent-Type: TEXT/plain ;charset=\"UTF-8\"\r\n\r\nhi";
        assert_eq!(classify(usual), classify(spelled));
        assert_eq!(
            classify(usual),
            MsgContent::Text {
                charset: Some("UTF-8"),
                body: b"hi"
            }
        );
    }

    #[test]
    fn charset_parameters() {
        assert_eq!(charset_of(b"text/plain; charset=UTF-8"), Some("UTF-8"));
        assert_eq!(charset_of(b"text/plain;CHARSET = \"big5\" ; x=y"), None);
        assert_eq!(
            charset_of(b"text/plain; x=y; Charset=\"big5\""),
            Some("big5")
        );
        assert_eq!(
            charset_of(b"text/plain; charset=\xff; charset=koi8-r"),
            Some("koi8-r")
        );
        assert_eq!(charset_of(b"charset=UTF-8"), None);
        assert_eq!(charset_of(b"text/plain; charset"), None);
    }

    #[test]
    fn addresses_as_ids_are_normalized_like_strings() {
        for a in [
            "Bob@Live.COM;{1234-abcd}",
            " a@b.c ",
            "",
            ";x",
            "\u{e9}T\u{e9}@x.fr",
        ] {
            assert_eq!(address_id(a).as_str(), normalize_id(a), "{a:?}");
        }
    }

    mod arbitrary_bytes {
        use super::super::*;
        use proptest::prelude::*;

        /// The charset rule as first written (split, trim, `find_map`).
        fn charset_model(ct: &[u8]) -> Option<&str> {
            ct.split(|&b| b == b';').skip(1).find_map(|p| {
                let p = p.trim_ascii();
                let eq = p.iter().position(|&b| b == b'=')?;
                if p[..eq].eq_ignore_ascii_case(b"charset") {
                    std::str::from_utf8(p[eq + 1..].trim_ascii())
                        .ok()
                        .map(|v| v.trim_matches('"'))
                } else {
                    None
                }
            })
        }

        /// Header blocks made of names, separators and line ends in any order.
        fn header_block() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(
                prop_oneof![
                    Just(&b"Content-Type"[..]),
                    Just(&b"content-TYPE"[..]),
                    Just(&b"Content-Typ"[..]),
                    Just(&b"TypingUser"[..]),
                    Just(&b":"[..]),
                    Just(&b" "[..]),
                    Just(&b"\t"[..]),
                    Just(&b"\r\n"[..]),
                    Just(&b"\n"[..]),
                    Just(&b"\r"[..]),
                    Just(&b"text/plain"[..]),
                    Just(&b";"[..]),
                    Just(&b"charset="[..]),
                    Just(&b"UTF-8"[..]),
                    Just(&b"\""[..]),
                    Just(&b"\xff"[..]),
                    Just(&b"x"[..]),
                ],
                0..40,
            )
            .prop_map(|parts| parts.concat())
        }

        proptest! {
            /// The one-pass `Content-Type` and the line-by-line lookup agree,
            /// and so do the charset rule and its first form.
            #[test]
            fn content_type_and_charset_match_their_models(block in header_block()) {
                let m = Mime::parse(&block);
                prop_assert_eq!(m.content_type, m.header("Content-Type"));
                prop_assert_eq!(charset_of(&block), charset_model(&block));
                if let Some(ct) = m.content_type {
                    prop_assert_eq!(charset_of(ct), charset_model(ct));
                }
            }

            /// Lengths parse as `str::parse` would take them (at most ten digits).
            #[test]
            fn lengths_parse_like_str_parse(tok in proptest::collection::vec(
                prop_oneof![Just(b'0'), Just(b'9'), Just(b'5'), Just(b'+'), Just(b' '), Just(b'/'), Just(b':')],
                0..12,
            )) {
                let model = (!tok.is_empty() && tok.len() <= 10 && tok.iter().all(u8::is_ascii_digit))
                    .then(|| std::str::from_utf8(&tok).ok()?.parse::<u64>().ok())
                    .flatten();
                prop_assert_eq!(parse_len(&tok), model);
            }

            /// Once a command's length is known, more bytes never change it:
            /// the session may keep it instead of framing again.
            #[test]
            fn a_known_length_stays_the_length(
                line in prop_oneof![
                    Just(&b"MSG 5 N 40\r\n"[..]), Just(&b"MSG a@b.c A 3\r\n"[..]), Just(&b"241 7 4\r\n"[..]),
                    Just(&b"UUX 9 12\r\n"[..]), Just(&b"GCF 4 Shields.xml 3\r\n"[..]), Just(&b"CHG 3 NLN\r\n"[..]),
                ],
                tail in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                let stream = [line, &tail].concat();
                let mut known = None;
                for cut in 0..=stream.len() {
                    match frame_command(&stream[..cut]) {
                        Frame::NeedMore(Some(n)) => {
                            prop_assert!(known.map_or(true, |k| k == n));
                            known = Some(n);
                        }
                        Frame::Unit(n) => {
                            prop_assert!(known.map_or(true, |k| k == n));
                            break;
                        }
                        Frame::NeedMore(None) => prop_assert!(known.is_none()),
                        Frame::Invalid | Frame::TooLong => prop_assert!(known.is_none()),
                    }
                }
            }

            #[test]
            fn framing_resync_and_views_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
                match frame_command(&bytes) {
                    Frame::Unit(n) => {
                        prop_assert!(n <= bytes.len());
                        let _ = parse_command(&bytes[..n]);
                    }
                    Frame::NeedMore(Some(n)) => prop_assert!(n > bytes.len() && n <= MAX_PAYLOAD + MAX_LINE),
                    _ => {}
                }
                match resync(&bytes) {
                    Boundary::At(p) | Boundary::NeedMore(p) => prop_assert!(p < bytes.len()),
                    Boundary::Skip(p) => prop_assert!(p <= bytes.len()),
                }
                let _ = classify(&bytes);
                let _ = SlpInvite::find(&bytes).map(|i| i.offer());
                let _ = file_context(&bytes);
                prop_assert!(base64_decode(&bytes, 100).len() <= 100);
            }
        }
    }
}
