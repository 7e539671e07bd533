//! The MSN HTTP gateway on the wire: pure parsing of the HTTP/1.1 messages
//! that carry MSNP in their bodies (`POST /gateway/gateway.dll`, replies with
//! `X-MSN-Messenger`). Owns HTTP framing (Content-Length, chunked, keep-alive
//! pipelining), de-chunking, the gateway query string and header. It does not
//! stitch streams or build events (that is `session.rs`); no I/O, no clock,
//! bounded allocations (protocols.md §1 "HTTP gateway").

use std::borrow::Cow;

/// Longest HTTP header block accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest body accepted (gateway bodies are a few KB).
pub const MAX_BODY: usize = 256 * 1024;
/// Most chunks in one chunked body.
const MAX_CHUNKS: usize = 4096;

/// Where the next HTTP message ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpFrame {
    Unit(usize),
    /// More bytes are needed; `Some(n)` when the message is known to be `n`
    /// bytes (a complete head with a `Content-Length`).
    NeedMore(Option<usize>),
    Invalid,
}

/// The first line of an HTTP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request { method: &'a str, target: &'a str },
    Response { status: u16 },
}

/// One HTTP message with its body de-chunked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpMessage<'a> {
    pub start: StartLine<'a>,
    /// The header lines (after the start line, without the blank line);
    /// looked up on demand, a gateway message has a handful.
    head: &'a [u8],
    pub body: Cow<'a, [u8]>,
}

impl<'a> HttpMessage<'a> {
    /// The value of the first header called `name` (case-insensitive), when
    /// it is text.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        header_lines(self.head)
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The `Name: value` header lines, trimmed, in order (at most [`MAX_HEADERS`]).
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        header_lines(self.head)
    }
}

/// The `Name: value` lines of a header block (lines without a colon are
/// skipped), trimmed, at most [`MAX_HEADERS`] of them.
fn header_lines(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    head.split(|&b| b == b'\n')
        .filter_map(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            let c = memchr::memchr(b':', l)?;
            Some((l[..c].trim_ascii(), l[c + 1..].trim_ascii()))
        })
        .take(MAX_HEADERS)
}

/// Whether `buf` starts like an HTTP request or response line.
pub fn starts_http(buf: &[u8]) -> bool {
    const STARTS: [&[u8]; 3] = [b"POST ", b"GET ", b"HTTP/1."];
    STARTS.iter().any(|s| {
        let n = s.len().min(buf.len());
        n > 0 && buf[..n] == s[..n]
    })
}

struct Head<'a> {
    start: StartLine<'a>,
    /// The header lines after the start line.
    lines: &'a [u8],
    len: usize,
}

/// Most header lines kept.
const MAX_HEADERS: usize = 64;

/// The end of the header block: the offset of the first `\r\n\r\n` that
/// lies inside `window`.
fn head_end(window: &[u8]) -> Option<usize> {
    // Each newline is checked for completing the pattern, so the first
    // completion found is the first occurrence.
    memchr::memchr_iter(b'\n', window)
        .find(|&nl| nl >= 3 && &window[nl - 3..=nl] == b"\r\n\r\n")
        .map(|nl| nl - 3)
}

fn parse_head(buf: &[u8]) -> Result<Option<Head<'_>>, ()> {
    if buf.is_empty() {
        return Ok(None);
    }
    if !starts_http(buf) {
        return Err(());
    }
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let Some(end) = head_end(window) else {
        return if buf.len() >= MAX_HEAD {
            Err(())
        } else {
            Ok(None)
        };
    };
    let head = &buf[..end];
    let (first, lines) = match memchr::memchr(b'\n', head) {
        Some(nl) => (&head[..nl], &head[nl + 1..]),
        None => (head, &head[head.len()..]),
    };
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let first = std::str::from_utf8(first).map_err(|_| ())?;
    let mut parts = first.split(' ');
    let a = parts.next().ok_or(())?;
    let b = parts.next().ok_or(())?;
    let start = if a.starts_with("HTTP/1.") {
        let status = b.parse::<u16>().map_err(|_| ())?;
        StartLine::Response { status }
    } else {
        StartLine::Request {
            method: a,
            target: b,
        }
    };
    Ok(Some(Head {
        start,
        lines,
        len: end + 4,
    }))
}

enum BodyLen {
    None,
    Length(usize),
    Chunked,
}

fn body_len(head: &Head<'_>) -> Result<BodyLen, ()> {
    // The first header of each name counts: one pass finds both.
    let (mut te, mut cl) = (None, None);
    for (name, value) in header_lines(head.lines) {
        if te.is_none() && name.eq_ignore_ascii_case(b"Transfer-Encoding") {
            te = Some(value);
        } else if cl.is_none() && name.eq_ignore_ascii_case(b"Content-Length") {
            cl = Some(value);
        }
        if te.is_some() && cl.is_some() {
            break;
        }
    }
    if let Some(te) = te {
        if te.windows(7).any(|w| w.eq_ignore_ascii_case(b"chunked")) {
            return Ok(BodyLen::Chunked);
        }
    }
    if let Some(cl) = cl {
        let s = std::str::from_utf8(cl).map_err(|_| ())?;
        let n: u64 = s.trim().parse().map_err(|_| ())?;
        if n > MAX_BODY as u64 {
            return Err(());
        }
        return Ok(BodyLen::Length(n as usize));
    }
    Ok(BodyLen::None)
}

/// Walk a chunked body starting at `buf[0]`: its total wire length, or
/// `Ok(None)` when incomplete.
fn chunked_len(buf: &[u8], mut on_chunk: impl FnMut(&[u8])) -> Result<Option<usize>, ()> {
    let mut pos = 0usize;
    let mut body = 0usize;
    for _ in 0..MAX_CHUNKS {
        let rest = &buf[pos..];
        let Some(nl) = memchr::memchr(b'\n', &rest[..rest.len().min(1024)]) else {
            return if rest.len() >= 1024 {
                Err(())
            } else {
                Ok(None)
            };
        };
        let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
        let hex = line.split(|&b| b == b';').next().unwrap_or_default();
        let hex = std::str::from_utf8(hex.trim_ascii()).map_err(|_| ())?;
        if hex.is_empty() || hex.len() > 8 {
            return Err(());
        }
        let size = usize::from_str_radix(hex, 16).map_err(|_| ())?;
        body = body.saturating_add(size);
        if body > MAX_BODY {
            return Err(());
        }
        pos += nl + 1;
        if size == 0 {
            // Trailer lines until an empty line.
            loop {
                let rest = &buf[pos..];
                let Some(nl) = memchr::memchr(b'\n', &rest[..rest.len().min(1024)]) else {
                    return if rest.len() >= 1024 {
                        Err(())
                    } else {
                        Ok(None)
                    };
                };
                pos += nl + 1;
                if rest[..nl]
                    .strip_suffix(b"\r")
                    .unwrap_or(&rest[..nl])
                    .is_empty()
                {
                    return Ok(Some(pos));
                }
            }
        }
        let Some(data) = buf.get(pos..pos + size) else {
            return Ok(None);
        };
        on_chunk(data);
        pos += size;
        match buf.get(pos..pos + 2) {
            Some(b"\r\n") => pos += 2,
            Some(_) => return Err(()),
            None => return Ok(None),
        }
    }
    Err(())
}

/// Cut the next HTTP message (head and body) from `buf`.
pub fn frame_http(buf: &[u8]) -> HttpFrame {
    let head = match parse_head(buf) {
        Err(()) => return HttpFrame::Invalid,
        Ok(None) => return HttpFrame::NeedMore(None),
        Ok(Some(h)) => h,
    };
    let no_body = matches!(head.start, StartLine::Response { status } if status < 200 || status == 204 || status == 304);
    match body_len(&head) {
        Err(()) => HttpFrame::Invalid,
        _ if no_body => HttpFrame::Unit(head.len),
        Ok(BodyLen::None) => HttpFrame::Unit(head.len),
        Ok(BodyLen::Length(n)) => {
            let total = head.len + n;
            if buf.len() >= total {
                HttpFrame::Unit(total)
            } else {
                HttpFrame::NeedMore(Some(total))
            }
        }
        Ok(BodyLen::Chunked) => match chunked_len(&buf[head.len..], |_| {}) {
            Err(()) => HttpFrame::Invalid,
            Ok(None) => HttpFrame::NeedMore(None),
            Ok(Some(n)) => HttpFrame::Unit(head.len + n),
        },
    }
}

/// Parse a whole message as cut by [`frame_http`].
pub fn parse_http(unit: &[u8]) -> Option<HttpMessage<'_>> {
    let head = parse_head(unit).ok()??;
    let rest = &unit[head.len..];
    let body: Cow<'_, [u8]> = match body_len(&head).ok()? {
        BodyLen::None => Cow::Borrowed(&rest[..0]),
        BodyLen::Length(n) => Cow::Borrowed(rest.get(..n).unwrap_or(rest)),
        BodyLen::Chunked => {
            let mut v = Vec::new();
            chunked_len(rest, |c| v.extend_from_slice(c)).ok()??;
            Cow::Owned(v)
        }
    };
    Some(HttpMessage {
        start: head.start,
        head: head.lines,
        body,
    })
}

/// The next line start in `buf` that begins an HTTP message.
pub fn resync_http(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        if starts_http(&buf[pos..]) && pos < buf.len() {
            return Some(pos);
        }
        let nl = memchr::memchr(b'\n', &buf[pos..])?;
        pos += nl + 1;
    }
}

/// What a gateway request's target says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayTarget {
    /// `open`, `poll`, or none for data.
    pub action: Option<String>,
    /// `NS` or `SB` (on `Action=open`).
    pub server: Option<String>,
    /// The stable part (before the first `.`) of `SessionID`.
    pub session: Option<String>,
}

/// Parse `/gateway/gateway.dll?...` (or the absolute proxy form); `None` when
/// the target is not the gateway.
pub fn gateway_target(target: &str) -> Option<GatewayTarget> {
    let path_at = target.find("/gateway/gateway.dll")?;
    let rest = &target[path_at + "/gateway/gateway.dll".len()..];
    let query = rest.strip_prefix('?').unwrap_or("");
    let mut t = GatewayTarget::default();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k.to_ascii_lowercase().as_str() {
            "action" => t.action = Some(v.to_ascii_lowercase()),
            "server" => t.server = Some(v.to_ascii_uppercase()),
            "sessionid" => t.session = Some(stable_session(v)),
            _ => {}
        }
    }
    Some(t)
}

/// `X-MSN-Messenger: SessionID=<id>.<n>; GW-IP=<ip>[; Session=close]` →
/// (stable session id, closed).
pub fn messenger_header(v: &str) -> Option<(String, bool)> {
    let mut sid = None;
    let mut closed = false;
    for part in v.split(';') {
        let (k, val) = part.trim().split_once('=').unwrap_or((part.trim(), ""));
        if k.eq_ignore_ascii_case("SessionID") {
            sid = Some(stable_session(val.trim()));
        } else if k.eq_ignore_ascii_case("Session") && val.trim().eq_ignore_ascii_case("close") {
            closed = true;
        }
    }
    sid.filter(|s| !s.is_empty()).map(|s| (s, closed))
}

/// The part of a gateway session id that stays the same between exchanges,
/// bounded and restricted to printable ASCII.
fn stable_session(v: &str) -> String {
    v.split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_with_content_length_and_pipelining() {
        let a = b"POST /gateway/gateway.dll?SessionID=123.4 HTTP/1.1\r\nContent-Type: application/x-msn-messenger\r\nContent-Length: 5\r\n\r\nOUT\r\n";
        let mut two = a.to_vec();
        two.extend_from_slice(a);
        assert_eq!(frame_http(&two), HttpFrame::Unit(a.len()));
        assert_eq!(
            frame_http(&a[..a.len() - 1]),
            HttpFrame::NeedMore(Some(a.len()))
        );
        assert_eq!(frame_http(&a[..20]), HttpFrame::NeedMore(None));
        let m = parse_http(a).unwrap();
        assert_eq!(&*m.body, b"OUT\r\n");
        match m.start {
            StartLine::Request { method, target } => {
                assert_eq!(method, "POST");
                let t = gateway_target(target).unwrap();
                assert_eq!(t.session.as_deref(), Some("123"));
                assert_eq!(t.action, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn chunked_response_is_dechunked() {
        let r = b"HTTP/1.1 200 OK\r\nX-MSN-Messenger: SessionID=77.1; GW-IP=1.2.3.4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nJOI \r\n3;x=y\r\na@b\r\n0\r\n\r\nHTTP/1.1";
        let n = r.len() - 8;
        assert_eq!(frame_http(r), HttpFrame::Unit(n));
        for cut in 0..n {
            assert_ne!(frame_http(&r[..cut]), HttpFrame::Invalid, "cut {cut}");
        }
        let m = parse_http(&r[..n]).unwrap();
        assert_eq!(&*m.body, b"JOI a@b");
        assert_eq!(
            messenger_header(m.header("x-msn-messenger").unwrap()),
            Some(("77".to_string(), false))
        );
    }

    #[test]
    fn hostile_lengths_are_invalid() {
        assert_eq!(
            frame_http(b"POST /x HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n"),
            HttpFrame::Invalid
        );
        assert_eq!(
            frame_http(b"POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            HttpFrame::Invalid
        );
        assert_eq!(
            frame_http(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n"),
            HttpFrame::Invalid
        );
        assert_eq!(
            frame_http(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            HttpFrame::Invalid
        );
        assert_eq!(frame_http(b"SSH-2.0\r\n"), HttpFrame::Invalid);
        let mut big = b"POST / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 1, b'a');
        assert_eq!(frame_http(&big), HttpFrame::Invalid);
    }

    #[test]
    fn gateway_targets_and_headers() {
        let t = gateway_target(
            "http://gateway.messenger.hotmail.com/gateway/gateway.dll?Action=open&Server=SB&IP=1.2.3.4",
        )
        .unwrap();
        assert_eq!(t.action.as_deref(), Some("open"));
        assert_eq!(t.server.as_deref(), Some("SB"));
        assert_eq!(t.session, None);
        assert_eq!(gateway_target("/index.html"), None);
        assert_eq!(
            messenger_header("SessionID=9.9.9; GW-IP=1.1.1.1; Session=close"),
            Some(("9".to_string(), true))
        );
        assert_eq!(messenger_header("GW-IP=1.1.1.1"), None);
    }

    #[test]
    fn resync_finds_the_next_message_start() {
        assert_eq!(
            resync_http(b"junk\r\nmore\r\nHTTP/1.1 200 OK\r\n"),
            Some(12)
        );
        assert_eq!(resync_http(b"POST /"), Some(0));
        assert_eq!(resync_http(b"junk"), None);
    }

    #[test]
    fn the_first_header_of_a_name_counts() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\ncontent-length: 2\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\nno colon here\r\n\r\nokHTTP";
        assert_eq!(frame_http(r), HttpFrame::Unit(r.len() - 4));
        let m = parse_http(&r[..r.len() - 4]).unwrap();
        assert_eq!(m.header("CONTENT-LENGTH"), Some("2"));
        assert_eq!(m.headers().count(), 4);
        assert_eq!(&*m.body, b"ok");
        let bad = b"HTTP/1.1 200 OK\r\nX: \xff\r\nX: y\r\n\r\n";
        assert_eq!(parse_http(bad).unwrap().header("x"), None);
    }

    mod arbitrary_bytes {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// The head ends where the first CRLFCRLF of the window starts.
            #[test]
            fn head_end_is_the_first_blank_line(parts in proptest::collection::vec(
                prop_oneof![Just(&b"\r"[..]), Just(&b"\n"[..]), Just(&b"\r\n"[..]), Just(&b"ab"[..]), Just(&b":"[..])],
                0..30,
            )) {
                let b = parts.concat();
                prop_assert_eq!(head_end(&b), memchr::memmem::find(&b, b"\r\n\r\n"));
            }

            /// Once a message's length is known, more bytes never change it:
            /// the session may keep it instead of framing again.
            #[test]
            fn a_known_length_stays_the_length(body in proptest::collection::vec(any::<u8>(), 0..80), more in proptest::collection::vec(any::<u8>(), 0..40)) {
                let mut msg = format!("POST /gateway/gateway.dll?SessionID=1.2 HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
                msg.extend_from_slice(&body);
                let whole = msg.len();
                msg.extend_from_slice(&more);
                let mut known = None;
                for cut in 0..=msg.len() {
                    match frame_http(&msg[..cut]) {
                        HttpFrame::NeedMore(Some(n)) => {
                            prop_assert_eq!(n, whole);
                            known = Some(n);
                        }
                        HttpFrame::NeedMore(None) => prop_assert!(known.is_none()),
                        HttpFrame::Unit(n) => {
                            prop_assert_eq!(n, whole);
                            prop_assert_eq!(cut, whole);
                            break;
                        }
                        HttpFrame::Invalid => prop_assert!(false, "cut {}", cut),
                    }
                }
            }

            #[test]
            fn http_framing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
                if let HttpFrame::Unit(n) = frame_http(&bytes) {
                    prop_assert!(n <= bytes.len());
                    let m = parse_http(&bytes[..n]);
                    prop_assert!(m.is_some_and(|m| m.body.len() <= MAX_BODY));
                }
                let _ = resync_http(&bytes);
                let text = String::from_utf8_lossy(&bytes);
                let _ = gateway_target(&text);
                let _ = messenger_header(&text);
            }

            #[test]
            fn chunked_bodies_survive_any_chunk_sizes(body in proptest::collection::vec(any::<u8>(), 0..600), sizes in proptest::collection::vec(1usize..64, 1..20)) {
                let mut msg = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                let mut rest = &body[..];
                let mut i = 0;
                while !rest.is_empty() {
                    let n = sizes[i % sizes.len()].min(rest.len());
                    msg.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                    msg.extend_from_slice(&rest[..n]);
                    msg.extend_from_slice(b"\r\n");
                    rest = &rest[n..];
                    i += 1;
                }
                msg.extend_from_slice(b"0\r\n\r\n");
                prop_assert_eq!(frame_http(&msg), HttpFrame::Unit(msg.len()));
                let parsed = parse_http(&msg).unwrap();
                prop_assert_eq!(&*parsed.body, &body[..]);
            }
        }
    }
}
