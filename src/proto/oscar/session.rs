//! OSCAR session on a FLAP connection (login, BOS or service): turns the
//! units of `parser.rs` into events and identity facts. It owns the local id
//! of the connection and the per-direction resync state; it never reads
//! another flow: a BOS connection signed on with a cookie names its user by a
//! [`LocalId::Token`] that the login connection's [`IdentityFact`] resolves
//! at the merge stage.
//!
//! [`IdentityFact`]: crate::event::IdentityFact

use std::borrow::Cow;

use crate::event::{Id, Kind, LocalId};
use crate::proto::{EventDraft, ResyncCause, Side, Step};

use super::parser::{
    decode_8bit, decode_charset, html_to_text, hunt, hunt_cap, parse_unit, unit_len, Flap,
    FlapFraming, Hunt, IcbmBody, OscarUnit, Rendezvous, Text, UnitLen,
};
use crate::proto::{Emitter, Resync};

/// Cookie bytes that name a token: enough to be unique, bounded.
const TOKEN_COOKIE_BYTES: usize = 64;

/// The token string for a login cookie (shared by the fact and the events).
pub fn cookie_token(cookie: &[u8]) -> String {
    let c = &cookie[..cookie.len().min(TOKEN_COOKIE_BYTES)];
    format!("oscar-cookie:{}", hex::encode(c))
}

/// Own room lines remembered to recognise their reflection.
const SENT_LINES_KEPT: usize = 8;

/// State of one FLAP connection.
#[derive(Debug, Default)]
pub struct FlapSession {
    local: Option<LocalId>,
    /// The chat room of a chat connection (000E/0002).
    room: Option<Id>,
    /// Text of the local user's last room lines, to recognise the server's
    /// reflection of them (bounded).
    sent_lines: std::collections::VecDeque<Vec<u8>>,
    /// Per side: looking for a FLAP boundary after damage inside the stream.
    hunting: [bool; 2],
    /// Per side: sequence number of the last whole FLAP (resync plausibility).
    last_seq: [Option<u16>; 2],
}

impl FlapSession {
    pub fn next_unit(&mut self, side: Side, buf: &[u8]) -> Step {
        let s = side.index();
        let framing = FlapFraming {
            after: self.last_seq[s],
        };
        if self.hunting[s] {
            match hunt(&framing, buf) {
                Hunt::Found(0) => self.hunting[s] = false,
                Hunt::Found(n) | Hunt::Wait(n) if n > 0 => return Step::Skip(n),
                _ => return Step::NeedMore,
            }
        }
        match unit_len(&framing, buf) {
            UnitLen::Complete(n) => Step::Unit(n),
            UnitLen::Incomplete => Step::NeedMore,
            UnitLen::Bad => {
                // Out of step without a gap (damage): hunt from the next byte.
                self.hunting[s] = true;
                Step::Invalid(1)
            }
        }
    }

    pub fn resync(&mut self, side: Side, buf: &[u8], _cause: ResyncCause) -> Resync {
        self.hunting[side.index()] = false;
        let framing = FlapFraming {
            after: self.last_seq[side.index()],
        };
        match hunt(&framing, buf) {
            Hunt::Found(n) => Resync::At(n),
            Hunt::Wait(n) => Resync::Skip(n),
        }
    }

    pub fn unit_cap(&self) -> usize {
        hunt_cap::<FlapFraming>()
    }

    fn local_id(&self) -> LocalId {
        self.local.clone().unwrap_or(LocalId::Unknown)
    }

    fn learn_local(&mut self, name: &[u8], out: &mut Emitter<'_>) {
        let name = id_string(name);
        if name.is_empty() {
            return;
        }
        // A BOS connection known only by its cookie: the user learned here
        // (0001/000F) also resolves the token for events already emitted.
        if let Some(LocalId::Token(t)) = &self.local {
            out.fact(t.to_string(), name.to_string());
        }
        self.local = Some(LocalId::Known(name));
    }

    pub fn on_unit(&mut self, side: Side, unit: &[u8], out: &mut Emitter<'_>) {
        let Some(flap) = Flap::parse(unit) else {
            out.count_decode_error();
            return;
        };
        self.last_seq[side.index()] = Some(flap.seq);
        let outgoing = side == Side::Client;
        match parse_unit(&flap) {
            OscarUnit::SignOn {
                screen_name,
                cookie,
                ..
            } if outgoing => {
                if let Some(sn) = screen_name {
                    self.learn_local(sn, out);
                } else if let Some(c) = cookie {
                    if !matches!(self.local, Some(LocalId::Known(_))) {
                        self.local = Some(LocalId::Token(cookie_token(c).into()));
                    }
                }
            }
            OscarUnit::AuthRequest { screen_name } if outgoing => {
                self.learn_local(screen_name, out)
            }
            OscarUnit::AuthReply {
                screen_name: Some(sn),
                cookie,
            } if !outgoing => {
                if let Some(c) = cookie {
                    out.fact(cookie_token(c), id_string(sn).to_string());
                }
                self.learn_local(sn, out);
            }
            OscarUnit::SelfInfo { screen_name } if !outgoing => self.learn_local(screen_name, out),
            OscarUnit::IcbmSend { peer, body } | OscarUnit::IcbmRecv { peer, body } => {
                let peer = id_string(peer);
                self.icbm(outgoing, peer, body, out);
            }
            // 2 = typing begun; 1 (paused) and 0 (finished) are not events.
            OscarUnit::Typing { peer, event: 2 } => {
                let draft = self.draft(Kind::Typing, outgoing, id_string(peer));
                out.emit(draft);
            }
            OscarUnit::OfflineMsg {
                owner,
                sender,
                text,
            } if !outgoing => {
                if self.local.is_none() && owner != 0 {
                    self.local = Some(LocalId::Known(
                        compact_str::ToCompactString::to_compact_string(&owner),
                    ));
                }
                let t = decode_8bit(&text);
                let mut d = self.draft(
                    Kind::Message,
                    false,
                    compact_str::ToCompactString::to_compact_string(&sender),
                );
                fill_text(&mut d, t, &text, out.keep_raw(), false);
                out.emit(d);
            }
            OscarUnit::ChatRoomInfo { name } if !outgoing => self.room = Some(id_string(name)),
            OscarUnit::ChatSend { text } if outgoing => {
                if self.sent_lines.len() == SENT_LINES_KEPT {
                    self.sent_lines.pop_front();
                }
                self.sent_lines.push_back(text.bytes.to_vec());
                let t = text.decode();
                let mut d = self.room_draft(true, None);
                fill_text(&mut d, t, text.bytes, out.keep_raw(), true);
                out.emit(d);
            }
            OscarUnit::ChatRecv { sender, text } if !outgoing => {
                let sender = id_string(sender);
                // With reflection on, the local user's own line comes back:
                // the outgoing copy was already reported (protocols.md §3).
                // The copy names the local user, which a chat connection
                // signed on with a cookie does not otherwise learn.
                if let Some(i) = self.sent_lines.iter().position(|l| l[..] == *text.bytes) {
                    if !matches!(&self.local, Some(LocalId::Known(l)) if !same_user(l, &sender)) {
                        self.sent_lines.remove(i);
                        if !matches!(self.local, Some(LocalId::Known(_))) {
                            self.learn_local(sender.as_bytes(), out);
                        }
                        out.count_echo();
                        return;
                    }
                }
                if matches!(&self.local, Some(LocalId::Known(l)) if same_user(l, &sender)) {
                    out.count_echo();
                    return;
                }
                let t = text.decode();
                let mut d = self.room_draft(false, Some(sender));
                fill_text(&mut d, t, text.bytes, out.keep_raw(), true);
                out.emit(d);
            }
            _ => {}
        }
    }

    /// A group event in the room of this chat connection.
    fn room_draft(&self, outgoing: bool, sender: Option<Id>) -> EventDraft {
        let room = self.room.clone().unwrap_or_else(|| "chat".into());
        let mut d = self.draft(Kind::Message, outgoing, room);
        d.group = true;
        if !outgoing {
            d.sender = sender;
        }
        d
    }

    fn draft(&self, kind: Kind, outgoing: bool, peer: Id) -> EventDraft {
        let local = self.local_id();
        let sender = if outgoing {
            match &local {
                LocalId::Known(s) => Some(s.clone()),
                _ => None,
            }
        } else {
            Some(peer.clone())
        };
        let mut d = EventDraft::new(kind, outgoing, local, peer);
        d.sender = sender;
        d
    }

    fn icbm(&mut self, outgoing: bool, peer: Id, body: IcbmBody, out: &mut Emitter<'_>) {
        match body {
            IcbmBody::Text { charset, raw, .. } => {
                let t = decode_charset(charset, &raw);
                let mut d = self.draft(Kind::Message, outgoing, peer);
                fill_text(&mut d, t, &raw, out.keep_raw(), true);
                out.emit(d);
            }
            IcbmBody::Icq { uin, text } => {
                // An outgoing channel-4 block names its sender: the local user.
                if outgoing && uin != 0 && !matches!(self.local, Some(LocalId::Known(_))) {
                    self.learn_local(uin.to_string().as_bytes(), out);
                }
                let t = decode_8bit(&text);
                let mut d = self.draft(Kind::Message, outgoing, peer);
                fill_text(&mut d, t, &text, out.keep_raw(), false);
                out.emit(d);
            }
            IcbmBody::Rendezvous(r) => match r {
                Rendezvous::File { name, size, .. } => {
                    let mut d = self.draft(Kind::File, outgoing, peer);
                    let n = decode_8bit(&name);
                    d.decode_error = n.lossy;
                    d.file_name = Some(n.text.into_owned());
                    d.file_size = Some(size);
                    out.emit(d);
                }
                Rendezvous::GetFile => out.emit(self.draft(Kind::File, outgoing, peer)),
                Rendezvous::Webcam => out.emit(self.draft(Kind::Webcam, outgoing, peer)),
                Rendezvous::IcqText { text, utf8 } => {
                    let t = if utf8 {
                        let s = String::from_utf8_lossy(&text);
                        Text {
                            lossy: matches!(s, Cow::Owned(_)),
                            text: s,
                            encoding: "utf-8",
                        }
                    } else {
                        decode_8bit(&text)
                    };
                    let mut d = self.draft(Kind::Message, outgoing, peer);
                    fill_text(&mut d, t, &text, out.keep_raw(), false);
                    out.emit(d);
                }
                Rendezvous::Other => {}
            },
            IcbmBody::None => {}
        }
    }
}

/// Set text, encoding and raw bytes; `html` strips AIM markup. The wire
/// bytes are kept when asked (`--raw`: then the IMSpector tree logs the HTML
/// as IMSpector did), and when decoding was not exact (lossy, or a guessed
/// 8-bit charset).
fn fill_text(d: &mut EventDraft, t: Text<'_>, raw: &[u8], keep_raw: bool, html: bool) {
    let stripped = if html {
        html_to_text(&t.text)
    } else {
        Cow::Borrowed("")
    };
    let text = match stripped {
        Cow::Owned(s) => s,
        Cow::Borrowed(_) => t.text.into_owned(),
    };
    d.text = Some(text);
    d.text_encoding = Some(t.encoding);
    d.decode_error = t.lossy;
    if keep_raw || t.lossy || t.encoding == "windows-1252" {
        d.raw = Some(raw.to_vec());
    }
}

/// AIM screen names compare without case and spaces (protocols.md §3).
fn same_user(a: &str, b: &str) -> bool {
    fn norm(s: &str) -> impl Iterator<Item = u8> + '_ {
        s.bytes()
            .filter(|c| *c != b' ')
            .map(|c| c.to_ascii_lowercase())
    }
    norm(a).eq(norm(b))
}

/// A screen name or UIN as it appeared on the wire (JSONL keeps it; the
/// IMSpector sink normalises).
fn id_string(b: &[u8]) -> Id {
    Id::from(crate::proto::utf8_lossy(b))
}
