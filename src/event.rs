//! Stage 6, event: the one model every protocol decoder speaks, and the
//! identity facts that let the merge stage resolve users named only on
//! another connection. No I/O here.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

pub use compact_str::CompactString as Id;

use crate::capture::{FrameRef, SourceId};
use crate::time::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Msn,
    Yahoo,
    Oscar,
    Irc,
    Xmpp,
    GaduGadu,
}

impl Protocol {
    pub const ALL: [Protocol; 6] = [
        Protocol::Msn,
        Protocol::Yahoo,
        Protocol::Oscar,
        Protocol::Irc,
        Protocol::Xmpp,
        Protocol::GaduGadu,
    ];

    /// The name used in JSON Lines, CSV and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Msn => "msn",
            Protocol::Yahoo => "yahoo",
            Protocol::Oscar => "oscar",
            Protocol::Irc => "irc",
            Protocol::Xmpp => "xmpp",
            Protocol::GaduGadu => "gadugadu",
        }
    }

    pub fn from_name(s: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.name() == s)
    }

    /// IMSpector's `protocolname`, which is also its log directory name
    /// (imspector-format.md §3).
    pub fn imspector_name(self) -> &'static str {
        match self {
            Protocol::Msn => "MSN",
            Protocol::Yahoo => "Yahoo",
            Protocol::Oscar => "ICQ-AIM",
            Protocol::Irc => "IRC",
            Protocol::Xmpp => "Jabber",
            Protocol::GaduGadu => "Gadu-Gadu",
        }
    }

    /// The id IMSpector used before a protocol plugin learned the real one:
    /// `Unknown`, lower-cased by every plugin except Jabber's (§3).
    pub fn imspector_unknown_id(self) -> &'static str {
        match self {
            Protocol::Xmpp => "Unknown",
            _ => "unknown",
        }
    }

    /// Whether IMSpector ASCII-lower-cased this protocol's ids (all but Jabber).
    pub fn imspector_lowercases_ids(self) -> bool {
        !matches!(self, Protocol::Xmpp)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Message,
    /// A file transfer offer or transfer (name and size when known).
    File,
    /// The user started typing. Stops and pauses are not events.
    Typing,
    /// A webcam invitation.
    Webcam,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::File => "file",
            Kind::Typing => "typing",
            Kind::Webcam => "webcam",
        }
    }

    pub const ALL: [Kind; 4] = [Kind::Message, Kind::File, Kind::Typing, Kind::Webcam];

    /// IMSpector's numeric event type (`TYPE_MSG` 1 .. `TYPE_WEBCAM` 4).
    pub fn imspector_type(self) -> u8 {
        match self {
            Kind::Message => 1,
            Kind::File => 2,
            Kind::Typing => 3,
            Kind::Webcam => 4,
        }
    }
}

/// Damage and context flags of an event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EventFlags {
    /// Bytes were lost in this direction just before this event.
    pub gap_before: bool,
    /// Retransmissions disagreed about bytes of this event; the first were kept.
    pub overlap_conflict: bool,
    /// The connection was picked up without its start.
    pub midstream: bool,
    /// Part of the unit could not be decoded exactly.
    pub decode_error: bool,
}

impl EventFlags {
    /// The set flags' names in their fixed output order, without allocating.
    pub fn iter_names(&self) -> impl Iterator<Item = &'static str> {
        [
            (self.gap_before, "gap_before"),
            (self.overlap_conflict, "overlap_conflict"),
            (self.midstream, "midstream"),
            (self.decode_error, "decode_error"),
        ]
        .into_iter()
        .filter(|(set, _)| *set)
        .map(|(_, name)| name)
    }

    /// The flag names in their fixed output order.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.gap_before {
            v.push("gap_before");
        }
        if self.overlap_conflict {
            v.push("overlap_conflict");
        }
        if self.midstream {
            v.push("midstream");
        }
        if self.decode_error {
            v.push("decode_error");
        }
        v
    }
}

/// A stable flow id: the input and frame number of the flow's first frame.
/// Rendered `<source+1>:<frame>` (e.g. `1:17`), the same in `--streams` output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowId(pub FrameRef);

impl std::fmt::Display for FlowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", u32::from(self.0.source) + 1, self.0.index)
    }
}

/// Who an event's local user is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LocalId {
    /// Not learned (rendered `unknown` in IMSpector trees, null in JSONL).
    Unknown,
    Known(Id),
    /// Known only by a token (login cookie, switchboard ticket) that another
    /// connection's [`IdentityFact`] names; resolved at the merge stage.
    /// Shared: every event of the connection carries the same token.
    Token(Arc<str>),
}

/// "The user behind `token` is `user`", learned at `time` on some connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityFact {
    pub protocol: Protocol,
    pub token: String,
    pub user: String,
    pub time: Timestamp,
    pub frame: FrameRef,
}

/// What each policy filter decided about one event, kept apart so every
/// sink can render it its own way: the IMSpector tree writes only
/// `<n> badwords;` (as IMSpector did), JSON Lines and CSV write
/// [`Event::categories`], the text transcript highlights the hits.
/// All zero/empty when no policy ran.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyMarks {
    /// Byte ranges of the counted bad-word occurrences in `Event::text`, in
    /// the order IMSpector's filter counted them; the count is `len()`.
    pub badword_spans: Vec<(usize, usize)>,
    /// 1-based line of the ACL rule that denied the event.
    pub acl_deny_line: Option<u32>,
    /// `--block-files` applied to this file event.
    pub file_blocked: bool,
}

impl PolicyMarks {
    /// Number of counted bad-word occurrences (IMSpector's `count`).
    pub fn badword_hits(&self) -> usize {
        self.badword_spans.len()
    }
}

/// One IM event.
///
/// For group chat, `text` is the bare message and `sender` the member who
/// sent it; the IMSpector writer adds the `<sender>: ` prefix IMSpector put
/// in front of incoming MSN, Yahoo and IRC group messages itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Capture time of the frame that carried the event's last byte.
    pub time: Timestamp,
    pub protocol: Protocol,
    pub kind: Kind,
    /// True when the local user sent it.
    pub outgoing: bool,
    pub local_id: LocalId,
    /// The peer, or the channel/room for group chat.
    pub remote_id: Id,
    pub group: bool,
    /// Who sent this event.
    pub sender: Option<Id>,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub text: Option<String>,
    /// The charset the text was decoded from (`utf-8`, `windows-1250`, ...).
    pub text_encoding: Option<&'static str>,
    /// The original text bytes, kept when decoding was not exact or `--raw` is on:
    /// the bytes of the text itself as sent (charset unconverted, formatting
    /// codes kept), which the IMSpector writer logs as IMSpector did; for
    /// XMPP the whole stanza the text came from.
    pub raw: Option<Vec<u8>>,
    pub file_name: Option<String>,
    pub file_size: Option<u64>,
    /// Set by policy: IMSpector would have blocked it.
    pub filtered: bool,
    /// Set by policy, e.g. `badwords`, `acl:3`.
    pub categories: Vec<String>,
    /// Which input the event came from.
    pub source: SourceId,
    /// First and last frame that carried the event's bytes.
    pub frames: (u64, u64),
    pub flow: FlowId,
    pub flags: EventFlags,
    /// Bytes missing in this direction since the previous event of the flow.
    pub lost_bytes: u64,
    /// Order of the event within its flow (tie-break for the merge).
    pub seq: u64,
    /// Per-filter detail behind `filtered` and `categories`, set by policy.
    /// Decoders leave it `Default::default()`.
    pub policy: PolicyMarks,
}

impl Event {
    /// An event with everything but its identity empty: no ids, no text,
    /// not filtered, no damage, frames `(0, 0)`. Callers set the rest.
    pub fn new(
        time: Timestamp,
        protocol: Protocol,
        kind: Kind,
        outgoing: bool,
        client: SocketAddr,
        server: SocketAddr,
    ) -> Event {
        Event {
            time,
            protocol,
            kind,
            outgoing,
            local_id: LocalId::Unknown,
            remote_id: Id::default(),
            group: false,
            sender: None,
            client,
            server,
            text: None,
            text_encoding: None,
            raw: None,
            file_name: None,
            file_size: None,
            filtered: false,
            categories: Vec::new(),
            source: 0,
            frames: (0, 0),
            flow: FlowId::default(),
            flags: EventFlags::default(),
            lost_bytes: 0,
            seq: 0,
            policy: PolicyMarks::default(),
        }
    }

    /// The order every sink sees: input, the frame that carried the last byte,
    /// flow, order within the flow (capture order; see the engine's merge).
    pub fn merge_key(&self) -> (SourceId, u64, FlowId, u64) {
        (self.source, self.frames.1, self.flow, self.seq)
    }

    /// The local id as text, when known (tokens are resolved before sinks).
    pub fn local_id_str(&self) -> Option<&str> {
        match &self.local_id {
            LocalId::Known(s) => Some(s),
            _ => None,
        }
    }

    /// The local id as IMSpector would have stored it (§3): ASCII lower-case
    /// except for Jabber, the Jabber resource cut, `unknown`/`Unknown` when
    /// not learned (or empty). This is what the ACL matches and what names
    /// the directory (before path-safety encoding).
    pub fn imspector_local_id(&self) -> Cow<'_, str> {
        imspector_id(self.protocol, self.local_id_str().unwrap_or(""))
    }

    /// The remote id (peer, channel or room) as IMSpector would have stored it.
    pub fn imspector_remote_id(&self) -> Cow<'_, str> {
        imspector_id(self.protocol, &self.remote_id)
    }
}

/// IMSpector's id normalisation for one protocol (imspector-format.md §3).
pub fn imspector_id(protocol: Protocol, id: &str) -> Cow<'_, str> {
    let id = if protocol == Protocol::Xmpp {
        // stripslash: the resource (and anything after it) goes.
        id.split('/').next().unwrap_or("")
    } else {
        id
    };
    if id.is_empty() {
        Cow::Borrowed(protocol.imspector_unknown_id())
    } else if protocol.imspector_lowercases_ids() && id.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(id.to_ascii_lowercase())
    } else {
        Cow::Borrowed(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(protocol: Protocol, local: LocalId, remote: &str) -> Event {
        let a: SocketAddr = "10.0.0.5:1042".parse().unwrap();
        let mut e = Event::new(Timestamp(0), protocol, Kind::Message, true, a, a);
        e.local_id = local;
        e.remote_id = remote.into();
        e
    }

    #[test]
    fn imspector_ids_are_normalised_per_protocol() {
        let e = ev(
            Protocol::Msn,
            LocalId::Known("Alice@Hotmail.COM".into()),
            "Bob@X",
        );
        assert_eq!(e.imspector_local_id(), "alice@hotmail.com");
        assert_eq!(e.imspector_remote_id(), "bob@x");
        let e = ev(
            Protocol::Xmpp,
            LocalId::Known("Carol@Example.org/Home".into()),
            "Dave@J.org/a/b",
        );
        assert_eq!(e.imspector_local_id(), "Carol@Example.org");
        assert_eq!(e.imspector_remote_id(), "Dave@J.org");
        let e = ev(Protocol::Xmpp, LocalId::Unknown, "");
        assert_eq!(e.imspector_local_id(), "Unknown");
        assert_eq!(e.imspector_remote_id(), "Unknown");
        let e = ev(Protocol::Irc, LocalId::Token("cookie".into()), "#Rust");
        assert_eq!(e.imspector_local_id(), "unknown");
        assert_eq!(e.imspector_remote_id(), "#rust");
        // Non-ASCII letters keep their case (ASCII tolower only).
        let e = ev(Protocol::GaduGadu, LocalId::Known("ÄB".into()), "-12");
        assert_eq!(e.imspector_local_id(), "Äb");
        assert_eq!(e.imspector_remote_id(), "-12");
    }

    #[test]
    fn imspector_names_and_types() {
        let names: Vec<_> = Protocol::ALL.iter().map(|p| p.imspector_name()).collect();
        assert_eq!(
            names,
            ["MSN", "Yahoo", "ICQ-AIM", "IRC", "Jabber", "Gadu-Gadu"]
        );
        let types: Vec<_> = Kind::ALL.iter().map(|k| k.imspector_type()).collect();
        assert_eq!(types, [1, 2, 3, 4]);
    }
}
