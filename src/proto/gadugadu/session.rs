//! Gadu-Gadu session: turns the packets of `parser.rs` into events. It owns
//! the connection's local uin (from the login packet, or GG 11's login reply)
//! and the per-direction resync state. Nothing here touches bytes beyond one
//! packet or reads another flow.

use compact_str::ToCompactString;

use crate::event::{Id, Kind, LocalId};
use crate::proto::oscar::parser::{hunt, hunt_cap, unit_len, Hunt, UnitLen};
use crate::proto::{Emitter, EventDraft, Resync, ResyncCause, Side, Step};

use super::parser::{parse_packet, GgFraming, GgMessage, GgPacket, MsgDir};

/// GG message class bit: a CTCP (client-to-client) request, not user text.
const CLASS_CTCP: u32 = 0x10;
/// DCC7 transfer type of a file (1 is voice).
const DCC7_TYPE_FILE: u32 = 4;

/// State of one Gadu-Gadu connection.
#[derive(Debug, Default)]
pub struct GgSession {
    local: Option<Id>,
    /// Per side: looking for a packet boundary after damage in the stream.
    hunting: [bool; 2],
}

fn framing(side: Side) -> GgFraming {
    GgFraming {
        from_client: side == Side::Client,
    }
}

impl GgSession {
    fn local_id(&self) -> LocalId {
        match &self.local {
            Some(u) => LocalId::Known(u.clone()),
            None => LocalId::Unknown,
        }
    }

    /// `peer` becomes the sender of an incoming event (and is dropped for an
    /// outgoing one, whose sender is the local user).
    fn draft(&self, kind: Kind, outgoing: bool, remote: Id, peer: Option<Id>) -> EventDraft {
        let mut d = EventDraft::new(kind, outgoing, self.local_id(), remote);
        d.sender = if outgoing { self.local.clone() } else { peer };
        d
    }

    fn message(&self, mut m: GgMessage<'_>, out: &mut Emitter<'_>) {
        if m.class & CLASS_CTCP != 0 {
            return;
        }
        let outgoing = m.dir != MsgDir::Recv;
        let (remote, group) = if let Some(chat) = m.chat_id {
            (compact_str::format_compact!("chat:{chat}"), true)
        } else if !m.conference.is_empty() {
            // Everyone in the conference but the local user (protocols.md §6).
            let mut uins: Vec<Id> = m
                .conference
                .iter()
                .map(ToCompactString::to_compact_string)
                .chain(m.peer.clone())
                .filter(|u| self.local.as_deref() != Some(u.as_str()))
                .collect();
            uins.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            uins.dedup();
            (
                compact_str::format_compact!("conf:{}", uins.join(",")),
                true,
            )
        } else if outgoing {
            // The peer id itself becomes the remote id: no copy needed.
            (m.peer.take().unwrap_or_else(|| "unknown".into()), false)
        } else {
            (m.peer.clone().unwrap_or_else(|| "unknown".into()), false)
        };
        let mut d = self.draft(Kind::Message, outgoing, remote, m.peer);
        d.group = group;
        d.text = Some(m.text);
        d.text_encoding = Some(m.encoding);
        d.decode_error = m.lossy;
        // The CP1250 bytes are what GG 6 clients sent and IMSpector logged.
        if m.lossy || out.keep_raw() || m.encoding == "windows-1250" {
            d.raw = Some(m.raw.to_vec());
        }
        out.emit(d);
    }
}

impl crate::proto::Session for GgSession {
    fn next_unit(&mut self, side: Side, buf: &[u8]) -> Step {
        let s = side.index();
        let f = framing(side);
        if self.hunting[s] {
            match hunt(&f, buf) {
                Hunt::Found(0) => self.hunting[s] = false,
                Hunt::Found(n) | Hunt::Wait(n) if n > 0 => return Step::Skip(n),
                _ => return Step::NeedMore,
            }
        }
        match unit_len(&f, buf) {
            UnitLen::Complete(n) => Step::Unit(n),
            UnitLen::Incomplete => Step::NeedMore,
            UnitLen::Bad => {
                self.hunting[s] = true;
                Step::Invalid(1)
            }
        }
    }

    fn resync(&mut self, side: Side, buf: &[u8], _cause: ResyncCause) -> Resync {
        self.hunting[side.index()] = false;
        match hunt(&framing(side), buf) {
            Hunt::Found(n) => Resync::At(n),
            Hunt::Wait(n) => Resync::Skip(n),
        }
    }

    fn on_unit(&mut self, side: Side, unit: &[u8], out: &mut Emitter<'_>) {
        let from_client = side == Side::Client;
        let Some(p) = parse_packet(unit, from_client) else {
            out.count_decode_error();
            return;
        };
        match p {
            GgPacket::Login { uin, .. } if from_client => self.local = Some(uin),
            GgPacket::LoginOk { uin: Some(uin) } if self.local.is_none() => self.local = Some(uin),
            GgPacket::Message(m) => self.message(m, out),
            // 0 = stopped; any other value (a length, or libpurple's random
            // number) = typing (protocols.md §6).
            GgPacket::Typing { uin, length } if length != 0 => {
                let peer = uin.to_compact_string();
                let d = self.draft(Kind::Typing, from_client, peer.clone(), Some(peer));
                out.emit(d);
            }
            GgPacket::Dcc7New {
                from,
                to,
                kind,
                name,
                size,
            } if kind == DCC7_TYPE_FILE => {
                let outgoing = match &self.local {
                    Some(l) => *l == from.to_compact_string(),
                    None => from_client,
                };
                let peer = if outgoing { to } else { from }.to_compact_string();
                let mut d = self.draft(Kind::File, outgoing, peer.clone(), Some(peer));
                let (n, _, bad) = encoding_rs::WINDOWS_1250.decode(name);
                d.file_name = Some(n.into_owned());
                d.file_size = Some(size);
                d.decode_error = bad;
                out.emit(d);
            }
            _ => {}
        }
    }

    fn unit_cap(&self) -> usize {
        hunt_cap::<GgFraming>()
    }

    fn encrypted(&self) -> bool {
        false
    }
}
