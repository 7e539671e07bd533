//! IRC wire parsing (RFC 1459/2812, IRCv3 message tags): pure functions from
//! bytes to lines, commands, CTCP and DCC offers. No state, no I/O, no
//! allocation except where a decoded value is returned. Never panics.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

/// Most parameters a line can carry (RFC 2812 §2.3: 14 middle + trailing).
pub const MAX_PARAMS: usize = 15;

/// One IRC line, borrowed from the stream. The terminating CR LF is not part of it.
/// Parameters are split when asked for: chat needs only the first two, and
/// splitting all fifteen up front cost as much as the rest of the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// IRCv3 tags without the leading `@`.
    pub tags: Option<&'a [u8]>,
    /// Prefix without the leading `:`.
    pub prefix: Option<&'a [u8]>,
    pub command: &'a [u8],
    /// Everything after the command.
    rest: &'a [u8],
}

/// The parameters of a [`Line`], in order.
#[derive(Clone, Debug)]
pub struct Params<'a> {
    rest: &'a [u8],
    n: usize,
    trailing: bool,
}

impl<'a> Iterator for Params<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = skip_spaces(self.rest);
        if rest.is_empty() || self.n == MAX_PARAMS {
            self.rest = &[];
            return None;
        }
        self.n += 1;
        if self.n == MAX_PARAMS || rest[0] == b':' {
            self.trailing = rest[0] == b':';
            self.rest = &[];
            return Some(rest.strip_prefix(b":").unwrap_or(rest));
        }
        let (w, r) = split_word(rest);
        self.rest = r;
        Some(w)
    }
}

impl<'a> Line<'a> {
    pub fn params(&self) -> Params<'a> {
        Params {
            rest: self.rest,
            n: 0,
            trailing: false,
        }
    }

    pub fn param(&self, i: usize) -> Option<&'a [u8]> {
        self.params().nth(i)
    }

    /// The last parameter was written with a leading `:` (it may hold spaces).
    pub fn trailing(&self) -> bool {
        let mut p = self.params();
        p.by_ref().for_each(drop);
        p.trailing
    }

    /// The prefix's nick (up to `!` or `@`), when the prefix names a user.
    pub fn prefix_nick(&self) -> Option<&'a [u8]> {
        let p = self.prefix?;
        let end = p.iter().position(|&b| b == b'!' || b == b'@')?;
        Some(&p[..end])
    }

    /// The command compared case-insensitively with `name` (upper case).
    pub fn is(&self, name: &str) -> bool {
        self.command.eq_ignore_ascii_case(name.as_bytes())
    }

    /// The command is a three-digit numeric reply.
    pub fn numeric(&self) -> Option<u16> {
        if self.command.len() == 3 && self.command.iter().all(u8::is_ascii_digit) {
            Some(
                self.command
                    .iter()
                    .fold(0u16, |n, d| n * 10 + u16::from(d - b'0')),
            )
        } else {
            None
        }
    }

    /// The value of tag `key` (raw, IRCv3 escapes not undone), when present.
    pub fn tag(&self, key: &str) -> Option<&'a [u8]> {
        let tags = self.tags?;
        tags.split(|&b| b == b';').find_map(|kv| {
            let (k, v) = match kv.iter().position(|&b| b == b'=') {
                Some(i) => (&kv[..i], &kv[i + 1..]),
                None => (kv, &kv[kv.len()..]),
            };
            (k == key.as_bytes()).then_some(v)
        })
    }
}

/// Length of the line at the start of `buf` including its LF, searching from
/// `from` (bytes before it are known to hold no LF).
pub fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    let tail = buf.get(from..)?;
    memchr::memchr(b'\n', tail).map(|i| from + i + 1)
}

/// `line` without its trailing CR LF / LF.
pub fn trim_eol(line: &[u8]) -> &[u8] {
    let mut l = line;
    while let [rest @ .., b'\n' | b'\r'] = l {
        l = rest;
    }
    l
}

/// Parse one line (without CR LF). `None` when it has no command.
pub fn parse_line(line: &[u8]) -> Option<Line<'_>> {
    let mut rest = line;
    let mut tags = None;
    if let [b'@', after @ ..] = rest {
        let (t, r) = split_word(after);
        tags = Some(t);
        rest = r;
    }
    rest = skip_spaces(rest);
    let mut prefix = None;
    if let [b':', after @ ..] = rest {
        let (p, r) = split_word(after);
        prefix = Some(p);
        rest = skip_spaces(r);
    }
    let (command, rest) = split_word(rest);
    if command.is_empty() {
        return None;
    }
    Some(Line {
        tags,
        prefix,
        command,
        rest,
    })
}

fn split_word(b: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b' ', b) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &b[b.len()..]),
    }
}

fn skip_spaces(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&c| c == b' ').count();
    &b[n..]
}

/// Commands of RFC 1459/2812 and IRCv3 that clients or servers send.
const COMMANDS: &[&str] = &[
    "PASS",
    "NICK",
    "USER",
    "OPER",
    "MODE",
    "SERVICE",
    "QUIT",
    "SQUIT",
    "JOIN",
    "PART",
    "TOPIC",
    "NAMES",
    "LIST",
    "INVITE",
    "KICK",
    "PRIVMSG",
    "NOTICE",
    "MOTD",
    "LUSERS",
    "VERSION",
    "STATS",
    "LINKS",
    "TIME",
    "CONNECT",
    "TRACE",
    "ADMIN",
    "INFO",
    "SERVLIST",
    "SQUERY",
    "WHO",
    "WHOIS",
    "WHOWAS",
    "KILL",
    "PING",
    "PONG",
    "ERROR",
    "AWAY",
    "REHASH",
    "DIE",
    "RESTART",
    "SUMMON",
    "USERS",
    "WALLOPS",
    "USERHOST",
    "ISON",
    "CAP",
    "AUTHENTICATE",
    "TAGMSG",
    "ACCOUNT",
    "CHGHOST",
    "BATCH",
    "SETNAME",
    "WEBIRC",
    "STARTTLS",
    "KNOCK",
    "SILENCE",
    "WATCH",
    "MONITOR",
    "ACK",
];

/// The command is one IRC knows (a word from the tables, or a numeric).
pub fn known_command(line: &Line<'_>) -> bool {
    line.numeric().is_some() || COMMANDS.iter().any(|c| line.is(c))
}

/// A target is a channel when it starts with one of `chantypes`, possibly
/// behind STATUSMSG prefixes (`@#chan`, `+#chan`).
pub fn is_channel(target: &[u8], chantypes: &[u8]) -> bool {
    let t = match target {
        [b'@' | b'+' | b'%' | b'~' | b'&', rest @ ..]
            if rest.first().is_some_and(|c| chantypes.contains(c)) =>
        {
            rest
        }
        _ => target,
    };
    t.first().is_some_and(|c| chantypes.contains(c))
}

/// A client-to-client protocol request inside a PRIVMSG/NOTICE text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ctcp<'a> {
    /// Not CTCP: plain text.
    None,
    /// `\x01ACTION <text>\x01`.
    Action(&'a [u8]),
    /// `\x01DCC SEND <file> <ip> <port> [<size>]\x01`.
    DccSend(DccOffer<'a>),
    /// `\x01DCC CHAT chat <ip> <port>\x01`.
    DccChat(DccOffer<'a>),
    /// Any other CTCP (VERSION, PING, TIME, malformed DCC ...).
    Other,
}

/// The fields of a DCC offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DccOffer<'a> {
    pub name: Cow<'a, [u8]>,
    /// Where the offering client listens (`None` for reverse DCC or an unreadable host).
    pub addr: Option<(IpAddr, u16)>,
    pub size: Option<u64>,
}

/// Read the CTCP request in `text`, if any.
pub fn parse_ctcp(text: &[u8]) -> Ctcp<'_> {
    let Some(inner) = text.strip_prefix(b"\x01") else {
        return Ctcp::None;
    };
    let inner = inner.strip_suffix(b"\x01").unwrap_or(inner);
    let (verb, args) = split_word(inner);
    if verb.eq_ignore_ascii_case(b"ACTION") {
        return Ctcp::Action(args);
    }
    if !verb.eq_ignore_ascii_case(b"DCC") {
        return Ctcp::Other;
    }
    let (kind, args) = split_word(args);
    let is_send = kind.eq_ignore_ascii_case(b"SEND");
    if !is_send && !kind.eq_ignore_ascii_case(b"CHAT") {
        return Ctcp::Other;
    }
    let Some((name, rest)) = dcc_name(args) else {
        return Ctcp::Other;
    };
    let mut words = rest.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let host = words.next();
    let port = words
        .next()
        .and_then(parse_u64)
        .and_then(|p| u16::try_from(p).ok());
    let size = if is_send {
        words.next().and_then(parse_u64)
    } else {
        None
    };
    let addr = match (host.and_then(parse_dcc_host), port) {
        (Some(ip), Some(port)) if port != 0 => Some((ip, port)),
        _ => None,
    };
    let offer = DccOffer { name, addr, size };
    if is_send {
        Ctcp::DccSend(offer)
    } else {
        Ctcp::DccChat(offer)
    }
}

/// The file argument of a DCC request: a word, or a double-quoted string
/// (spaces allowed, `\"` unescaped as libpurple's `dcc_send.c` writes it).
fn dcc_name(args: &[u8]) -> Option<(Cow<'_, [u8]>, &[u8])> {
    let args = skip_spaces(args);
    if let [b'"', body @ ..] = args {
        let mut name = Vec::new();
        let mut i = 0;
        while i < body.len() {
            match body[i] {
                b'\\' if body.get(i + 1) == Some(&b'"') => {
                    name.push(b'"');
                    i += 2;
                }
                b'"' => return Some((Cow::Owned(name), &body[i + 1..])),
                c => {
                    name.push(c);
                    i += 1;
                }
            }
        }
        return None;
    }
    let (w, rest) = split_word(args);
    if w.is_empty() {
        return None;
    }
    Some((Cow::Borrowed(w), rest))
}

/// A DCC host: a 32-bit decimal IPv4 address, or an IPv4/IPv6 literal.
pub fn parse_dcc_host(h: &[u8]) -> Option<IpAddr> {
    if let Some(n) = parse_u64(h) {
        return u32::try_from(n).ok().map(|n| IpAddr::V4(Ipv4Addr::from(n)));
    }
    std::str::from_utf8(h).ok()?.parse().ok()
}

/// A decimal number of at most 19 digits.
pub fn parse_u64(w: &[u8]) -> Option<u64> {
    if w.is_empty() || w.len() > 19 || !w.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(w.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Remove mIRC formatting codes (bold, colour, reset, italic ...). Borrowed
/// when there were none.
pub fn strip_formatting(text: &[u8]) -> Cow<'_, [u8]> {
    const CODES: &[u8] = b"\x02\x03\x04\x0f\x11\x16\x1d\x1e\x1f";
    // Bit n set: byte n (< 32) is a formatting code.
    const MASK: u32 = (1 << 0x02)
        | (1 << 0x03)
        | (1 << 0x04)
        | (1 << 0x0f)
        | (1 << 0x11)
        | (1 << 0x16)
        | (1 << 0x1d)
        | (1 << 0x1e)
        | (1 << 0x1f);
    // The common case, no control byte at all, is one vectorised pass.
    if !text.iter().fold(false, |acc, &b| acc | (b < 32))
        || !text.iter().any(|&b| b < 32 && MASK & (1 << b) != 0)
    {
        return Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            // \x03[fg[,bg]]: 1-2 digit colours.
            0x03 => {
                i += 1;
                i += digits(&text[i..], 2);
                if text.get(i) == Some(&b',') && text.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    i += 1 + digits(&text[i + 1..], 2);
                }
            }
            // \x04[RRGGBB[,RRGGBB]]: hex colours.
            0x04 => {
                i += 1;
                if hexes(&text[i..]) {
                    i += 6;
                    if text.get(i) == Some(&b',') && hexes(text.get(i + 1..).unwrap_or(&[])) {
                        i += 7;
                    }
                }
            }
            c if CODES.contains(&c) => i += 1,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

fn digits(b: &[u8], max: usize) -> usize {
    b.iter()
        .take(max)
        .take_while(|c| c.is_ascii_digit())
        .count()
}

fn hexes(b: &[u8]) -> bool {
    b.len() >= 6 && b[..6].iter().all(u8::is_ascii_hexdigit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tags_prefix_command_params() {
        let l = parse_line(b"@time=2025-07-28T20:49:26.000Z;msgid=x :tim1!tim@10.0.0.22 PRIVMSG #testing :maybe we do").unwrap();
        assert_eq!(l.tag("time"), Some(&b"2025-07-28T20:49:26.000Z"[..]));
        assert_eq!(l.tag("msgid"), Some(&b"x"[..]));
        assert_eq!(l.tag("nope"), None);
        assert_eq!(l.prefix_nick(), Some(&b"tim1"[..]));
        assert!(l.is("privmsg"));
        assert_eq!(
            l.params().collect::<Vec<_>>(),
            [&b"#testing"[..], &b"maybe we do"[..]]
        );
        assert!(l.trailing());
    }

    #[test]
    fn parses_numeric_and_plain_params() {
        let l = parse_line(b":irc.example 001 alice :Welcome").unwrap();
        assert_eq!(l.numeric(), Some(1));
        assert_eq!(l.param(0), Some(&b"alice"[..]));
        assert_eq!(l.prefix_nick(), None);
        let l = parse_line(b"NICK bob").unwrap();
        assert_eq!(l.params().collect::<Vec<_>>(), [&b"bob"[..]]);
        assert!(!l.trailing());
        assert!(parse_line(b"").is_none());
        assert!(parse_line(b":only.prefix").is_none());
        assert!(parse_line(b"@tags").is_none());
    }

    #[test]
    fn caps_params_at_fifteen() {
        let line = b"CMD 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17";
        let l = parse_line(line).unwrap();
        assert_eq!(l.params().count(), MAX_PARAMS);
        assert_eq!(l.param(14), Some(&b"15 16 17"[..]));
    }

    #[test]
    fn finds_line_ends() {
        assert_eq!(line_end(b"abc\r\nde", 0), Some(5));
        assert_eq!(line_end(b"abc", 0), None);
        assert_eq!(line_end(b"abc", 9), None);
        assert_eq!(trim_eol(b"x\r\n"), b"x");
        assert_eq!(trim_eol(b"\r\n"), b"");
    }

    #[test]
    fn reads_ctcp_and_dcc() {
        assert_eq!(parse_ctcp(b"\x01ACTION waves\x01"), Ctcp::Action(b"waves"));
        assert_eq!(parse_ctcp(b"hello"), Ctcp::None);
        assert_eq!(parse_ctcp(b"\x01VERSION\x01"), Ctcp::Other);
        let Ctcp::DccSend(o) = parse_ctcp(b"\x01DCC SEND \"my file.txt\" 3232235777 5000 1024\x01")
        else {
            panic!("not a DCC SEND");
        };
        assert_eq!(&o.name[..], b"my file.txt");
        assert_eq!(o.addr, Some(("192.168.1.1".parse().unwrap(), 5000)));
        assert_eq!(o.size, Some(1024));
        let Ctcp::DccChat(o) = parse_ctcp(b"\x01DCC CHAT CHAT 167772167 59214\x01") else {
            panic!("not a DCC CHAT");
        };
        assert_eq!(o.addr, Some(("10.0.0.7".parse().unwrap(), 59214)));
        let Ctcp::DccSend(o) = parse_ctcp(b"\x01DCC SEND f ::1 0 5 tok\x01") else {
            panic!("not a DCC SEND");
        };
        assert_eq!(o.addr, None);
        assert_eq!(o.size, Some(5));
        assert_eq!(parse_ctcp(b"\x01DCC SEND \"unterminated\x01"), Ctcp::Other);
        assert_eq!(parse_ctcp(b"\x01DCC RESUME f 1 2\x01"), Ctcp::Other);
    }

    #[test]
    fn strips_mirc_formatting() {
        assert_eq!(&strip_formatting(b"plain")[..], b"plain");
        assert_eq!(
            &strip_formatting(b"\x02bold\x02 \x0304,12red\x03 x\x1f")[..],
            b"bold red x"
        );
        assert_eq!(&strip_formatting(b"\x04FF00AAhex")[..], b"hex");
        assert_eq!(&strip_formatting(b"\x03")[..], b"");
    }

    #[test]
    fn channels_and_statusmsg() {
        assert!(is_channel(b"#rust", b"#&"));
        assert!(is_channel(b"@#ops", b"#&"));
        assert!(!is_channel(b"alice", b"#&"));
        assert!(!is_channel(b"", b"#&"));
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"18446744073709551615"), None);
        assert_eq!(parse_u64(b"42"), Some(42));
        assert_eq!(parse_u64(b"4x"), None);
        assert_eq!(parse_dcc_host(b"99999999999"), None);
        assert_eq!(
            parse_dcc_host(b"10.0.0.1"),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(parse_dcc_host(b"\x01\x02"), None);
    }
}
