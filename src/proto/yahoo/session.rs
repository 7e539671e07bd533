//! Yahoo session state: turns YMSG packets into events. Owns who the local
//! user is (login packets, else the side of the message that matches the
//! connection direction — never msgsnarf's swap), message batches, typing and
//! webcam notifies, file offers, conference and chat-room messages. Never
//! touches TCP or another flow's state (protocols.md §2, imspector-format.md §3, §9).

use crate::event::{Id, Kind, LocalId};
use crate::proto::{Emitter, EventDraft, Resync, ResyncCause, Session, Side, Step};

use super::parser::{self, service, Boundary, Frame, Packet};

/// One Yahoo connection.
#[derive(Debug, Default)]
pub struct YahooSession {
    /// The signed-in user, from the login packets (lowercased).
    local: Option<Id>,
    /// The allocation of the pair list every packet is parsed into (kept
    /// empty between packets; see [`recycle`]).
    pairs: Vec<(u32, &'static [u8])>,
    /// Per direction ([`Side::index`]), the last peer id made from wire bytes.
    peers: [PeerMemo; 2],
}

/// Longest wire id a [`PeerMemo`] remembers (the inline size of [`Id`]).
const MEMO_RAW: usize = 24;

/// A peer id with the wire bytes it was made from: a conversation names the
/// same contact in every packet, so trimming, the UTF-8 check and the
/// lowercasing are done once, not per packet.
#[derive(Debug, Default)]
struct PeerMemo {
    raw: [u8; MEMO_RAW],
    len: usize,
    id: Option<Id>,
}

impl PeerMemo {
    /// What [`id`] makes of `v`.
    fn id(&mut self, v: &[u8]) -> Option<Id> {
        if let Some(known) = &self.id {
            if self.raw.get(..self.len) == Some(v) {
                return Some(known.clone());
            }
        }
        let made = id(v)?;
        if v.len() <= MEMO_RAW {
            self.raw[..v.len()].copy_from_slice(v);
            self.len = v.len();
            self.id = Some(made.clone());
        }
        Some(made)
    }
}

/// Most pairs whose list's allocation a session keeps between packets: a
/// chat packet has a dozen; a hostile one with thousands is not kept.
const KEEP_PAIRS: usize = 64;

/// An empty pair list for other borrowed bytes, in `v`'s allocation: std
/// collects a `Vec` into one of the same layout in place, so no packet
/// allocates its list. Allocations grown past [`KEEP_PAIRS`] are freed.
fn recycle<'b>(mut v: Vec<(u32, &[u8])>) -> Vec<(u32, &'b [u8])> {
    v.clear();
    if v.capacity() > KEEP_PAIRS {
        return Vec::new();
    }
    v.into_iter().map(|(k, _)| (k, &[][..])).collect()
}

fn id(v: &[u8]) -> Option<Id> {
    let v = v.trim_ascii();
    if v.is_empty() {
        return None;
    }
    let mut id = match std::str::from_utf8(v) {
        Ok(s) => Id::from(s),
        Err(_) => Id::from(String::from_utf8_lossy(v)),
    };
    id.make_ascii_lowercase();
    Some(id)
}

impl YahooSession {
    fn learn_local(&mut self, v: Option<&[u8]>) {
        if self.local.is_none() {
            if let Some(l) = v.and_then(id) {
                self.local = Some(l);
            }
        }
    }

    /// Local id of an event: the login, else the packet's own-side key.
    fn local_for(&self, own: Option<&[u8]>) -> LocalId {
        match &self.local {
            Some(l) => LocalId::Known(l.clone()),
            None => own.and_then(id).map_or(LocalId::Unknown, LocalId::Known),
        }
    }

    fn local_name(&self, own: Option<&[u8]>) -> Option<Id> {
        match self.local_for(own) {
            LocalId::Known(l) => Some(l),
            _ => None,
        }
    }

    fn on_packet(&mut self, side: Side, p: &Packet<'_>, out: &mut Emitter<'_>) {
        let svc = p.header.service;
        match (svc, side) {
            (service::AUTH, Side::Client) | (service::AUTH_RESP, Side::Client) => {
                // AUTH key 1; AUTHRESP keys 0/1/2 all name the user.
                self.learn_local(p.get(1).or_else(|| p.get(0)).or_else(|| p.get(2)));
            }
            (service::LOGON, Side::Server) if p.header.status == 0 => {
                // The logon reply names the user in key 0 (then buddies in 7).
                self.learn_local(p.get(0));
            }
            (service::MESSAGE, _) => self.messages(side, p, out),
            (service::NOTIFY, _) => self.notify(side, p, out),
            (service::CONF_MSG, _) => self.conference(side, p, out),
            (service::CHAT_COMMENT, _) => self.chat_room(side, p, out),
            (service::FILE_TRANS_15, _) if p.get_str(222).map(str::trim) == Some("1") => {
                self.files(side, p, out);
            }
            (service::P2P_FILE_XFER, _) | (service::FILE_TRANSFER, _) if p.get(27).is_some() => {
                self.files(side, p, out);
            }
            _ => {}
        }
    }

    /// The (own, peer) keys of a 1:1 packet in this direction: c→s own = 1,
    /// peer = 5; s→c own = 5, peer = 4 (1 when an old server sends no 4).
    fn ends<'a>(side: Side, p: &Packet<'a>) -> (Option<&'a [u8]>, Option<&'a [u8]>) {
        match side {
            Side::Client => (p.get(1).or_else(|| p.get(0)), p.get(5)),
            Side::Server => (p.get(5), p.get(4).or_else(|| p.get(1))),
        }
    }

    fn draft(&self, kind: Kind, side: Side, own: Option<&[u8]>, peer: Id) -> EventDraft {
        let outgoing = side == Side::Client;
        let local = self.local_for(own);
        let sender = if outgoing {
            match &local {
                LocalId::Known(l) => Some(l.clone()),
                _ => None,
            }
        } else {
            Some(peer.clone())
        };
        let mut d = EventDraft::new(kind, outgoing, local, peer);
        d.sender = sender;
        d
    }

    /// Service 0x06: one or more messages (offline batches, status 5); a new
    /// one starts at each sender key after the first.
    fn messages(&mut self, side: Side, p: &Packet<'_>, out: &mut Emitter<'_>) {
        let sender_key = if side == Side::Client { 1 } else { 4 };
        let mut msg = MessageFields::default();
        let mut started = false;
        for &(k, v) in &p.pairs {
            if k == sender_key || (side == Side::Server && k == 1 && !started) {
                if started {
                    self.emit_message(side, &msg, out);
                    msg = MessageFields::default();
                }
                // Keys before the first sender (a leading 5) belong to the
                // first message; libpurple drops them, we keep them.
                started = true;
                msg.from = Some(v);
                continue;
            }
            match k {
                5 => msg.to = Some(v),
                14 => msg.text = Some(v),
                97 => msg.utf8 = v == b"1",
                _ => {}
            }
        }
        self.emit_message(side, &msg, out);
    }

    fn emit_message(&mut self, side: Side, m: &MessageFields<'_>, out: &mut Emitter<'_>) {
        let Some(text) = m.text else {
            return;
        };
        let (own, peer) = match side {
            Side::Client => (m.from, m.to),
            Side::Server => (m.to, m.from),
        };
        let Some(peer) = peer.and_then(|v| self.peers[side.index()].id(v)) else {
            out.count_decode_error();
            return;
        };
        let mut d = self.draft(Kind::Message, side, own, peer);
        fill_text(&mut d, text, m.utf8, out.keep_raw());
        if d.decode_error {
            out.count_decode_error();
        }
        out.emit(d);
    }

    /// Service 0x4B: typing (49 = TYPING, 13 = 1 start) and webcam invitations.
    fn notify(&mut self, side: Side, p: &Packet<'_>, out: &mut Emitter<'_>) {
        let kind = match p.get_str(49).map(str::trim) {
            Some("TYPING") if p.get_str(13).map(str::trim) == Some("1") => Kind::Typing,
            Some("WEBCAMINVITE") => Kind::Webcam,
            _ => return,
        };
        let (own, peer) = Self::ends(side, p);
        let Some(peer) = peer.and_then(|v| self.peers[side.index()].id(v)) else {
            return;
        };
        let d = self.draft(kind, side, own, peer);
        out.emit(d);
    }

    /// Service 0x1D: conference message, room = key 57, sender = 3 (s→c).
    fn conference(&mut self, side: Side, p: &Packet<'_>, out: &mut Emitter<'_>) {
        let (Some(room), Some(text)) = (p.get(57).and_then(id), p.get(14)) else {
            return;
        };
        let own = p.get(1);
        let sender = match side {
            Side::Client => self.local_name(own),
            Side::Server => p.get(3).and_then(id),
        };
        let mut d = EventDraft::new(
            Kind::Message,
            side == Side::Client,
            self.local_for(own),
            room,
        );
        d.group = true;
        d.sender = sender;
        fill_text(&mut d, text, p.get(97) == Some(b"1"), out.keep_raw());
        out.emit(d);
    }

    /// Service 0xA8: chat-room message, room = 104, sender = 109, text = 117.
    fn chat_room(&mut self, side: Side, p: &Packet<'_>, out: &mut Emitter<'_>) {
        let (Some(room), Some(text)) = (p.get(104).and_then(id), p.get(117)) else {
            return;
        };
        let own = if side == Side::Client {
            p.get(109).or_else(|| p.get(1))
        } else {
            None
        };
        let mut d = EventDraft::new(
            Kind::Message,
            side == Side::Client,
            self.local_for(own),
            room,
        );
        d.group = true;
        d.sender = match side {
            Side::Client => self.local_name(own),
            Side::Server => p.get(109).and_then(id),
        };
        fill_text(&mut d, text, p.get(97) == Some(b"1"), out.keep_raw());
        out.emit(d);
    }

    /// File offers: every key 27 (name) with the key 28 (size) that follows it.
    fn files(&mut self, side: Side, p: &Packet<'_>, out: &mut Emitter<'_>) {
        let (own, peer) = Self::ends(side, p);
        let Some(peer) = peer.and_then(|v| self.peers[side.index()].id(v)) else {
            return;
        };
        let mut pending: Option<&[u8]> = None;
        let mut offers: Vec<(&[u8], Option<u64>)> = Vec::new();
        for &(k, v) in &p.pairs {
            match k {
                27 => {
                    if let Some(name) = pending.replace(v) {
                        offers.push((name, None));
                    }
                }
                28 => {
                    if let Some(name) = pending.take() {
                        let size = std::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.trim().parse().ok());
                        offers.push((name, size));
                    }
                }
                _ => {}
            }
        }
        if let Some(name) = pending {
            offers.push((name, None));
        }
        for (name, size) in offers {
            let mut d = self.draft(Kind::File, side, own, peer.clone());
            // libpurple `yahoo_filexfer.c`: file names are UTF-8.
            let dec = parser::decode(name, true);
            d.file_name = Some(dec.text);
            d.file_size = size;
            d.decode_error = dec.lossy;
            out.emit(d);
        }
    }
}

#[derive(Default)]
struct MessageFields<'a> {
    from: Option<&'a [u8]>,
    to: Option<&'a [u8]>,
    text: Option<&'a [u8]>,
    utf8: bool,
}

/// Decoded text with Yahoo markup stripped; the original bytes kept when the
/// decoding was lossy or raw text is asked for.
fn fill_text(d: &mut EventDraft, bytes: &[u8], utf8: bool, keep_raw: bool) {
    let dec = parser::decode(bytes, utf8);
    let stripped = match parser::strip_markup(&dec.text) {
        std::borrow::Cow::Owned(s) if s.len() != dec.text.len() => Some(s),
        _ => None,
    };
    d.text = Some(stripped.unwrap_or(dec.text));
    d.text_encoding = Some(dec.encoding);
    d.decode_error = dec.lossy;
    if dec.lossy || keep_raw {
        d.raw = Some(bytes.to_vec());
    }
}

impl Session for YahooSession {
    fn next_unit(&mut self, _side: Side, buf: &[u8]) -> Step {
        match parser::frame_unit(buf) {
            Frame::Unit(n) => Step::Unit(n),
            Frame::NeedMore => Step::NeedMore,
            Frame::Invalid => {
                let rest = buf.get(1..).unwrap_or_default();
                match parser::resync_unit(rest) {
                    Boundary::At(p) | Boundary::NeedMore(p) | Boundary::Skip(p) => {
                        Step::Invalid(p + 1)
                    }
                }
            }
        }
    }

    fn resync(&mut self, _side: Side, buf: &[u8], _cause: ResyncCause) -> Resync {
        match parser::resync_unit(buf) {
            Boundary::At(p) => Resync::At(p),
            Boundary::NeedMore(p) | Boundary::Skip(p) => Resync::Skip(p),
        }
    }

    fn on_unit(&mut self, side: Side, unit: &[u8], out: &mut Emitter<'_>) {
        let pairs = recycle(std::mem::take(&mut self.pairs));
        let Some(p) = parser::parse_unit_with(unit, pairs) else {
            out.count_decode_error();
            return;
        };
        self.on_packet(side, &p, out);
        self.pairs = recycle(p.pairs);
    }

    fn unit_cap(&self) -> usize {
        parser::MAX_PACKET
    }

    fn encrypted(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    use super::super::parser::tests::packet;

    /// Decode client packets, one chunk each, on a flow whose SYN was seen.
    fn client_events(packets: &[Vec<u8>]) -> Vec<Event> {
        crate::proto::tests::client_chunk_events("10.0.0.9:2201", "66.163.181.170:5050", packets).0
    }

    fn message(to: &[u8], text: &[u8]) -> Vec<u8> {
        packet(
            service::MESSAGE,
            0,
            &[(1, b"alice_y"), (5, to), (97, b"1"), (14, text)],
        )
    }

    #[test]
    fn the_pair_list_is_reused_across_packets_of_any_size() {
        // A batch of a thousand messages in one packet (3000 pairs) between
        // ordinary ones: every packet is split on its own pairs only.
        let mut batch = Vec::new();
        for i in 0..1000u32 {
            batch.push((1, b"alice_y".to_vec()));
            batch.push((5, format!("peer{}", i % 3).into_bytes()));
            batch.push((14, format!("batch {i}").into_bytes()));
        }
        let refs: Vec<(u32, &[u8])> = batch.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let packets = [
            message(b"bob_y", b"before"),
            packet(service::MESSAGE, 5, &refs),
            message(b"Carol_Y", b"after"),
            packet(service::NOTIFY, 0, &[(49, b"TYPING"), (1, b"alice_y")]),
            message(b"bob_y", b"last"),
        ];
        let ev = client_events(&packets);
        let seen: Vec<(&str, Option<&str>)> = ev
            .iter()
            .map(|e| (e.remote_id.as_str(), e.text.as_deref()))
            .collect();
        assert_eq!(seen.len(), 1003);
        assert_eq!(seen[0], ("bob_y", Some("before")));
        assert_eq!(seen[1], ("peer0", Some("batch 0")));
        assert_eq!(seen[1000], ("peer0", Some("batch 999")));
        // The notify packet has no peer key: no event, and no pair of the
        // packets before it leaks into it.
        assert_eq!(
            &seen[1001..],
            [("carol_y", Some("after")), ("bob_y", Some("last"))]
        );
        assert!(ev
            .iter()
            .all(|e| e.local_id == LocalId::Known("alice_y".into())));
    }

    #[test]
    fn a_recycled_pair_list_keeps_a_small_allocation_only() {
        let mut small: Vec<(u32, &[u8])> = Vec::with_capacity(16);
        small.push((1, b"x"));
        let again: Vec<(u32, &'static [u8])> = recycle(small);
        assert!(again.is_empty());
        assert!(again.capacity() >= 16, "the allocation is kept");
        let mut big: Vec<(u32, &[u8])> = Vec::with_capacity(KEEP_PAIRS + 1);
        big.push((1, b"x"));
        let dropped: Vec<(u32, &'static [u8])> = recycle(big);
        assert_eq!(dropped.capacity(), 0, "a hostile packet's list is freed");
    }

    #[test]
    fn the_peer_memo_gives_what_id_gives() {
        let mut m = PeerMemo::default();
        for v in [
            &b"Bob_Y"[..],
            b"bob_y",
            b" bob_y ",
            b"Bob_Y",
            b"carol",
            b"",
            b"   ",
            b"caf\xe9",
            b"a_name_longer_than_twenty_four_bytes",
            b"a_name_longer_than_twenty_four_bytes",
            b"bob_y",
        ] {
            assert_eq!(m.id(v), id(v), "{v:?}");
        }
        assert_eq!(m.id(b"Bob_Y").as_deref(), Some("bob_y"));
    }
}
