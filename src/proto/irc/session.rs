//! IRC session state: who the local user is (NICK, 001, nick changes), which
//! targets are channels (005 CHANTYPES), which server copies are echoes of
//! our own lines, and the TLS switch (670). Turns lines into events; never
//! buffers stream bytes (the framework hands it whole lines).

use std::collections::VecDeque;

use super::parser::{self, Ctcp, Line};
use crate::event::{Id, Kind, LocalId};
use crate::proto::{
    decode_id, decode_text, Emitter, EventDraft, Resync, ResyncCause, Session, Side, Step,
};

/// Longest line (with IRCv3 tags) buffered: 8 KiB of tags + 512 bytes of line,
/// with room to spare.
pub const LINE_CAP: usize = 16 * 1024;

/// Most targets of one PRIVMSG/NOTICE that become events (servers allow a
/// handful, ISUPPORT `TARGMAX`): a line naming thousands must not multiply
/// its text into thousands of events.
pub const MAX_TARGETS: usize = 32;

/// Outgoing lines remembered to recognise their echo-message copies.
const ECHO_MEMORY: usize = 32;

pub struct IrcSession {
    /// Bytes of the pending line already searched for LF, per side.
    scanned: [usize; 2],
    /// The local user's nick, when known.
    nick: Option<Id>,
    /// Channel prefixes (005 CHANTYPES), RFC 2812 default.
    chantypes: Vec<u8>,
    /// Hashes of (target, text) of our recent PRIVMSG/NOTICE lines.
    sent: VecDeque<u64>,
    encrypted: bool,
}

impl Default for IrcSession {
    fn default() -> Self {
        IrcSession {
            scanned: [0; 2],
            nick: None,
            chantypes: b"#&+!".to_vec(),
            sent: VecDeque::new(),
            encrypted: false,
        }
    }
}

impl IrcSession {
    fn local(&self) -> LocalId {
        match &self.nick {
            Some(n) => LocalId::Known(n.clone()),
            None => LocalId::Unknown,
        }
    }

    fn is_local(&self, nick: &[u8]) -> bool {
        self.nick
            .as_deref()
            .is_some_and(|n| irc_eq(n.as_bytes(), nick))
    }

    fn client_line(&mut self, line: &Line<'_>, out: &mut Emitter<'_>) {
        if line.is("NICK") {
            if let Some(n) = line.param(0).filter(|n| !n.is_empty()) {
                self.nick = Some(id_text(n));
            }
        } else if line.is("PRIVMSG") || line.is("NOTICE") || line.is("TAGMSG") {
            let (Some(targets), text) = (line.param(0), line.param(1)) else {
                return;
            };
            for target in target_list(targets) {
                if line.is("TAGMSG") {
                    if typing_tag(line) {
                        let mut d =
                            EventDraft::new(Kind::Typing, true, self.local(), id_text(target));
                        d.group = parser::is_channel(target, &self.chantypes);
                        d.sender = self.nick.clone();
                        out.emit(d);
                    }
                    continue;
                }
                let text = text.unwrap_or_default();
                if self.sent.len() == ECHO_MEMORY {
                    self.sent.pop_front();
                }
                self.sent.push_back(echo_key(target, text));
                let sender = self.nick.clone();
                self.text_event(line, true, target, sender, text, out);
            }
        }
    }

    fn server_line(&mut self, line: &Line<'_>, out: &mut Emitter<'_>) {
        match line.numeric() {
            Some(1) => {
                if let Some(n) = line.param(0).filter(|n| !n.is_empty() && *n != b"*") {
                    self.nick = Some(id_text(n));
                }
                return;
            }
            Some(5) => {
                for p in line.params() {
                    if let Some(v) = p.strip_prefix(b"CHANTYPES=") {
                        self.chantypes = v.iter().copied().take(8).collect();
                    }
                }
                return;
            }
            // RPL_STARTTLS: the TLS handshake follows.
            Some(670) => {
                self.encrypted = true;
                return;
            }
            Some(_) => return,
            None => {}
        }
        if line.is("NICK") {
            if let (Some(old), Some(new)) = (line.prefix_nick(), line.param(0)) {
                if self.is_local(old) && !new.is_empty() {
                    self.nick = Some(id_text(new));
                }
            }
            return;
        }
        let is_notice = line.is("NOTICE");
        let is_tagmsg = line.is("TAGMSG");
        if !(line.is("PRIVMSG") || is_notice || is_tagmsg) {
            return;
        }
        let from = line.prefix_nick();
        // Notices from the server itself (no `nick!user@host` prefix) are not chat.
        if is_notice && from.is_none() {
            return;
        }
        let (Some(targets), text) = (line.param(0), line.param(1)) else {
            return;
        };
        let text = text.unwrap_or_default();
        for target in target_list(targets) {
            let channel = parser::is_channel(target, &self.chantypes);
            if !channel && self.nick.is_none() {
                // A private line to us names us.
                self.nick = Some(id_text(target));
            }
            let own = from.is_some_and(|f| self.is_local(f));
            if own {
                // IRCv3 echo-message: our own line coming back.
                let key = echo_key(target, text);
                if let Some(i) = self.sent.iter().position(|s| *s == key) {
                    self.sent.remove(i);
                    out.count_echo();
                    continue;
                }
            }
            if is_tagmsg {
                if typing_tag(line) {
                    let remote = if channel || own {
                        target
                    } else {
                        from.unwrap_or(target)
                    };
                    let mut d = EventDraft::new(Kind::Typing, own, self.local(), id_text(remote));
                    d.group = channel;
                    d.sender = from.map(id_text);
                    out.emit(d);
                }
                continue;
            }
            let remote = if channel || own {
                target
            } else {
                from.unwrap_or(b"")
            };
            let sender = from.map(id_text);
            let remote = if remote.is_empty() {
                b"unknown"
            } else {
                remote
            };
            self.text_event_to(line, own, remote, channel, sender, text, out);
        }
    }

    fn text_event(
        &self,
        line: &Line<'_>,
        outgoing: bool,
        target: &[u8],
        sender: Option<Id>,
        text: &[u8],
        out: &mut Emitter<'_>,
    ) {
        let channel = parser::is_channel(target, &self.chantypes);
        self.text_event_to(line, outgoing, target, channel, sender, text, out);
    }

    /// One PRIVMSG/NOTICE text to `remote`: a message, an action, a DCC
    /// SEND offer, or nothing (other CTCP, DCC CHAT).
    #[allow(clippy::too_many_arguments)]
    fn text_event_to(
        &self,
        line: &Line<'_>,
        outgoing: bool,
        remote: &[u8],
        group: bool,
        sender: Option<Id>,
        text: &[u8],
        out: &mut Emitter<'_>,
    ) {
        let ctcp = parser::parse_ctcp(text);
        let mut d = EventDraft::new(Kind::Message, outgoing, self.local(), id_text(remote));
        d.group = group;
        d.sender = sender;
        match ctcp {
            Ctcp::None => {
                let shown = parser::strip_formatting(text);
                let (s, enc, exact) = decode_text(&shown);
                d.text = Some(s);
                d.text_encoding = Some(enc);
                if out.keep_raw() || !exact || shown.len() != text.len() || enc != "utf-8" {
                    d.raw = Some(text.to_vec());
                }
                d.decode_error = !exact;
            }
            Ctcp::Action(act) => {
                // CTCP replies travel as NOTICE; only a PRIVMSG ACTION is a /me.
                if line.is("NOTICE") {
                    return;
                }
                let shown = parser::strip_formatting(act);
                let (s, enc, exact) = decode_text(&shown);
                d.text = Some(format!("/me {s}"));
                d.text_encoding = Some(enc);
                d.raw = Some(text.to_vec());
                d.decode_error = !exact;
            }
            Ctcp::DccSend(offer) => {
                if line.is("NOTICE") {
                    return;
                }
                let (name, enc, exact) = decode_text(&offer.name);
                d.kind = Kind::File;
                d.file_name = Some(name);
                d.file_size = offer.size;
                d.text = offer
                    .addr
                    .map(|(ip, port)| std::net::SocketAddr::new(ip, port).to_string());
                d.text_encoding = Some(enc);
                d.raw = Some(text.to_vec());
                d.decode_error = !exact;
            }
            // DCC CHAT offers a direct connection for chat: noted, not chat.
            Ctcp::DccChat(_) => {
                if !line.is("NOTICE") {
                    out.count_chat_offer();
                }
                return;
            }
            // Other CTCP (VERSION, PING, TIME ...) is noise.
            Ctcp::Other => return,
        }
        if d.decode_error {
            out.count_decode_error();
        }
        out.emit(d);
    }
}

/// A 64-bit digest of a line's target (case-folded) and text, to recognise
/// its echo without keeping a copy. Eight bytes per step: it runs on every
/// line the client sends.
fn echo_key(target: &[u8], text: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (text.len() as u64).wrapping_mul(K);
    for &b in target {
        h = (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(K);
    }
    let mut words = text.chunks_exact(8);
    for w in &mut words {
        let mut x = [0u8; 8];
        x.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(x)).wrapping_mul(K).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^ (h >> 32)
}

/// The comma-separated targets of a line, at most [`MAX_TARGETS`].
fn target_list(targets: &[u8]) -> impl Iterator<Item = &[u8]> {
    targets
        .split(|&b| b == b',')
        .filter(|t| !t.is_empty())
        .take(MAX_TARGETS)
}

/// IRCv3 typing client tag (`+typing`, draft `+draft/typing`) saying "active".
fn typing_tag(line: &Line<'_>) -> bool {
    line.tag("+typing")
        .or_else(|| line.tag("+draft/typing"))
        .is_some_and(|v| v == b"active")
}

/// An id from the wire as text (UTF-8, else windows-1252).
fn id_text(b: &[u8]) -> Id {
    decode_id(b)
}

/// Nick equality under RFC 1459 case mapping (`[]\~` fold to `{}|^`).
fn irc_eq(a: &[u8], b: &[u8]) -> bool {
    fn fold(c: u8) -> u8 {
        match c {
            b'[' => b'{',
            b']' => b'}',
            b'\\' => b'|',
            b'~' => b'^',
            c => c.to_ascii_lowercase(),
        }
    }
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| fold(*x) == fold(*y))
}

impl Session for IrcSession {
    fn next_unit(&mut self, side: Side, buf: &[u8]) -> Step {
        let from = self.scanned[side.index()].min(buf.len());
        match parser::line_end(buf, from) {
            Some(n) => {
                self.scanned[side.index()] = 0;
                Step::Unit(n)
            }
            None => {
                self.scanned[side.index()] = buf.len();
                Step::NeedMore
            }
        }
    }

    fn resync(&mut self, side: Side, buf: &[u8], cause: ResyncCause) -> Resync {
        self.scanned[side.index()] = 0;
        // After a mid-stream start or a gap the bytes may begin exactly at a
        // line start (lost segments usually held whole lines): keep the first
        // line when it parses as a known IRC command, else drop it as the
        // tail of a cut line. After a dropped oversize line we are inside it.
        let may_start = cause != ResyncCause::Cap;
        let Some(end) = parser::line_end(buf, 0) else {
            return if may_start && buf.len() <= LINE_CAP {
                Resync::Skip(0)
            } else {
                Resync::Skip(buf.len())
            };
        };
        if may_start && super::plausible_line(&buf[..end]) {
            Resync::At(0)
        } else {
            Resync::At(end)
        }
    }

    fn on_unit(&mut self, side: Side, unit: &[u8], out: &mut Emitter<'_>) {
        let Some(line) = parser::parse_line(parser::trim_eol(unit)) else {
            return;
        };
        match side {
            Side::Client => self.client_line(&line, out),
            Side::Server => self.server_line(&line, out),
        }
    }

    fn unit_cap(&self) -> usize {
        LINE_CAP
    }

    fn encrypted(&self) -> bool {
        self.encrypted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1459_casemapping() {
        assert!(irc_eq(b"Nick[a]", b"nick{A}"));
        assert!(irc_eq(b"a\\~", b"A|^"));
        assert!(!irc_eq(b"ab", b"abc"));
    }

    #[test]
    fn echo_keys_fold_the_target_and_see_every_text_byte() {
        assert_eq!(echo_key(b"#Rust", b"hello"), echo_key(b"#rust", b"hello"));
        assert_ne!(echo_key(b"#rust", b"hello"), echo_key(b"#rust", b"hellp"));
        assert_ne!(
            echo_key(b"#rust", b"0123456789a"),
            echo_key(b"#rust", b"0123456789b")
        );
        assert_ne!(echo_key(b"#rust", b""), echo_key(b"#rust", b"\0"));
        assert_ne!(echo_key(b"a", b"b"), echo_key(b"b", b"a"));
    }

    #[test]
    fn typing_tags() {
        let l = parser::parse_line(b"@+typing=active TAGMSG #c").unwrap();
        assert!(typing_tag(&l));
        let l = parser::parse_line(b"@+draft/typing=paused TAGMSG #c").unwrap();
        assert!(!typing_tag(&l));
    }
}
