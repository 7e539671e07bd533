//! MSN Messenger (MSNP 8–21, notification server and switchboard, and the
//! HTTP gateway): the content probe and the wiring into the proto framework.
//! Command framing and payload views are in `parser.rs`, HTTP in `http.rs`,
//! state and events in `session.rs`. Nothing here buffers bytes or builds
//! events (protocols.md §1, quick detection table).

pub mod http;
pub mod parser;
pub mod session;

use crate::event::Protocol;
use crate::proto::{Decoder, ProbeStart, Role, Session, Verdict};

pub const DECODER: Decoder = Decoder {
    protocol: Protocol::Msn,
    // IMSpector's MSN plugin listened on 1863 only.
    classic_ports: &[1863],
    usual_ports: &[1863, 80],
    // MSNP never starts inside TLS (only the SOAP login does, over HTTPS).
    tls_ports: &[],
    probe,
    session: new_session,
};

fn new_session() -> Box<dyn Session> {
    Box::new(session::MsnSession::default())
}

/// Lines a mid-stream probe reads before giving up.
const PROBE_LINES: usize = 16;

/// Does this direction look like MSNP or the MSN HTTP gateway?
pub fn probe(buf: &[u8], start: ProbeStart) -> Verdict {
    if http::starts_http(buf) {
        return probe_http(buf);
    }
    if start == ProbeStart::Stream && !command_prefix(buf) {
        return Verdict::No;
    }
    let mut pos = 0usize;
    for _ in 0..PROBE_LINES {
        let rest = &buf[pos.min(buf.len())..];
        let Some(nl) = memchr::memchr(b'\n', rest) else {
            return if rest.len() > parser::MAX_LINE {
                Verdict::No
            } else {
                Verdict::NeedMore
            };
        };
        let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
        match evidence(line, &rest[nl + 1..]) {
            Some(role) => return Verdict::Yes(role),
            None if start == ProbeStart::Stream && pos == 0 && !command_shaped(line) => {
                return Verdict::No
            }
            None => {}
        }
        // Skip a payload we can frame, so its lines are not taken for commands.
        pos += match parser::frame_command(rest) {
            parser::Frame::Unit(n) => n,
            parser::Frame::NeedMore(Some(_)) => return Verdict::NeedMore,
            _ => nl + 1,
        };
    }
    Verdict::No
}

/// The bytes so far could start a command line (`ABC ` or `123 `).
fn command_prefix(buf: &[u8]) -> bool {
    let head = &buf[..buf.len().min(3)];
    (head.iter().all(u8::is_ascii_uppercase) || head.iter().all(u8::is_ascii_digit))
        && buf
            .get(3)
            .map_or(true, |b| matches!(b, b' ' | b'\r' | b'\n'))
}

fn command_shaped(line: &[u8]) -> bool {
    line.len() >= 3
        && (line[..3].iter().all(u8::is_ascii_uppercase)
            || line[..3].iter().all(u8::is_ascii_digit))
        && line.get(3).map_or(true, |&b| b == b' ')
}

fn is_trid(t: &[u8]) -> bool {
    !t.is_empty() && t.len() <= 10 && t.iter().all(u8::is_ascii_digit)
}

fn is_email(t: &[u8]) -> bool {
    let at = t.iter().position(|&b| b == b'@');
    matches!(at, Some(i) if i > 0 && i + 1 < t.len())
}

/// A switchboard cookie: `1234.5678.9012` style, or a long opaque token.
fn is_cookie(t: &[u8]) -> bool {
    t.len() >= 6
        && t.iter()
            .all(|b| b.is_ascii_alphanumeric() || b".-_=+/".contains(b))
}

/// What one complete line proves, and who wrote it.
fn evidence(line: &[u8], after: &[u8]) -> Option<Role> {
    if !command_shaped(line) {
        return None;
    }
    let t: Vec<&[u8]> = line
        .split(|&b| b == b' ')
        .filter(|p| !p.is_empty())
        .collect();
    let tok = |i: usize| t.get(i).copied().unwrap_or_default();
    match tok(0) {
        b"VER" if is_trid(tok(1)) => {
            let msnp = t[2..].iter().any(|p| {
                p.len() > 4 && p.starts_with(b"MSNP") && p[4..].iter().all(u8::is_ascii_digit)
            });
            msnp.then_some(Role::Unknown)
        }
        b"USR" if is_trid(tok(1)) => match (tok(2), tok(3), tok(4)) {
            (b"TWN" | b"SSO" | b"MD5", b"I", e) if is_email(e) => Some(Role::Client),
            (b"OK", e, _) if is_email(e) => Some(Role::Server),
            (e, c, _) if is_email(e) && is_cookie(c) => Some(Role::Client),
            _ => None,
        },
        b"ANS" if is_trid(tok(1)) && is_email(tok(2)) && is_cookie(tok(3)) && is_trid(tok(4)) => {
            Some(Role::Client)
        }
        b"IRO" if is_trid(tok(1)) && is_trid(tok(2)) && is_trid(tok(3)) && is_email(tok(4)) => {
            Some(Role::Server)
        }
        b"CAL" if is_trid(tok(1)) && is_email(tok(2)) => Some(Role::Client),
        b"XFR"
            if is_trid(tok(1))
                && (tok(2) == b"SB" || tok(2) == b"NS")
                && tok(3).contains(&b':') =>
        {
            Some(Role::Server)
        }
        b"MSG" if t.len() >= 4 && is_trid(t[t.len() - 1]) && mime_start(after) => {
            if is_email(tok(1)) || tok(1) == b"Hotmail" {
                Some(Role::Server)
            } else if is_trid(tok(1)) && matches!(tok(2), b"U" | b"N" | b"A" | b"D") {
                Some(Role::Client)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A MSG payload starts with a MIME header (or has not arrived yet).
fn mime_start(after: &[u8]) -> bool {
    let n = after.len().min(13);
    n == 0
        || after[..n].eq_ignore_ascii_case(&b"MIME-Version:"[..n])
        || after[..n].eq_ignore_ascii_case(&b"Content-Type:"[..n])
}

fn probe_http(buf: &[u8]) -> Verdict {
    let window = &buf[..buf.len().min(http::MAX_HEAD)];
    let head_end = memchr::memmem::find(window, b"\r\n\r\n");
    let head = &window[..head_end.unwrap_or(window.len())];
    let first_line = &head[..memchr::memchr(b'\n', head).unwrap_or(head.len())];
    let lower = head.to_ascii_lowercase();
    if buf.starts_with(b"POST ") || buf.starts_with(b"GET ") {
        if memchr::memmem::find(first_line, b"/gateway/gateway.dll").is_some() {
            return Verdict::Yes(Role::Client);
        }
        if memchr::memchr(b'\n', head).is_some() {
            return Verdict::No;
        }
    } else if buf.starts_with(b"HTTP/1.") {
        if memchr::memmem::find(&lower, b"x-msn-messenger:").is_some()
            || memchr::memmem::find(&lower, b"application/x-msn-messenger").is_some()
        {
            return Verdict::Yes(Role::Server);
        }
        if head_end.is_some() {
            return Verdict::No;
        }
    }
    if buf.len() >= http::MAX_HEAD {
        Verdict::No
    } else {
        Verdict::NeedMore
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_the_detection_table() {
        use ProbeStart::*;
        assert_eq!(
            probe(b"VER 1 MSNP15 MSNP14 CVR0\r\n", Stream),
            Verdict::Yes(Role::Unknown)
        );
        assert_eq!(
            probe(b"USR 1 a@b.com 1234.5678.9012\r\n", Stream),
            Verdict::Yes(Role::Client)
        );
        assert_eq!(
            probe(b"ANS 1 a@b.com 849102291.520491113 11752013\r\n", Stream),
            Verdict::Yes(Role::Client)
        );
        assert_eq!(
            probe(b"USR 1 OK a@b.com Alice\r\n", Stream),
            Verdict::Yes(Role::Server)
        );
        assert_eq!(
            probe(b"IRO 1 1 2 b@c.com Bob\r\n", Stream),
            Verdict::Yes(Role::Server)
        );
        assert_eq!(probe(b"USR 1 a@b.com", Stream), Verdict::NeedMore);
        assert_eq!(
            probe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Stream),
            Verdict::No
        );
        assert_eq!(probe(b"USR 1 hello\r\n", Stream), Verdict::NeedMore);
        assert_eq!(probe(b"SSH-2.0-OpenSSH\r\n", Stream), Verdict::No);
        assert_eq!(probe(b"<?xml version='1.0'?>", Stream), Verdict::No);
        assert_eq!(
            probe(
                b"POST /gateway/gateway.dll?Action=open&Server=NS&IP=1.2.3.4 HTTP/1.1\r\n",
                Stream
            ),
            Verdict::Yes(Role::Client)
        );
        assert_eq!(
            probe(
                b"HTTP/1.1 200 OK\r\nX-MSN-Messenger: SessionID=1.1; GW-IP=2.2.2.2\r\n\r\n",
                Stream
            ),
            Verdict::Yes(Role::Server)
        );
        assert_eq!(
            probe(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", Stream),
            Verdict::No
        );
    }

    #[test]
    fn midstream_probe_skips_a_cut_body() {
        let s = b"t there\r\nMSG 1 N 5 typed\r\nMSG a@b.com A 19\r\nMIME-Version: 1.0\r\n";
        assert_eq!(probe(s, ProbeStart::Midstream), Verdict::Yes(Role::Server));
        let c = b"ly\r\nMSG 12 N 19\r\nMIME-Version: 1.0\r\n";
        assert_eq!(probe(c, ProbeStart::Midstream), Verdict::Yes(Role::Client));
        assert_eq!(
            probe(b"hello\r\nworld\r\n", ProbeStart::Midstream),
            Verdict::NeedMore
        );
    }
}
