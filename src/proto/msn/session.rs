//! MSN session state: turns MSNP commands (from a direct connection or
//! stitched out of HTTP gateway bodies) into events. Owns who the local user
//! is, the switchboard's participants, group-chat naming, P2P/MSNSLP
//! reassembly, and the per-`SessionID` virtual streams of the gateway. Never
//! touches TCP, never reads another flow's state: identities learned here for
//! other connections leave as identity facts (protocols.md §1, imspector-format.md §3, §9).

use std::collections::VecDeque;

use crate::event::{Id, Kind, LocalId};
use crate::proto::{Emitter, EventDraft, Resync, ResyncCause, Session, Side, Step};

use super::http::{self, HttpFrame, StartLine};
use super::parser::{
    self, Boundary, Command, Frame, Mime, MsgContent, P2pChunk, SlpInvite, SlpOffer,
};

/// Largest unit the framework buffers for MSN (a payload command, or an HTTP
/// message with its head and chunk framing).
pub const UNIT_CAP: usize = http::MAX_BODY + http::MAX_HEAD + 64 * 1024;
/// Most P2P SLP reassemblies in progress per stream.
const MAX_SLP_PENDING: usize = 8;
/// Largest SLP message reassembled.
const MAX_SLP: usize = 64 * 1024;
/// Most gateway sessions kept per connection.
const MAX_GATEWAY_SESSIONS: usize = 64;
/// Most requests waiting for their response.
const MAX_OPEN_QUEUE: usize = 16;
/// Largest `Action=open` body kept until its response names the session.
const MAX_OPEN_BODY: usize = 16 * 1024;
/// Most distinct participants remembered per switchboard (more only keep it a group).
const MAX_PARTICIPANTS: usize = 256;

/// Token prefix of identity facts naming the user of a switchboard cookie.
pub const TOKEN_SB_COOKIE: &str = "msn-cookie:";
/// Token prefix of identity facts naming the user of a gateway session.
pub const TOKEN_GATEWAY: &str = "msn-gw:";

/// One P2P SLP message being reassembled from several chunks.
#[derive(Debug)]
struct SlpPart {
    side: Side,
    id: u32,
    total: usize,
    data: Vec<u8>,
}

/// State of one MSNP command stream (a connection, or a gateway session).
#[derive(Debug, Default)]
pub struct MsnpState {
    /// The signed-in user (lowercased, endpoint cut).
    local: Option<Id>,
    /// Token standing for the local user until it is learned (gateway session).
    local_token: Option<std::sync::Arc<str>>,
    /// Remote participants of a switchboard in order of arrival (deduped).
    participants: Vec<Id>,
    /// The first participant: the 1:1 remote id.
    peer: Option<Id>,
    /// `groupchat-<epoch>` once a second participant joined.
    group: Option<Id>,
    slp: Vec<SlpPart>,
}

impl MsnpState {
    fn local_id(&self) -> LocalId {
        match (&self.local, &self.local_token) {
            (Some(l), _) => LocalId::Known(l.clone()),
            (None, Some(t)) => LocalId::Token(t.clone()),
            (None, None) => LocalId::Unknown,
        }
    }

    fn learn_local(&mut self, addr: &str, out: &mut Emitter<'_>) {
        let id = parser::address_id(addr);
        if id.is_empty() || !id.contains('@') {
            return;
        }
        if self.local.as_deref() != Some(id.as_str()) {
            if let Some(t) = &self.local_token {
                out.fact(t.to_string(), id.to_string());
            }
            self.local = Some(id);
        }
    }

    fn add_participant(&mut self, addr: &str, out: &mut Emitter<'_>) {
        let id = parser::address_id(addr);
        if id.is_empty() || self.local.as_deref() == Some(id.as_str()) {
            return;
        }
        if self.participants.contains(&id) {
            return;
        }
        if self.participants.len() < MAX_PARTICIPANTS {
            self.participants.push(id.clone());
        }
        if self.peer.is_none() {
            self.peer = Some(id);
        } else if self.group.is_none() && self.peer.as_deref() != Some(id.as_str()) {
            // imspector-format.md §9 / quirk 14: the capture time of the
            // second participant's JOI/IRO names the group.
            self.group = Some(compact_str::format_compact!(
                "groupchat-{}",
                out.time().secs()
            ));
        }
    }

    /// The remote id for an event with `sender` (incoming) or none (outgoing).
    fn remote_for(&self, incoming_from: Option<&Id>) -> (Id, bool) {
        if let Some(g) = &self.group {
            return (g.clone(), true);
        }
        if let Some(p) = &self.peer {
            return (p.clone(), false);
        }
        match incoming_from {
            Some(f) => (f.clone(), false),
            None => ("unknown".into(), false),
        }
    }

    /// Decode one command.
    pub fn on_command(&mut self, side: Side, cmd: &Command<'_>, out: &mut Emitter<'_>) {
        match (&cmd.name, side) {
            (b"USR", Side::Client) => {
                // NS: `USR t TWN|SSO I <email>`; SB: `USR t <email> <cookie>`.
                match (cmd.param(1), cmd.param(2), cmd.param(3)) {
                    (Some(m), Some("I"), Some(email)) if m == "TWN" || m == "SSO" || m == "MD5" => {
                        self.learn_local(email, out)
                    }
                    (Some(email), Some(_cookie), _) if email.contains('@') => {
                        self.learn_local(email, out)
                    }
                    _ => {}
                }
            }
            (b"USR", Side::Server) if cmd.param(1) == Some("OK") => {
                if let Some(email) = cmd.param(2) {
                    self.learn_local(email, out);
                }
            }
            (b"ANS", Side::Client) => {
                if let Some(email) = cmd.param(1) {
                    self.learn_local(email, out);
                }
            }
            // `XFR t SB ip:port CKI <cookie>`: the SB we asked for.
            (b"XFR", Side::Server) if cmd.param(1) == Some("SB") && cmd.param(3) == Some("CKI") => {
                self.cookie_fact(cmd.param(4), out);
            }
            // `RNG sessid ip:port CKI <cookie> <inviter> <nick>`.
            (b"RNG", Side::Server) if cmd.param(2) == Some("CKI") => {
                self.cookie_fact(cmd.param(3), out);
            }
            (b"IRO", Side::Server) => {
                if let Some(email) = cmd.param(3) {
                    self.add_participant(email, out);
                }
            }
            (b"JOI", Side::Server) => {
                if let Some(email) = cmd.param(0) {
                    self.add_participant(email, out);
                }
            }
            (b"BYE", Side::Server) => {
                if let Some(email) = cmd.param(0) {
                    let id = parser::address_id(email);
                    self.participants.retain(|p| *p != id);
                }
            }
            (b"MSG", Side::Client) => {
                if let Some(payload) = cmd.payload {
                    self.on_payload(side, None, payload, out);
                }
            }
            (b"MSG", Side::Server) => {
                let from = cmd.param(0).unwrap_or_default();
                if from.eq_ignore_ascii_case("Hotmail") {
                    return;
                }
                if let Some(payload) = cmd.payload {
                    let from = parser::address_id(from);
                    if self.local.as_ref() == Some(&from) {
                        // MSNP16+ multiple points of presence: what the local
                        // user wrote on another endpoint, relayed here. The
                        // wire says s→c, the event is outgoing (protocols.md §0).
                        self.on_payload(Side::Client, None, payload, out);
                    } else {
                        self.on_payload(side, Some(&from), payload, out);
                    }
                }
            }
            (b"UUM", Side::Client) => {
                // MSNP14+ message to a Yahoo contact: `UUM t <to> <net> <type> <len>`.
                if let (Some(to), Some(payload)) = (cmd.param(1), cmd.payload) {
                    let to = parser::address_id(to);
                    self.on_direct_payload(side, to, payload, out);
                }
            }
            (b"UBM", Side::Server) => {
                if let (Some(from), Some(payload)) = (cmd.param(0), cmd.payload) {
                    let from = parser::address_id(from);
                    self.on_direct_payload(side, from, payload, out);
                }
            }
            (b"SDG", _) => {
                if let Some(payload) = cmd.payload {
                    self.on_sdg(side, payload, out);
                }
            }
            _ => {}
        }
    }

    fn cookie_fact(&self, cookie: Option<&str>, out: &mut Emitter<'_>) {
        if let (Some(c), Some(local)) = (cookie, &self.local) {
            out.fact(format!("{TOKEN_SB_COOKIE}{c}"), local.to_string());
        }
    }

    fn draft(&self, kind: Kind, side: Side, from: Option<&Id>) -> EventDraft {
        let (remote, group) = self.remote_for(from);
        let outgoing = side == Side::Client;
        let mut d = EventDraft::new(kind, outgoing, self.local_id(), remote);
        d.group = group;
        d.sender = if outgoing {
            self.local.clone()
        } else {
            from.cloned()
        };
        d
    }

    /// A switchboard `MSG` payload (`from` = sender for incoming).
    fn on_payload(&mut self, side: Side, from: Option<&Id>, payload: &[u8], out: &mut Emitter<'_>) {
        let content = parser::classify(payload);
        if side == Side::Client && self.local.is_none() {
            if let MsgContent::Typing { user } = content {
                // Our own typing notification names us: on a switchboard
                // picked up mid-stream it is often the only clue.
                self.learn_local(user, out);
            }
        }
        let draft = self.draft(Kind::Message, side, from);
        self.content_event(side, draft, content, out);
    }

    /// A payload addressed to one contact on the NS (`UUM`/`UBM`).
    fn on_direct_payload(&mut self, side: Side, peer: Id, payload: &[u8], out: &mut Emitter<'_>) {
        let outgoing = side == Side::Client;
        let sender = if outgoing {
            self.local.clone()
        } else {
            Some(peer.clone())
        };
        let mut d = EventDraft::new(Kind::Message, outgoing, self.local_id(), peer);
        d.sender = sender;
        self.content_event(side, d, parser::classify(payload), out);
    }

    /// Fill `draft` from a classified MIME payload and emit it, or drop
    /// non-chat content.
    fn content_event(
        &mut self,
        side: Side,
        mut d: EventDraft,
        content: MsgContent<'_>,
        out: &mut Emitter<'_>,
    ) {
        match content {
            MsgContent::Text { charset, body } => {
                if body.is_empty() {
                    return;
                }
                fill_text(&mut d, charset, body, out.keep_raw());
                if d.decode_error {
                    out.count_decode_error();
                }
                out.emit(d);
            }
            MsgContent::Typing { .. } => {
                d.kind = Kind::Typing;
                out.emit(d);
            }
            MsgContent::Invite(inv) => {
                if inv.is_invite() && inv.is_file() {
                    d.kind = Kind::File;
                    d.file_name = inv.file;
                    d.file_size = inv.size;
                    out.emit(d);
                }
            }
            MsgContent::P2p(chunk) => {
                if let Some(inv) = self.p2p_invite(side, &chunk) {
                    match inv.offer() {
                        SlpOffer::File { name, size } => {
                            d.kind = Kind::File;
                            d.file_name = name;
                            d.file_size = size;
                            if name_missing(&d) {
                                d.decode_error = true;
                            }
                            out.emit(d);
                        }
                        SlpOffer::Webcam => {
                            d.kind = Kind::Webcam;
                            out.emit(d);
                        }
                        SlpOffer::Other => {}
                    }
                }
            }
            // Nudges, winks, ink, emoticon objects, profiles: not chat.
            MsgContent::Datacast(_) | MsgContent::Other => {}
        }
    }

    /// The SLP INVITE a P2P chunk completes, reassembling v1 chunks of one
    /// SLP message (session id 0) by id and offset.
    fn p2p_invite(&mut self, side: Side, chunk: &P2pChunk<'_>) -> Option<SlpInvite> {
        let Some(h) = chunk.v1 else {
            return SlpInvite::find(chunk.data);
        };
        if h.session_id != 0 {
            return None;
        }
        let total = usize::try_from(h.total_size).unwrap_or(usize::MAX);
        if h.offset == 0 && total <= chunk.data.len() {
            return SlpInvite::find(chunk.data);
        }
        if h.offset == 0 {
            if total > MAX_SLP || memchr::memmem::find(chunk.data, b"INVITE MSNMSGR:").is_none() {
                return SlpInvite::find(chunk.data);
            }
            self.slp.retain(|p| !(p.side == side && p.id == h.id));
            if self.slp.len() >= MAX_SLP_PENDING {
                self.slp.remove(0);
            }
            self.slp.push(SlpPart {
                side,
                id: h.id,
                total,
                data: chunk.data.to_vec(),
            });
            return None;
        }
        let i = self
            .slp
            .iter()
            .position(|p| p.side == side && p.id == h.id)?;
        let part = &mut self.slp[i];
        if h.offset != part.data.len() as u64 {
            // Out of order or duplicated: give up on this message.
            self.slp.remove(i);
            return None;
        }
        part.data.extend_from_slice(chunk.data);
        if part.data.len() >= part.total {
            let done = self.slp.remove(i);
            return SlpInvite::find(&done.data);
        }
        None
    }

    /// MSNP21 `SDG`: Routing, Reliability and Messaging header blocks, then the body.
    fn on_sdg(&mut self, side: Side, payload: &[u8], out: &mut Emitter<'_>) {
        let routing = Mime::parse(payload);
        let reliability = Mime::parse(routing.body);
        let messaging = Mime::parse(reliability.body);
        let addr = |v: Option<&str>| v.map(sdg_address);
        let to = addr(routing.header_str("To"));
        let from = addr(routing.header_str("From"));
        let outgoing = side == Side::Client;
        let (local, remote) = if outgoing {
            (from.clone(), to)
        } else {
            (to, from.clone())
        };
        let Some(remote) = remote else {
            return;
        };
        if let Some(l) = local.filter(|l| l.contains('@') && !l.starts_with("10:")) {
            if self.local.is_none() {
                self.learn_local(&l, out);
            }
        }
        let group = routing
            .header_str("To")
            .is_some_and(|t| t.trim_start().starts_with("10:"));
        let remote_id = if group {
            addr(routing.header_str("To")).unwrap_or_default()
        } else {
            remote.clone()
        };
        let mut d = EventDraft::new(Kind::Message, outgoing, self.local_id(), remote_id.into());
        d.group = group;
        d.sender = if outgoing {
            self.local.clone()
        } else {
            from.map(Id::from)
        };
        let kind = messaging
            .header_str("Message-Type")
            .unwrap_or_default()
            .trim();
        if kind.eq_ignore_ascii_case("Text") {
            if messaging.body.is_empty() {
                return;
            }
            fill_text(&mut d, messaging.charset(), messaging.body, out.keep_raw());
            out.emit(d);
        } else if kind.eq_ignore_ascii_case("Control/Typing") {
            d.kind = Kind::Typing;
            out.emit(d);
        }
    }
}

fn name_missing(d: &EventDraft) -> bool {
    d.file_name.is_none() && d.file_size.is_none()
}

/// `1:bob@x.com;epid={...}` → `bob@x.com`; `10:{guid}@live.com` kept whole.
fn sdg_address(v: &str) -> String {
    let v = v.trim();
    let v = v.split(';').next().unwrap_or_default();
    if v.starts_with("10:") {
        return v.to_ascii_lowercase();
    }
    let v = v.split_once(':').map_or(v, |(_, a)| a);
    parser::normalize_id(v)
}

/// Decode chat text in `charset` (UTF-8 when absent or unknown).
fn fill_text(d: &mut EventDraft, charset: Option<&str>, body: &[u8], keep_raw: bool) {
    let enc = match charset {
        None => encoding_rs::UTF_8,
        Some(c) if c.eq_ignore_ascii_case("utf-8") => encoding_rs::UTF_8,
        Some(c) => encoding_rs::Encoding::for_label(c.as_bytes()).unwrap_or(encoding_rs::UTF_8),
    };
    let (text, had_errors) = match (enc == encoding_rs::UTF_8, std::str::from_utf8(body)) {
        (true, Ok(s)) => (s.to_owned(), false),
        _ => {
            let (t, _, e) = enc.decode(body);
            (t.into_owned(), e)
        }
    };
    d.text = Some(text);
    d.text_encoding = Some(if enc == encoding_rs::UTF_8 {
        "utf-8"
    } else {
        enc.name()
    });
    d.decode_error = had_errors;
    if had_errors || keep_raw {
        d.raw = Some(body.to_vec());
    }
}

/// One direction of a gateway session's MSNP byte stream.
#[derive(Debug, Default)]
struct VirtualDir {
    pending: Vec<u8>,
    out_of_step: bool,
}

#[derive(Debug)]
struct GatewaySession {
    id: String,
    state: MsnpState,
    dirs: [VirtualDir; 2],
}

/// Bytes of a body first appended to a carried incomplete command whose
/// length is not known yet (doubling while it stays incomplete).
const CARRY_STEP: usize = 512;

/// Decode the whole commands at the start of `buf` (a virtual stream's
/// bytes from a command boundary, or from anywhere when `out_of_step`);
/// returns the bytes consumed. What is left is an incomplete command or a
/// resync candidate that needs more bytes.
fn decode_commands(
    state: &mut MsnpState,
    side: Side,
    out_of_step: &mut bool,
    buf: &[u8],
    out: &mut Emitter<'_>,
) -> usize {
    let mut pos = 0usize;
    loop {
        let rest = &buf[pos..];
        if rest.is_empty() {
            break;
        }
        if *out_of_step {
            match parser::resync(rest) {
                Boundary::At(n) => {
                    pos += n;
                    *out_of_step = false;
                    continue;
                }
                Boundary::NeedMore(n) => {
                    pos += n;
                    break;
                }
                Boundary::Skip(n) => {
                    pos += n.max(1).min(rest.len());
                    continue;
                }
            }
        }
        match parser::frame_command(rest) {
            Frame::Unit(n) => {
                if let Some(cmd) = parser::parse_command(&rest[..n]) {
                    state.on_command(side, &cmd, out);
                }
                pos += n;
            }
            Frame::NeedMore(_) => break,
            Frame::Invalid | Frame::TooLong => {
                out.count_decode_error();
                *out_of_step = true;
                pos += 1;
            }
        }
    }
    pos
}

/// The HTTP gateway: virtual MSNP streams keyed by stable `SessionID`.
#[derive(Debug, Default)]
pub struct Gateway {
    sessions: Vec<GatewaySession>,
    /// One entry per request not yet answered: the body of an `Action=open`
    /// request (whose session only the response names), `None` for others.
    waiting: VecDeque<Option<Vec<u8>>>,
}

impl Gateway {
    fn session(&mut self, id: &str) -> &mut GatewaySession {
        if let Some(i) = self.sessions.iter().position(|s| s.id == id) {
            return &mut self.sessions[i];
        }
        if self.sessions.len() >= MAX_GATEWAY_SESSIONS {
            self.sessions.remove(0);
        }
        self.sessions.push(GatewaySession {
            id: id.to_string(),
            state: MsnpState {
                local_token: Some(format!("{TOKEN_GATEWAY}{id}").into()),
                ..MsnpState::default()
            },
            dirs: [VirtualDir::default(), VirtualDir::default()],
        });
        let last = self.sessions.len() - 1;
        &mut self.sessions[last]
    }

    fn on_http(&mut self, side: Side, unit: &[u8], out: &mut Emitter<'_>) {
        let Some(msg) = http::parse_http(unit) else {
            out.count_decode_error();
            return;
        };
        match (side, &msg.start) {
            (Side::Client, StartLine::Request { target, .. }) => {
                if self.waiting.len() >= MAX_OPEN_QUEUE {
                    self.waiting.pop_front();
                }
                // Every request takes its place in the queue, gateway or not,
                // so that the responses pair up in order.
                let open_body = match http::gateway_target(target) {
                    Some(t) => match t.session {
                        Some(id) => {
                            self.feed(&id, Side::Client, &msg.body, out);
                            None
                        }
                        None if msg.body.len() <= MAX_OPEN_BODY => Some(msg.body.to_vec()),
                        None => Some(Vec::new()),
                    },
                    None => None,
                };
                self.waiting.push_back(open_body);
            }
            (Side::Server, StartLine::Response { .. }) => {
                let asked = self.waiting.pop_front().flatten();
                let Some((id, closed)) = msg
                    .header("X-MSN-Messenger")
                    .and_then(http::messenger_header)
                else {
                    return;
                };
                if let Some(body) = asked {
                    // The open request's body belongs to the session its answer names.
                    self.feed(&id, Side::Client, &body, out);
                }
                self.feed(&id, Side::Server, &msg.body, out);
                if closed {
                    self.sessions.retain(|s| s.id != id);
                }
            }
            _ => {}
        }
    }

    /// Append a body to a virtual stream and decode its whole commands. The
    /// body is decoded where it lies: only the bytes that complete a command
    /// carried over from earlier bodies, and an incomplete command at its
    /// end, are copied.
    fn feed(&mut self, id: &str, side: Side, body: &[u8], out: &mut Emitter<'_>) {
        if body.is_empty() {
            return;
        }
        let s = self.session(id);
        let d = &mut s.dirs[side.index()];
        let mut rest = body;
        while !d.pending.is_empty() && !rest.is_empty() {
            let carried = d.pending.len();
            let want = match parser::frame_command(&d.pending) {
                Frame::NeedMore(Some(total)) if !d.out_of_step => total.saturating_sub(carried),
                // A line still incomplete, or a resync point being judged:
                // grow in doubling steps.
                _ => carried.max(CARRY_STEP),
            };
            let take = want.clamp(1, rest.len());
            let mut buf = std::mem::take(&mut d.pending);
            buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            let used = decode_commands(&mut s.state, side, &mut d.out_of_step, &buf, out);
            if used >= carried {
                // The carried bytes are done with: what is left of `buf`
                // came from this body and is decoded in place below.
                let back = buf.len() - used;
                rest = &body[body.len() - rest.len() - back..];
                buf.clear();
                d.pending = buf;
                break;
            }
            buf.drain(..used);
            d.pending = buf;
        }
        if d.pending.is_empty() {
            let used = decode_commands(&mut s.state, side, &mut d.out_of_step, rest, out);
            d.pending.extend_from_slice(&rest[used..]);
        }
        if d.pending.len() > UNIT_CAP {
            d.pending.clear();
            d.out_of_step = true;
        }
    }

    /// Bytes of the HTTP stream were lost: every virtual stream of that side
    /// may have lost bytes too.
    fn lose_step(&mut self, side: Side) {
        for s in &mut self.sessions {
            let d = &mut s.dirs[side.index()];
            d.pending.clear();
            d.out_of_step = true;
        }
        // Requests and responses pair up in order: after a loss on either
        // side that pairing cannot be trusted.
        self.waiting.clear();
    }
}

/// What the connection carries: decided on its first bytes.
#[derive(Debug, Default)]
enum Mode {
    #[default]
    Undecided,
    Msnp(MsnpState),
    Gateway(Gateway),
}

/// The MSN session of one TCP connection: plain MSNP (NS or SB) or the HTTP gateway.
#[derive(Debug, Default)]
pub struct MsnSession {
    mode: Mode,
    /// Per side ([`Side::index`]), the length of the unit that starts the
    /// pending bytes, once its framing told it (a complete command line or
    /// HTTP head): the framework offers the same unit again with more bytes
    /// until it is complete, and it is not framed again each time.
    known_len: [Option<usize>; 2],
}

impl MsnSession {
    fn decide(&mut self, buf: &[u8]) {
        if matches!(self.mode, Mode::Undecided) && !buf.is_empty() {
            let http = http::starts_http(buf)
                || memchr::memmem::find(&buf[..buf.len().min(4096)], b"/gateway/gateway.dll")
                    .is_some();
            self.mode = if http {
                Mode::Gateway(Gateway::default())
            } else {
                Mode::Msnp(MsnpState::default())
            };
        }
    }
}

impl Session for MsnSession {
    fn next_unit(&mut self, side: Side, buf: &[u8]) -> Step {
        self.decide(buf);
        let known = &mut self.known_len[side.index()];
        if let Some(total) = *known {
            if buf.len() < total {
                return Step::NeedMore;
            }
            *known = None;
            return Step::Unit(total);
        }
        match &self.mode {
            Mode::Gateway(_) => match http::frame_http(buf) {
                HttpFrame::Unit(n) => Step::Unit(n),
                HttpFrame::NeedMore(total) => {
                    *known = total;
                    Step::NeedMore
                }
                HttpFrame::Invalid => {
                    let next = buf
                        .get(1..)
                        .and_then(http::resync_http)
                        .map_or(buf.len(), |p| p + 1);
                    Step::Invalid(next.max(1))
                }
            },
            _ => {
                let frame = parser::frame_command(buf);
                let skip = || {
                    // Out of step: skip to the next plausible command.
                    let rest = buf.get(1..).unwrap_or_default();
                    match parser::resync(rest) {
                        Boundary::At(p) | Boundary::NeedMore(p) | Boundary::Skip(p) => p + 1,
                    }
                };
                match frame {
                    Frame::Unit(n) => Step::Unit(n),
                    Frame::NeedMore(total) => {
                        *known = total;
                        Step::NeedMore
                    }
                    Frame::Invalid => Step::Invalid(skip()),
                    // The line cap, like every decoder's unit cap: a cap hit.
                    Frame::TooLong => Step::OverCap(skip()),
                }
            }
        }
    }

    fn resync(&mut self, side: Side, buf: &[u8], cause: ResyncCause) -> Resync {
        self.decide(buf);
        // The unit being completed (if any) is dropped.
        self.known_len[side.index()] = None;
        match &mut self.mode {
            Mode::Gateway(g) => {
                if cause != ResyncCause::Midstream {
                    g.lose_step(side);
                }
                match http::resync_http(buf) {
                    Some(p) if buf.len() - p >= 8 => Resync::At(p),
                    Some(p) => Resync::Skip(p),
                    None => Resync::Skip(buf.len()),
                }
            }
            _ => match parser::resync(buf) {
                Boundary::At(p) => Resync::At(p),
                Boundary::NeedMore(p) | Boundary::Skip(p) => Resync::Skip(p),
            },
        }
    }

    fn on_unit(&mut self, side: Side, unit: &[u8], out: &mut Emitter<'_>) {
        match &mut self.mode {
            Mode::Gateway(g) => g.on_http(side, unit, out),
            Mode::Msnp(state) => match parser::parse_command(unit) {
                Some(cmd) => state.on_command(side, &cmd, out),
                None => out.count_decode_error(),
            },
            Mode::Undecided => {}
        }
    }

    fn unit_cap(&self) -> usize {
        UNIT_CAP
    }

    fn encrypted(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    /// Decode client bytes given as chunks, on a flow whose SYN was seen.
    fn client_events(chunks: &[Vec<u8>]) -> (Vec<Event>, u64) {
        crate::proto::tests::client_chunk_events("10.0.0.5:3000", "65.54.239.140:80", chunks)
    }

    fn post(body: &[u8]) -> Vec<u8> {
        let mut v = format!(
            "POST /gateway/gateway.dll?SessionID=77.1 HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        v.extend_from_slice(body);
        v
    }

    fn msg(trid: u32, text: &str) -> Vec<u8> {
        let p =
            format!("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{text}");
        format!("MSG {trid} N {}\r\n{p}", p.len()).into_bytes()
    }

    /// A client MSNP stream: login, long and short messages, typing, and a
    /// damaged command the decoder must resynchronise after.
    fn virtual_stream() -> Vec<u8> {
        let typing = b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgscontrol\r\nTypingUser: alice@hotmail.com\r\n\r\n\r\n";
        let mut v = b"USR 1 alice@hotmail.com 1234.5678.9012\r\n".to_vec();
        v.extend_from_slice(&msg(2, &"long ".repeat(300)));
        v.extend_from_slice(format!("MSG 3 U {}\r\n", typing.len()).as_bytes());
        v.extend_from_slice(typing);
        v.extend_from_slice(&msg(4, "short"));
        v.extend_from_slice(b"MSG 5 N zz\r\nnot a command\r\n");
        v.extend_from_slice(&msg(6, "after the damage"));
        v
    }

    #[test]
    fn commands_cut_across_gateway_bodies_anywhere_give_the_same_events() {
        let stream = virtual_stream();
        let texts = |ev: &[Event]| -> Vec<(Kind, Option<String>)> {
            ev.iter().map(|e| (e.kind, e.text.clone())).collect()
        };
        let (whole, errors) = client_events(&[post(&stream)]);
        let expected = texts(&whole);
        assert_eq!(expected.len(), 4);
        assert_eq!(expected[1], (Kind::Typing, None));
        assert_eq!(expected[3].1.as_deref(), Some("after the damage"));
        assert!(errors > 0, "the damaged command is counted");
        for size in [1, 2, 3, 7, 13, 64, 511, 512, 513, 1000, 1600] {
            let bodies: Vec<Vec<u8>> = stream.chunks(size).map(post).collect();
            // Several HTTP messages per chunk, as a keep-alive connection sends them.
            let chunks: Vec<Vec<u8>> = bodies.chunks(3).map(|b| b.concat()).collect();
            let (ev, e) = client_events(&chunks);
            assert_eq!(texts(&ev), expected, "bodies of {size} bytes");
            assert_eq!(e, errors, "bodies of {size} bytes");
            assert!(ev
                .iter()
                .all(|e| e.local_id == LocalId::Known("alice@hotmail.com".into())));
        }
    }
}
