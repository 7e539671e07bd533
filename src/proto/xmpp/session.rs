//! XMPP c2s session state: the local JID (bind result, SASL PLAIN user, or
//! the `to` of incoming stanzas), MUC nicks, reflected group messages, and
//! the TLS switch (`<proceed/>`, or binary data after SASL success). Turns
//! stanzas into events; never buffers stream bytes (the framework hands it
//! whole units).

use std::borrow::Cow;
use std::collections::VecDeque;

use super::fast;
use super::parser::{self, Split, Splitter, Stanza, StanzaOf};
use crate::event::{Kind, LocalId};
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
    local_bare: Option<String>,
    /// The domain in the client's stream header.
    domain: Option<String>,
    /// (room bare JID, our nick) from our MUC join presences.
    rooms: VecDeque<(String, String)>,
    /// Our recent groupchat messages.
    sent_group: VecDeque<ReflectKey>,
    /// The server said `<success/>`: each side must restart its stream next.
    after_success: [bool; 2],
    /// Per side: the stanza `next_unit` read while finding where its unit
    /// ends, for the `on_unit` call that follows with the same bytes.
    read_ahead: [ReadAhead; 2],
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
            .map(|j| parser::bare(j).to_owned());
    }

    fn local_full(&self) -> Option<String> {
        self.local.clone().or_else(|| self.sasl_user.clone())
    }

    /// Events and state from one stanza.
    fn stanza(&mut self, side: Side, st: &mut Stanza<'_>, unit: &[u8], out: &mut Emitter<'_>) {
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

    fn message(&mut self, side: Side, st: &mut Stanza<'_>, unit: &[u8], out: &mut Emitter<'_>) {
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
                    remote.clone(),
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
            out.emit(draft(Kind::Typing, remote.clone(), sender.clone()));
        }
        // The last event takes the ids without a copy.
        if let Some(body) = st.body.take() {
            let mut d = draft(Kind::Message, remote, sender);
            d.text = Some(body.into_owned());
            d.text_encoding = Some("utf-8");
            if out.keep_raw() || st.decode_error {
                d.raw = Some(unit.to_vec());
            }
            out.emit(d);
        } else if let Some(f) = &st.file {
            let d = draft(Kind::File, remote, sender);
            out.emit(file_draft(d, f, unit, out.keep_raw()));
        }
    }

    /// A carbon copy (XEP-0280) of a message sent or received on another of
    /// the local user's devices. Only the server may send carbons, from the
    /// local bare JID; anything else is a spoofing attempt and ignored.
    fn carbon(
        &mut self,
        side: Side,
        st: &Stanza<'_>,
        sent: bool,
        unit: &[u8],
        out: &mut Emitter<'_>,
    ) {
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
            let mut d =
                EventDraft::new(kind, sent, self.local_id(), parser::bare(&peer).to_owned());
            d.group = group;
            d.sender = m
                .from
                .as_deref()
                .map(str::to_owned)
                .or_else(|| self.local_full());
            d.decode_error = m.decode_error;
            d
        };
        if m.chat_state == Some("composing") {
            out.emit(draft(Kind::Typing));
        }
        if let Some(body) = m.body.take() {
            let mut d = draft(Kind::Message);
            d.text = Some(body.into_owned());
            d.text_encoding = Some("utf-8");
            if out.keep_raw() || d.decode_error {
                d.raw = Some(inner.to_vec());
            }
            out.emit(d);
        }
    }

    fn iq(&mut self, side: Side, st: &mut Stanza<'_>, unit: &[u8], out: &mut Emitter<'_>) {
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
            Some(f) => out.emit(file_draft(d, f, unit, out.keep_raw())),
            None => out.emit(d),
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
                    Some(t) => parser::bare(t).to_owned(),
                    None => self.domain.clone()?,
                };
                Some(Who {
                    outgoing: true,
                    remote: to,
                    sender: match st.from.take() {
                        Some(f) => Some(f.into_owned()),
                        None => self.local_full(),
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
                let room = parser::bare(&from).to_owned();
                let own = group
                    && parser::resource(&from).is_some_and(|nick| {
                        self.rooms.iter().any(|(r, n)| *r == room && n == nick)
                    });
                Some(Who {
                    outgoing: own,
                    remote: room,
                    sender: Some(from),
                })
            }
        }
    }
}

/// A stanza read ahead, and where its unit lies: `on_unit` uses it only
/// for the very same bytes (same address and length), else reads again.
/// Its texts are copied into `texts`, a buffer kept from unit to unit, so
/// keeping them allocates nothing.
#[derive(Default)]
struct ReadAhead {
    /// Address and length of the unit; `None` when nothing is kept.
    unit: Option<(usize, usize)>,
    /// The stanza with its texts as offsets into `texts`.
    stanza: StanzaOf<(u32, u32)>,
    texts: String,
}

impl ReadAhead {
    fn keep(&mut self, unit: &[u8], st: &Stanza<'_>) {
        let texts = &mut self.texts;
        texts.clear();
        // A unit is at most STANZA_CAP bytes: its texts fit u32 offsets.
        let at = |texts: &String| u32::try_from(texts.len()).unwrap_or(u32::MAX);
        st.map_texts_into(&mut self.stanza, |t| {
            let start = at(texts);
            texts.push_str(t);
            (start, at(texts))
        });
        self.unit = Some((unit.as_ptr() as usize, unit.len()));
    }

    /// Write the kept stanza into `st` when `unit` is its unit, with `texts`
    /// (taken from `self.texts`; the caller puts it back) holding its texts.
    fn take<'t>(&mut self, unit: &[u8], texts: &'t str, st: &mut Stanza<'t>) -> bool {
        if self.unit.take() != Some((unit.as_ptr() as usize, unit.len())) {
            return false;
        }
        self.stanza.map_texts_into(st, |&(a, b)| {
            Cow::Borrowed(texts.get(a as usize..b as usize).unwrap_or_default())
        });
        true
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
    remote: String,
    sender: Option<String>,
}

fn file_draft(mut d: EventDraft, f: &parser::FileOffer, unit: &[u8], keep_raw: bool) -> EventDraft {
    d.kind = Kind::File;
    d.file_name = f.name.clone();
    d.file_size = f.size;
    if keep_raw || d.decode_error {
        d.raw = Some(unit.to_vec());
    }
    d
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
        self.read_ahead[i].unit = None;
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
                    self.read_ahead[i].keep(buf.get(..n).unwrap_or_default(), &st);
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
        self.read_ahead[side.index()].unit = None;
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
        let i = side.index();
        let texts = std::mem::take(&mut self.read_ahead[i].texts);
        let mut st = Stanza::default();
        if self.read_ahead[i].take(unit, &texts, &mut st) {
            self.stanza(side, &mut st, unit, out);
        } else if parser::may_matter(side == Side::Client, unit) {
            let mut st = parser::read_stanza(unit);
            self.stanza(side, &mut st, unit, out);
        }
        self.read_ahead[i].texts = texts;
    }

    fn unit_cap(&self) -> usize {
        STANZA_CAP
    }

    fn encrypted(&self) -> bool {
        self.encrypted
    }
}
