//! IRC (RFC 1459/2812, IRCv3 tags): the content probe and the wiring into the
//! proto framework. Line parsing is in `parser.rs`, state and events in
//! `session.rs`. Nothing here buffers bytes or builds events.

pub mod parser;
pub mod session;

use crate::event::Protocol;
use crate::proto::{Decoder, ProbeStart, Role, Session, Verdict};

pub const DECODER: Decoder = Decoder {
    protocol: Protocol::Irc,
    // IMSpector's IRC plugin listened on 6667 only.
    classic_ports: &[6667],
    usual_ports: &[
        194, 6660, 6661, 6662, 6663, 6664, 6665, 6666, 6667, 6668, 6669, 7000,
    ],
    tls_ports: &[6697, 994],
    probe,
    session: new_session,
};

fn new_session() -> Box<dyn Session> {
    Box::new(session::IrcSession::default())
}

/// Lines a probe reads before deciding on weak evidence alone.
const PROBE_LINES: usize = 8;

/// Longest line a probe waits for (a line with IRCv3 tags may be long).
const PROBE_LINE_MAX: usize = 1024;

/// What one line says about the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Evidence {
    /// Not an IRC line.
    Bad,
    /// An IRC line that proves the protocol, written by this role.
    Strong(Role),
    /// A well-formed IRC line that other line protocols could also produce.
    Weak(Role),
}

/// Does this direction look like IRC? Reads whole lines only; a mid-stream
/// window may start inside a line, which is then skipped unless it parses
/// as a plausible line itself.
pub fn probe(buf: &[u8], start: ProbeStart) -> Verdict {
    let mut rest = buf;
    let mut first = true;
    let mut weak = 0usize;
    let mut weak_role = Role::Unknown;
    for _ in 0..PROBE_LINES {
        let Some(end) = parser::line_end(rest, 0) else {
            if weak >= 3 {
                return Verdict::Yes(weak_role);
            }
            if start == ProbeStart::Stream && first && !plausible_start(rest) {
                return Verdict::No;
            }
            let limit = if rest.first() == Some(&b'@') {
                crate::proto::PROBE_LIMIT
            } else {
                PROBE_LINE_MAX
            };
            return if rest.len() > limit {
                Verdict::No
            } else {
                Verdict::NeedMore
            };
        };
        let line = parser::trim_eol(&rest[..end]);
        rest = &rest[end..];
        let ev = evidence(line);
        let cut = first && start == ProbeStart::Midstream;
        first = false;
        match ev {
            Evidence::Strong(role) => return Verdict::Yes(role),
            Evidence::Weak(role) => {
                weak += 1;
                if weak_role == Role::Unknown {
                    weak_role = role;
                }
            }
            // Blank lines between commands are tolerated; a mid-stream
            // window's first line may be the tail of a cut line.
            Evidence::Bad if line.is_empty() || cut => {}
            Evidence::Bad => return Verdict::No,
        }
    }
    if weak >= 3 {
        Verdict::Yes(weak_role)
    } else {
        Verdict::NeedMore
    }
}

/// Can `partial`, the start of a line whose end has not arrived, still
/// become an IRC line? Judged on its first byte and, once complete, its
/// command word.
fn plausible_start(partial: &[u8]) -> bool {
    match partial.first() {
        None | Some(b'@') => return true,
        Some(b':') => {}
        Some(c) if c.is_ascii_alphanumeric() => {}
        Some(_) => return false,
    }
    let mut rest = partial;
    if rest.first() == Some(&b':') {
        match memchr::memchr(b' ', rest) {
            Some(i) => rest = &rest[i + 1..],
            None => return true,
        }
    }
    match memchr::memchr(b' ', rest) {
        Some(i) => parser::parse_line(&rest[..i]).is_some_and(|l| parser::known_command(&l)),
        None => true,
    }
}

/// A line that can begin an IRC stream picked up mid-way.
pub fn plausible_line(line: &[u8]) -> bool {
    evidence(parser::trim_eol(line)) != Evidence::Bad
}

fn evidence(line: &[u8]) -> Evidence {
    if line.is_empty() || line.contains(&0) {
        return Evidence::Bad;
    }
    let Some(l) = parser::parse_line(line) else {
        return Evidence::Bad;
    };
    if !parser::known_command(&l) {
        return Evidence::Bad;
    }
    let n = l.params().count();
    match (l.prefix, l.numeric()) {
        // Servers always prefix numerics.
        (None, Some(_)) => Evidence::Bad,
        (Some(_), Some(num)) => {
            if n >= 1 && matches!(num, 1..=5 | 251..=266 | 372..=376 | 433 | 451) {
                Evidence::Strong(Role::Server)
            } else if n >= 1 {
                Evidence::Weak(Role::Server)
            } else {
                Evidence::Bad
            }
        }
        (prefix, None) => {
            let role = if prefix.is_some() {
                Role::Server
            } else {
                Role::Client
            };
            if l.is("PRIVMSG") || l.is("NOTICE") {
                if n != 2 || !l.trailing() {
                    return Evidence::Bad;
                }
                if prefix.is_none() && l.is("NOTICE") {
                    // `NOTICE AUTH :*** Looking up your hostname` from old servers.
                    return Evidence::Strong(if l.param(0) == Some(b"AUTH") {
                        Role::Server
                    } else {
                        Role::Client
                    });
                }
                return Evidence::Strong(role);
            }
            if l.is("USER") {
                return if n == 4 {
                    Evidence::Strong(Role::Client)
                } else {
                    Evidence::Bad
                };
            }
            if l.is("NICK") {
                let ok = n == 1 && l.param(0).is_some_and(|p| !p.is_empty() && p.len() <= 64);
                return match (ok, prefix.is_some()) {
                    (false, _) => Evidence::Bad,
                    (true, true) => Evidence::Strong(Role::Server),
                    (true, false) => Evidence::Strong(Role::Client),
                };
            }
            if l.is("CAP") && prefix.is_none() {
                return match l.param(0) {
                    Some(p) if p.eq_ignore_ascii_case(b"LS") || p.eq_ignore_ascii_case(b"REQ") => {
                        Evidence::Strong(Role::Client)
                    }
                    _ => Evidence::Weak(Role::Client),
                };
            }
            if l.is("JOIN") && n >= 1 {
                return Evidence::Strong(role);
            }
            if (l.is("PING") || l.is("ERROR")) && prefix.is_none() {
                // Servers send these without a prefix too.
                return Evidence::Weak(Role::Unknown);
            }
            Evidence::Weak(role)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_registration_is_irc() {
        assert_eq!(
            probe(
                b"NICK brotest\r\nUSER brotest 0 * :x\r\n",
                ProbeStart::Stream
            ),
            Verdict::Yes(Role::Client)
        );
        assert_eq!(
            probe(b"CAP LS 302\r\n", ProbeStart::Stream),
            Verdict::Yes(Role::Client)
        );
        assert_eq!(probe(b"NICK bro", ProbeStart::Stream), Verdict::NeedMore);
    }

    #[test]
    fn server_greeting_is_irc() {
        assert_eq!(
            probe(
                b":irc.example NOTICE * :*** Looking up your hostname\r\n",
                ProbeStart::Stream
            ),
            Verdict::Yes(Role::Server)
        );
        assert_eq!(
            probe(b":irc.example 001 bob :Welcome\r\n", ProbeStart::Stream),
            Verdict::Yes(Role::Server)
        );
        assert_eq!(
            probe(b"NOTICE AUTH :*** hello\r\n", ProbeStart::Stream),
            Verdict::Yes(Role::Server)
        );
    }

    #[test]
    fn other_line_protocols_are_not_irc() {
        for s in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"220 mail.example ESMTP\r\n",
            b"USER anonymous\r\n",
            b"EHLO x\r\n",
            b"+OK POP3 ready\r\n",
            b"* OK IMAP4rev1\r\n",
            b"<stream:stream to='x'>",
        ] {
            assert_ne!(
                probe(s, ProbeStart::Stream),
                Verdict::Yes(Role::Client),
                "{s:?}"
            );
        }
        assert_eq!(
            probe(b"GET / HTTP/1.1\r\n", ProbeStart::Stream),
            Verdict::No
        );
        assert_eq!(probe(&[b'x'; 2000], ProbeStart::Stream), Verdict::No);
        assert_eq!(probe(b"<?xml version", ProbeStart::Stream), Verdict::No);
        assert_eq!(
            probe(b"SSH-2.0-OpenSSH", ProbeStart::Stream),
            Verdict::NeedMore
        );
        assert_eq!(probe(b"GET /index", ProbeStart::Stream), Verdict::No);
        assert_eq!(probe(b":srv 001 x", ProbeStart::Stream), Verdict::NeedMore);
        assert_eq!(probe(b"\x16\x03\x01", ProbeStart::Stream), Verdict::No);
    }

    #[test]
    fn midstream_skips_a_cut_first_line() {
        assert_eq!(
            probe(
                b"llo there\r\n:bob!b@h PRIVMSG #c :hi\r\n",
                ProbeStart::Midstream
            ),
            Verdict::Yes(Role::Server)
        );
        assert_eq!(
            probe(
                b"llo there\r\n:bob!b@h PRIVMSG #c :hi\r\n",
                ProbeStart::Stream
            ),
            Verdict::No
        );
    }

    #[test]
    fn weak_lines_add_up() {
        assert_eq!(
            probe(b"PING :a\r\nPING :b\r\nPONG :c\r\n", ProbeStart::Stream),
            Verdict::Yes(Role::Client)
        );
        assert_eq!(probe(b"PING :a\r\n", ProbeStart::Stream), Verdict::NeedMore);
    }
}
