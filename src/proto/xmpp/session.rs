//! XMPP c2s session state: the local JID (bind result, SASL PLAIN user, or
//! the `to` of incoming stanzas), MUC nicks, reflected group messages, and
//! the TLS switch (`<proceed/>`, or binary data after SASL success). Turns
//! stanzas into events; never buffers stream bytes (the framework hands it
//! whole units).

use std::collections::VecDeque;

use super::fast;
use super::parser::{self, Split, Splitter, Stanza};
use crate::event::{Id, Kind, LocalId};
use crate::proto::{Emitter, EventDraft, Resync, ResyncCause, Session, Side, Step};

/// Largest stanza buffered (vCards with avatars are the big ones; chat is small).
pub const STANZA_CAP: usize = 256 * 1024;

/// Rooms remembered with our nick in them.
const MAX_ROOMS: usize = 64;

/// Ids of our own group messages remembered to recognise their reflection.
const REFLECT_MEMORY: usize = 32;

#[derive(Default)]
pub struct XmppSession {
    splitter: [Splitter; 2],
    /// Full JID from the bind result (or learned from incoming `to`).
    /// Set only through [`XmppSession::set_local`].
    local: Option<String>,
    /// `authcid@domain` from SASL PLAIN, until a bind result names the resource.
    /// Set only through [`XmppSession::set_sasl_user`].
    sasl_user: Option<String>,
    /// The bare JID of `local`, else of `sasl_user`: every event's local id,
    /// kept ready instead of cut out of the full JID per message.
    local_bare: Option<Id>,
    /// The domain in the client's stream header.
    domain: Option<String>,
    /// (room bare JID, our nick) from our MUC join presences.
    rooms: VecDeque<(String, String)>,
    /// Our recent groupchat messages.
    sent_group: VecDeque<ReflectKey>,
    /// The server said `<success/>`: each side must restart its stream next.
    after_success: [bool; 2],
    /// Per side: what `next_unit` decoded while finding where its unit
    /// ends, for the `on_unit` call that follows with the same bytes.
    decoded: [Decoded; 2],
    encrypted: bool,
}

impl XmppSession {
    fn local_id(&self) -> LocalId {
        match &self.local_bare {
            Some(j) => LocalId::Known(j.clone()),
            None => LocalId::Unknown,
        }
    }

    fn set_local(&mut self, jid: String) {
        self.local = Some(jid);
        self.update_bare();
    }

    fn set_sasl_user(&mut self, user: String) {
        self.sasl_user = Some(user);
        self.update_bare();
    }

    fn update_bare(&mut self) {
        self.local_bare = self
            .local
            .as_deref()
            .or(self.sasl_user.as_deref())
            .map(|j| Id::from(parser::bare(j)));
    }

    fn local_full(&self) -> Option<String> {
        self.local.clone().or_else(|| self.sasl_user.clone())
    }

    /// Events and state from one stanza.
    fn stanza(&mut self, side: Side, st: &mut Stanza<'_>, unit: &[u8], out: &mut impl Out) {
        if st.decode_error {
            out.count_decode_error();
        }
        match st.name {
            "message" => self.message(side, st, unit, out),
            "iq" => self.iq(side, st, unit, out),
            "presence" => self.presence(side, st),
            _ => self.stream_level(side, st),
        }
    }

    fn stream_level(&mut self, side: Side, st: &Stanza<'_>) {
        match (side, st.name) {
            (Side::Client, "stream") => {
                if let Some(to) = &st.to {
                    self.domain = Some(to.to_string());
                }
            }
            (Side::Server, "proceed") => self.encrypted = true,
            (Side::Server, "success") => self.after_success = [true; 2],
            (Side::Client, "auth") if st.mechanism.as_deref() == Some("PLAIN") => {
                // authzid NUL authcid NUL password: keep only the user.
                if let Some(plain) = parser::base64_decode(st.own_text.trim().as_bytes()) {
                    let mut parts = plain.split(|&b| b == 0);
                    let authzid = parts.next().unwrap_or_default();
                    let authcid = parts.next().unwrap_or_default();
                    if let Ok(user) = std::str::from_utf8(authcid) {
                        if !user.is_empty() {
                            let user = match (&self.domain, user.contains('@')) {
                                (Some(d), false) => format!("{user}@{d}"),
                                _ => user.to_owned(),
                            };
                            self.set_sasl_user(user);
                        }
                    } else if let Ok(z) = std::str::from_utf8(authzid) {
                        if z.contains('@') {
                            self.set_sasl_user(z.to_owned());
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn message(&mut self, side: Side, st: &mut Stanza<'_>, unit: &[u8], out: &mut impl Out) {
        if st.kind.as_deref() == Some("error") {
            return;
        }
        if st.forwarded {
            if let Some(sent) = st.carbon {
                self.carbon(side, st, sent, unit, out);
            }
            return;
        }
        let group = st.kind.as_deref() == Some("groupchat");
        let Some(who) = self.who(side, st, group) else {
            return;
        };
        let Who {
            outgoing,
            remote,
            sender,
        } = who;
        if group && (side == Side::Client || outgoing) {
            // Our own group message, and the room's reflection of it: known
            // by its stanza id, or by room and body when it has none.
            let key = match &st.id {
                Some(id) => ReflectKey::Id(id.to_string()),
                None => ReflectKey::Body(
                    remote.to_string(),
                    st.body.as_deref().unwrap_or_default().to_owned(),
                ),
            };
            if side == Side::Server {
                if let Some(i) = self.sent_group.iter().position(|k| *k == key) {
                    self.sent_group.remove(i);
                    out.count_echo();
                    return;
                }
            } else {
                if self.sent_group.len() == REFLECT_MEMORY {
                    self.sent_group.pop_front();
                }
                self.sent_group.push_back(key);
            }
        }
        let draft = |kind, remote, sender| {
            let mut d = EventDraft::new(kind, outgoing, self.local_id(), remote);
            d.group = group;
            d.sender = sender;
            d.decode_error = st.decode_error;
            d
        };
        if st.chat_state == Some("composing") {
            out.event(draft(Kind::Typing, remote.clone(), sender.clone()), None);
        }
        // The last event takes the ids without a copy.
        if let Some(body) = st.body.take() {
            let mut d = draft(Kind::Message, remote, sender);
            d.text = Some(body.into_owned());
            d.text_encoding = Some("utf-8");
            out.event(d, Some(unit));
        } else if let Some(f) = &st.file {
            let d = draft(Kind::File, remote, sender);
            out.event(file_draft(d, f), Some(unit));
        }
    }

    /// A carbon copy (XEP-0280) of a message sent or received on another of
    /// the local user's devices. Only the server may send carbons, from the
    /// local bare JID; anything else is a spoofing attempt and ignored.
    fn carbon(&mut self, side: Side, st: &Stanza<'_>, sent: bool, unit: &[u8], out: &mut impl Out) {
        let Some(local) = self.local_bare.as_deref() else {
            return;
        };
        if side != Side::Server || st.from.as_deref().map(parser::bare) != Some(local) {
            return;
        }
        let Some(inner) = parser::inner_message(unit) else {
            return;
        };
        let mut m = parser::read_stanza(inner);
        if m.kind.as_deref() == Some("error") || m.forwarded {
            return;
        }
        let peer = if sent { m.to.take() } else { m.from.clone() };
        let Some(peer) = peer else { return };
        let group = m.kind.as_deref() == Some("groupchat");
        let draft = |kind| {
            let mut d = EventDraft::new(kind, sent, self.local_id(), parser::bare(&peer).into());
            d.group = group;
            d.sender = m
                .from
                .as_deref()
                .map(Id::from)
                .or_else(|| self.local_full().map(Id::from));
            d.decode_error = m.decode_error;
            d
        };
        if m.chat_state == Some("composing") {
            out.event(draft(Kind::Typing), None);
        }
        if let Some(body) = m.body.take() {
            let mut d = draft(Kind::Message);
            d.text = Some(body.into_owned());
            d.text_encoding = Some("utf-8");
            out.event(d, Some(inner));
        }
    }

    fn iq(&mut self, side: Side, st: &mut Stanza<'_>, unit: &[u8], out: &mut impl Out) {
        if let (Side::Server, Some(jid)) = (side, st.bound_jid.take()) {
            if !jid.is_empty() {
                self.set_local(jid.into_owned());
            }
            return;
        }
        if st.kind.as_deref() != Some("set") || !(st.file.is_some() || st.video_call) {
            return;
        }
        let Some(Who {
            outgoing,
            remote,
            sender,
        }) = self.who(side, st, false)
        else {
            return;
        };
        let kind = if st.file.is_some() {
            Kind::File
        } else {
            Kind::Webcam
        };
        let mut d = EventDraft::new(kind, outgoing, self.local_id(), remote);
        d.sender = sender;
        d.decode_error = st.decode_error;
        match &st.file {
            Some(f) => out.event(file_draft(d, f), Some(unit)),
            None => out.event(d, None),
        }
    }

    fn presence(&mut self, side: Side, st: &Stanza<'_>) {
        if side != Side::Client || !st.muc_join {
            return;
        }
        let Some(to) = &st.to else { return };
        if let Some(nick) = parser::resource(to) {
            let room = parser::bare(to).to_owned();
            self.rooms.retain(|(r, _)| *r != room);
            if self.rooms.len() == MAX_ROOMS {
                self.rooms.pop_front();
            }
            self.rooms.push_back((room, nick.to_owned()));
        }
    }

    /// Direction and ids of a stanza. Client stanzas are ours (the server
    /// stamps `from`); server stanzas come from `from` to us (`to`), except a
    /// room reflecting our own nick's message. Takes `from` out of `st`
    /// (callers do not read it afterwards): one copy fewer per message.
    fn who(&mut self, side: Side, st: &mut Stanza<'_>, group: bool) -> Option<Who> {
        match side {
            Side::Client => {
                let to = match &st.to {
                    Some(t) => Id::from(parser::bare(t)),
                    None => Id::from(self.domain.as_deref()?),
                };
                Some(Who {
                    outgoing: true,
                    remote: to,
                    sender: match st.from.take() {
                        Some(f) => Some(Id::from(f)),
                        None => self.local_full().map(Id::from),
                    },
                })
            }
            Side::Server => {
                let from = st.from.take()?.into_owned();
                if self.local.is_none() {
                    if let Some(to) = st.to.as_ref().filter(|t| t.contains('@')) {
                        self.set_local(to.to_string());
                    }
                }
                let room = Id::from(parser::bare(&from));
                let own = group
                    && parser::resource(&from).is_some_and(|nick| {
                        self.rooms
                            .iter()
                            .any(|(r, n)| *r == room.as_str() && n == nick)
                    });
                Some(Who {
                    outgoing: own,
                    remote: room,
                    sender: Some(Id::from(from)),
                })
            }
        }
    }
}

/// How a room's reflection of our group message is recognised.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ReflectKey {
    Id(String),
    /// Room and body of a message sent without an id.
    Body(String, String),
}

struct Who {
    outgoing: bool,
    remote: Id,
    sender: Option<Id>,
}

fn file_draft(mut d: EventDraft, f: &parser::FileOffer) -> EventDraft {
    d.kind = Kind::File;
    d.file_name = f.name.clone();
    d.file_size = f.size;
    d
}

/// Where a stanza's events and counts go: straight to the framework's
/// [`Emitter`], or, for a stanza decoded in `next_unit`, into [`Decoded`]
/// until `on_unit` hands them over.
trait Out {
    fn count_decode_error(&mut self);
    fn count_echo(&mut self);
    /// An event; `raw` is the bytes it was decoded from, kept with it when
    /// `--raw` asks or the decoding was not exact.
    fn event(&mut self, d: EventDraft, raw: Option<&[u8]>);
}

impl Out for Emitter<'_> {
    fn count_decode_error(&mut self) {
        Emitter::count_decode_error(self);
    }

    fn count_echo(&mut self) {
        Emitter::count_echo(self);
    }

    fn event(&mut self, mut d: EventDraft, raw: Option<&[u8]>) {
        if let Some(raw) = raw.filter(|_| self.keep_raw() || d.decode_error) {
            d.raw = Some(raw.to_vec());
        }
        self.emit(d);
    }
}

/// The events and counts of a unit decoded in `next_unit` (the fast reader
/// found where the unit ends while reading it, so it is scanned once), for
/// the `on_unit` call that follows with the same bytes: same address and
/// length, or it is dropped and the unit decoded again. Its vector is kept
/// from unit to unit.
#[derive(Default)]
struct Decoded {
    /// Address and length of the unit; `None` when nothing waits.
    unit: Option<(usize, usize)>,
    decode_errors: u32,
    echoes: u32,
    /// Each event, and where in the unit the bytes it came from lie.
    events: Vec<(EventDraft, Option<(usize, usize)>)>,
}

impl Decoded {
    fn begin(&mut self, unit: &[u8]) {
        self.unit = Some((unit.as_ptr() as usize, unit.len()));
        self.decode_errors = 0;
        self.echoes = 0;
        self.events.clear();
    }

    /// Emit what was decoded from `unit`, if it was; false when it was not.
    fn hand_over(&mut self, unit: &[u8], out: &mut Emitter<'_>) -> bool {
        if self.unit.take() != Some((unit.as_ptr() as usize, unit.len())) {
            return false;
        }
        for _ in 0..self.decode_errors {
            out.count_decode_error();
        }
        for _ in 0..self.echoes {
            out.count_echo();
        }
        for (d, raw) in self.events.drain(..) {
            let raw = raw.and_then(|(a, b)| unit.get(a..b));
            Out::event(out, d, raw);
        }
        true
    }
}

impl Out for Decoded {
    fn count_decode_error(&mut self) {
        self.decode_errors += 1;
    }

    fn count_echo(&mut self) {
        self.echoes += 1;
    }

    fn event(&mut self, d: EventDraft, raw: Option<&[u8]>) {
        // `raw` is the unit or a part of it (a carbon's inner message).
        let base = self.unit.map_or(0, |(at, _)| at);
        let raw = raw.map(|r| {
            let a = (r.as_ptr() as usize).wrapping_sub(base);
            (a, a.wrapping_add(r.len()))
        });
        self.events.push((d, raw));
    }
}

impl Session for XmppSession {
    fn next_unit(&mut self, side: Side, buf: &[u8]) -> Step {
        let i = side.index();
        if self.after_success[i] {
            // After SASL success the stream restarts with XML; anything else
            // is a negotiated security layer.
            match buf.iter().find(|b| !b.is_ascii_whitespace()) {
                None => return Step::NeedMore,
                Some(b'<') => self.after_success[i] = false,
                Some(_) => {
                    self.encrypted = true;
                    return Step::Skip(buf.len().max(1));
                }
            }
        }
        debug_assert!(
            self.decoded[i].unit.is_none(),
            "a unit decoded ahead was not handed over"
        );
        self.decoded[i].unit = None;
        // At a unit's first byte, a stanza that can matter is read at once:
        // the fast reader finds where its element ends while reading it, so
        // the unit is scanned once instead of twice (splitter, then reader).
        if self.splitter[i].is_fresh()
            && buf.len() > 1
            && !matches!(buf.get(1), Some(b'/' | b'!' | b'?'))
            && parser::may_matter(side == Side::Client, buf)
        {
            let mut st = Stanza::default();
            match fast::read_element(buf, &mut st) {
                Ok(n) => {
                    let unit = buf.get(..n).unwrap_or_default();
                    let mut decoded = std::mem::take(&mut self.decoded[i]);
                    decoded.begin(unit);
                    self.stanza(side, &mut st, unit, &mut decoded);
                    self.decoded[i] = decoded;
                    return Step::Unit(n);
                }
                // The splitter goes on where the read stopped.
                Err(at) => self.splitter[i] = Splitter::resumed(at.pos, at.depth),
            }
        }
        match self.splitter[i].split(buf) {
            Split::Unit(n, _) => Step::Unit(n),
            Split::Skip(n) => Step::Skip(n),
            Split::NeedMore => Step::NeedMore,
        }
    }

    fn resync(&mut self, side: Side, buf: &[u8], cause: ResyncCause) -> Resync {
        self.splitter[side.index()].reset();
        self.decoded[side.index()].unit = None;
        if cause == ResyncCause::Midstream {
            let ws = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
            let rest = &buf[ws..];
            if rest.starts_with(b"<?xml") || rest.starts_with(b"<stream") {
                return Resync::At(ws);
            }
        }
        match parser::find_stanza_start(buf) {
            Some(at) => Resync::At(at),
            None => Resync::Skip(buf.len().saturating_sub(parser::START_TAG_PREFIX)),
        }
    }

    fn on_unit(&mut self, side: Side, unit: &[u8], out: &mut Emitter<'_>) {
        if self.decoded[side.index()].hand_over(unit, out) {
            return;
        }
        if parser::may_matter(side == Side::Client, unit) {
            let mut st = parser::read_stanza(unit);
            self.stanza(side, &mut st, unit, out);
        }
    }

    fn unit_cap(&self) -> usize {
        STANZA_CAP
    }

    fn encrypted(&self) -> bool {
        self.encrypted
    }
}
