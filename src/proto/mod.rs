//! Stage 5, proto: decides what a stream is by its content (ports are only a
//! hint) and feeds its chunks to that protocol's session, which turns them
//! into [`Event`]s. Each protocol lives in `proto/<name>/` with a pure
//! `parser.rs` (bytes → protocol units, no I/O, no clock) and a `session.rs`
//! (state across units → events); its `mod.rs` holds the probe and the wiring
//! (a [`Decoder`] entry).
//!
//! The engine sees only [`FlowDecoder`]: one per TCP flow, a
//! [`StreamConsumer`] whose events it drains after each batch.
//!
//! This module owns, once for every protocol: the probing of the first bytes
//! of each direction, the choice of the client side, the buffer of the one
//! incomplete unit per direction (with its cap), resynchronisation after a
//! `Gap`, and the bookkeeping every event carries (time, addresses, frames,
//! flags, lost bytes, per-flow sequence). Sessions never see TCP and never
//! buffer stream bytes themselves. Nothing here reads the wall clock.
//!
//! Adding a protocol (see `irc/` and `xmpp/`):
//! - `mod.rs`: a `probe(first bytes of one direction, ProbeStart) -> Verdict`
//!   that says yes only on evidence other protocols cannot produce, no as
//!   soon as the bytes cannot be this protocol, and which end wrote them
//!   when it can tell; and a `DECODER` entry (classic, usual and TLS ports,
//!   probe, session constructor) listed in [`DECODERS`].
//! - `parser.rs`: pure functions that find where a unit ends ("need more"
//!   otherwise), where decoding may restart after a gap, and what a complete
//!   unit says. No state beyond a scan position, no panics on any input.
//! - `session.rs`: a [`Session`] that keeps identities and other state
//!   across units and hands [`EventDraft`]s to the [`Emitter`], which fills
//!   in time, addresses, frames, flags, lost bytes and sequence.

pub mod gadugadu;
pub mod irc;
pub mod msn;
pub mod oscar;
pub mod xmpp;
pub mod yahoo;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::capture::{FrameRef, SourceId};
use crate::event::{
    Event, EventFlags, FlowId, Id, IdentityFact, Kind, LocalId, PolicyMarks, Protocol,
};
use crate::net::{Dir, FlowKey};
use crate::tcp::{Chunk, ChunkInfo, CloseReason, StreamConsumer};
use crate::time::Timestamp;

/// Decoding options shared by every flow.
#[derive(Clone, Debug)]
pub struct ProtoConfig {
    /// Protocols to decode (all by default).
    pub protocols: Vec<Protocol>,
    /// Classic port-based detection instead of content probes.
    pub ports_only: bool,
    /// Keep the original bytes of every text in `Event::raw`.
    pub raw: bool,
    /// Write files carried by file-transfer connections here (`--carve`).
    pub carve_dir: Option<std::path::PathBuf>,
}

impl Default for ProtoConfig {
    fn default() -> Self {
        ProtoConfig {
            protocols: Protocol::ALL.to_vec(),
            ports_only: false,
            raw: false,
            carve_dir: None,
        }
    }
}

/// What the engine knows about a flow when it creates its decoder.
#[derive(Clone, Copy, Debug)]
pub struct FlowStart {
    pub key: FlowKey,
    pub flow: FlowId,
    pub source: SourceId,
    /// Direction of client → server bytes when a SYN was seen.
    pub client_dir: Option<Dir>,
}

/// How many bytes of each direction the probes may look at before the flow
/// is declared "not IM" and stops costing anything.
pub const PROBE_LIMIT: usize = 4096;

/// Bytes of a new chunk first appended to a pending unit (doubling while the
/// unit is still incomplete).
const PENDING_STEP: usize = 512;

/// How many chunks (data or gaps) the probing phase keeps for replay: IM
/// sessions identify themselves within their first few segments, and a flow
/// cut into slivers must not hold thousands of tiny copies.
pub const PROBE_CHUNKS: usize = 256;

/// Counters of the proto stage. One per flow; the engine merges them.
#[derive(Serialize, Default, Clone, Debug, PartialEq, Eq)]
pub struct ProtoStats {
    /// Flows decided per protocol name.
    pub flows: BTreeMap<&'static str, u64>,
    /// Flows no probe recognised (or ports-only found no IM port).
    pub undetected: u64,
    /// Flows that switched to TLS (STARTTLS, XMPP `<proceed/>`, IRC 670).
    pub encrypted: u64,
    /// Protocol units (lines, stanzas, packets) decoded.
    pub units: u64,
    /// Units or parts of units that could not be decoded exactly.
    pub decode_errors: u64,
    /// Units dropped because they outgrew the per-unit cap (incomplete past
    /// the buffer cap, or a part past its own limit: [`Step::OverCap`]).
    pub caps_hit: u64,
    /// Gaps met after detection.
    pub gaps: u64,
    /// Echoed or reflected copies of the local user's own messages dropped.
    pub echoes_dropped: u64,
    /// Offers of a direct chat connection that is not decoded (IRC DCC CHAT):
    /// noted here, not reported as chat.
    pub chat_offers: u64,
    /// Files written by `--carve`, with their SHA-256 (for the manifest).
    pub carved_files: Vec<CarvedFile>,
}

/// A file transfer's bytes written to the carve directory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CarvedFile {
    /// Path of the carved file (inside the carve directory).
    pub path: String,
    /// The file name the sender gave (from the wire; never used as a path).
    pub name: String,
    /// Size the sender announced, and bytes actually seen.
    pub announced_size: u64,
    pub bytes_seen: u64,
    /// SHA-256 of the bytes seen, lower-case hex.
    pub sha256: String,
    /// The transfer's flow (as `FlowId` displays) and whether every byte was seen.
    pub flow: String,
    pub complete: bool,
}

impl ProtoStats {
    /// Add `other`'s counts to these.
    pub fn merge(&mut self, other: &ProtoStats) {
        for (name, n) in &other.flows {
            *self.flows.entry(name).or_insert(0) += n;
        }
        self.undetected += other.undetected;
        self.encrypted += other.encrypted;
        self.units += other.units;
        self.decode_errors += other.decode_errors;
        self.caps_hit += other.caps_hit;
        self.gaps += other.gaps;
        self.echoes_dropped += other.echoes_dropped;
        self.chat_offers += other.chat_offers;
        self.carved_files.extend(other.carved_files.iter().cloned());
    }
}

/// A direction named by role once the client side is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Bytes the client sent (client → server).
    Client,
    /// Bytes the server sent (server → client).
    Server,
}

impl Side {
    /// 0 for the client's bytes, 1 for the server's: an index into per-side arrays.
    pub fn index(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Server => 1,
        }
    }
}

/// What a probe found out about which end of the flow wrote the bytes it saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// These bytes were written by the client.
    Client,
    /// These bytes were written by the server.
    Server,
    /// The protocol is certain, the role is not (ports decide).
    Unknown,
}

/// A probe's answer for one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// This protocol, written by this role.
    Yes(Role),
    /// Not this protocol.
    No,
    /// Cannot tell yet.
    NeedMore,
}

/// Where the bytes given to a probe start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeStart {
    /// At the start of the stream (a SYN was seen and nothing was lost).
    Stream,
    /// Somewhere inside the stream (no SYN, or right after a gap): a unit may
    /// be cut at the front.
    Midstream,
}

/// A parser's answer to "where does the next unit end?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The first `n` bytes (`n > 0`) are one complete unit.
    Unit(usize),
    /// The first `n` bytes (`n > 0`) are noise between units (keep-alives).
    Skip(usize),
    /// The first `n` bytes (`n > 0`) are damage: a header that cannot be
    /// (a length past the protocol's maximum, a bad magic). They are skipped
    /// like noise, and counted as a decode error.
    Invalid(usize),
    /// The first `n` bytes (`n > 0`) are a unit past the protocol's own limit
    /// for its kind, found before the unit outgrew [`Session::unit_cap`] (an
    /// MSN command line with no end within 8 KiB, while a whole command may
    /// be 264 KiB). As when a unit outgrows the buffer cap: counted as a cap
    /// hit, the next event is flagged, and decoding resynchronises after
    /// them (the rest of the unit may still be coming).
    OverCap(usize),
    /// The unit is not complete yet.
    NeedMore,
}

/// A parser's answer to "where can decoding start again?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resync {
    /// A unit starts `n` bytes in.
    At(usize),
    /// No unit start in these bytes; the first `n` can be dropped (the rest,
    /// a possible prefix of a unit start, must be offered again with more).
    Skip(usize),
}

/// Why decoding of a direction must resynchronise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResyncCause {
    /// The direction was picked up without its start.
    Midstream,
    /// A `Gap` cut a unit.
    Gap,
    /// A unit outgrew its cap and was dropped.
    Cap,
}

/// The protocol-specific half of an event; [`Emitter`] adds the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventDraft {
    pub kind: Kind,
    pub outgoing: bool,
    pub local_id: LocalId,
    pub remote_id: Id,
    pub group: bool,
    pub sender: Option<Id>,
    pub text: Option<String>,
    pub text_encoding: Option<&'static str>,
    /// Original text bytes: set when decoding was not exact, or when the
    /// emitter asks to keep raw bytes (`--raw`).
    pub raw: Option<Vec<u8>>,
    pub file_name: Option<String>,
    pub file_size: Option<u64>,
    pub decode_error: bool,
}

impl EventDraft {
    /// A draft of `kind` with everything else empty.
    pub fn new(kind: Kind, outgoing: bool, local_id: LocalId, remote_id: Id) -> Self {
        EventDraft {
            kind,
            outgoing,
            local_id,
            remote_id,
            group: false,
            sender: None,
            text: None,
            text_encoding: None,
            raw: None,
            file_name: None,
            file_size: None,
            decode_error: false,
        }
    }
}

/// What a protocol session implements. One session serves both directions of
/// a flow; [`Side`] tells them apart. The framework calls `next_unit` on the
/// bytes of the one pending unit (always starting at a unit boundary), hands
/// each complete unit to `on_unit`, and asks `resync` where to restart after
/// a gap, a dropped oversize unit or a mid-stream start.
pub trait Session: Send {
    /// Where the unit at the start of `buf` ends. May keep scan state for the
    /// same unit across calls (`buf` then starts at the same byte and is longer).
    fn next_unit(&mut self, side: Side, buf: &[u8]) -> Step;

    /// Where in `buf` a unit can start again. Forget any partial unit.
    fn resync(&mut self, side: Side, buf: &[u8], cause: ResyncCause) -> Resync;

    /// Decode one complete unit into events.
    fn on_unit(&mut self, side: Side, unit: &[u8], out: &mut Emitter<'_>);

    /// Largest unit, in bytes, this protocol will buffer.
    fn unit_cap(&self) -> usize;

    /// True once the flow switched to TLS: nothing more can be decoded.
    fn encrypted(&self) -> bool;

    /// Called once when the session starts, with the decoding options (e.g.
    /// the carve directory) and the flow id. Most protocols need nothing.
    fn configure(&mut self, _config: &ProtoConfig, _flow: FlowId) {}

    /// Called once when the flow ends: emit what was waiting for more bytes
    /// (e.g. a file transfer cut short). Events get the close time and frame.
    fn on_close(&mut self, _out: &mut Emitter<'_>) {}
}

/// A protocol's entry in the detection table.
pub struct Decoder {
    pub protocol: Protocol,
    /// Ports IMSpector listened on (the `--ports-only` detection).
    pub classic_ports: &'static [u16],
    /// Ports the protocol commonly uses: only a tie-breaker for the client side.
    pub usual_ports: &'static [u16],
    /// Ports where the protocol runs inside TLS from the first byte: a TLS
    /// flow there is counted as an encrypted flow of this protocol.
    pub tls_ports: &'static [u16],
    pub probe: fn(&[u8], ProbeStart) -> Verdict,
    pub session: fn() -> Box<dyn Session>,
}

/// The protocols imscan can decode, in probe order.
pub const DECODERS: &[Decoder] = &[
    irc::DECODER,
    xmpp::DECODER,
    msn::DECODER,
    yahoo::DECODER,
    oscar::DECODER,
    gadugadu::DECODER,
];

/// Per-direction bookkeeping shared by every protocol.
#[derive(Default)]
struct DirState {
    /// Bytes of the one incomplete unit (or a resync tail).
    pending: Vec<u8>,
    /// First frame that carried bytes of `pending`.
    pending_first: FrameRef,
    /// Decoding waits for a unit start.
    resync: Option<ResyncCause>,
    /// A gap (or a dropped unit) since the previous event of this direction.
    gap_before: bool,
    /// Gap bytes since the previous event of this direction.
    lost: u64,
    /// An overlap conflict since the previous event of this direction.
    overlap: bool,
    /// Any chunk of this direction said it was picked up mid-way.
    midstream: bool,
    /// Data was seen in this direction.
    seen_data: bool,
}

/// The detection phase: the first bytes of each direction, kept to be
/// replayed into the session once a probe says yes.
#[derive(Default)]
struct Probing {
    /// The bytes each direction (by [`Dir::index`]) carried since its last
    /// gap, at most [`PROBE_LIMIT`].
    window: [Vec<u8>; 2],
    /// Whether `window` starts inside the stream.
    window_mid: [bool; 2],
    /// Total bytes seen per direction.
    total: [usize; 2],
    /// Every chunk so far, in arrival order, with its bytes.
    log: Vec<(ChunkInfo, LoggedChunk)>,
    /// Per decoder (index into [`DECODERS`]): ruled out per direction.
    ruled_out: [[bool; 2]; MAX_DECODERS],
}

enum LoggedChunk {
    Data(Vec<u8>),
    Gap(u64),
}

/// A decided flow: its protocol session and the per-direction state.
struct Decoding {
    protocol: Protocol,
    session: Box<dyn Session>,
    client_dir: Dir,
    dirs: [DirState; 2],
}

/// Where a flow is. The big states live on the heap, allocated when the
/// first bytes come: a flow table entry must stay small (a SYN flood is a
/// table full of flows that never carry a byte).
enum Phase {
    /// Looking for a protocol; `None` until the first chunk.
    Probing(Option<Box<Probing>>),
    Decoding(Box<Decoding>),
    /// Not IM, encrypted, or finished: bytes are ignored.
    Idle,
}

/// Most decoders the detection table may hold.
const MAX_DECODERS: usize = 8;

/// Counters of a flow that never counted anything.
static NO_STATS: ProtoStats = ProtoStats {
    flows: BTreeMap::new(),
    undetected: 0,
    encrypted: 0,
    units: 0,
    decode_errors: 0,
    caps_hit: 0,
    gaps: 0,
    echoes_dropped: 0,
    chat_offers: 0,
    carved_files: Vec::new(),
};

/// Detection and decoding of one TCP flow.
#[allow(clippy::vec_box)] // boxed on purpose: see `events`
pub struct FlowDecoder {
    config: Arc<ProtoConfig>,
    start: FlowStart,
    /// Bit `i` set: `DECODERS[i]` is enabled.
    enabled: u8,
    phase: Phase,
    seq: u64,
    /// Boxed: an event is a few hundred bytes and passes through the shard's
    /// and the merger's buffers and the merger's sort before a sink sees it;
    /// moving a pointer each time instead of the event keeps decoding-heavy
    /// runs from being bound by memory copies.
    events: Vec<Box<Event>>,
    facts: Vec<IdentityFact>,
    /// Allocated on the first count.
    stats: Option<Box<ProtoStats>>,
}

impl FlowDecoder {
    pub fn new(config: Arc<ProtoConfig>, start: FlowStart) -> Self {
        let enabled = DECODERS
            .iter()
            .enumerate()
            .take(MAX_DECODERS)
            .filter(|(_, d)| config.protocols.contains(&d.protocol))
            .fold(0u8, |m, (i, _)| m | (1 << i));
        let mut dec = FlowDecoder {
            config,
            start,
            phase: Phase::Probing(None),
            enabled,
            seq: 0,
            events: Vec::new(),
            facts: Vec::new(),
            stats: None,
        };
        if dec.config.ports_only {
            dec.decide_by_ports();
        } else if dec.enabled == 0 {
            dec.give_up();
        }
        dec
    }

    /// False once the flow was found not to be IM: the reassembler may then
    /// stop buffering its bytes.
    pub fn wants_data(&self) -> bool {
        !matches!(self.phase, Phase::Idle)
    }

    /// Move the events and identity facts produced so far into `events`/`facts`.
    pub fn drain_boxed(&mut self, events: &mut Vec<Box<Event>>, facts: &mut Vec<IdentityFact>) {
        // Always append, never swap: a swap would park the caller's large
        // (emptied) buffer in this decoder, one per flow, and memory would
        // grow with the number of flows.
        events.append(&mut self.events);
        facts.append(&mut self.facts);
    }

    /// [`FlowDecoder::drain_boxed`] for callers that want the events themselves.
    pub fn drain(&mut self, events: &mut Vec<Event>, facts: &mut Vec<IdentityFact>) {
        events.extend(self.events.drain(..).map(|ev| *ev));
        facts.append(&mut self.facts);
    }

    /// Stream bytes this decoder holds: the probe window and replay log
    /// while detecting, the pending unit of each direction while decoding.
    /// Never more than [`PROBE_LIMIT`] per direction plus the largest chunk
    /// while probing, nor more than the protocol's unit cap per direction
    /// after a chunk was decoded.
    pub fn buffered_bytes(&self) -> usize {
        match &self.phase {
            Phase::Probing(Some(p)) => {
                let logged: usize = p
                    .log
                    .iter()
                    .map(|(_, c)| match c {
                        LoggedChunk::Data(d) => d.len(),
                        LoggedChunk::Gap(_) => 0,
                    })
                    .sum();
                logged + p.window.iter().map(Vec::len).sum::<usize>()
            }
            Phase::Decoding(d) => d.dirs.iter().map(|s| s.pending.len()).sum(),
            _ => 0,
        }
    }

    /// This flow's counters.
    pub fn stats(&self) -> &ProtoStats {
        self.stats.as_deref().unwrap_or(&NO_STATS)
    }

    fn stats_mut(&mut self) -> &mut ProtoStats {
        self.stats.get_or_insert_with(Box::default)
    }

    /// The protocol this flow was found to speak, once decided.
    pub fn protocol(&self) -> Option<Protocol> {
        match &self.phase {
            Phase::Decoding(d) => Some(d.protocol),
            _ => None,
        }
    }

    /// The enabled decoders with their index in [`DECODERS`].
    fn enabled(&self) -> impl Iterator<Item = (usize, &'static Decoder)> {
        let mask = self.enabled;
        DECODERS
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i < MAX_DECODERS && mask & (1 << i) != 0)
    }

    fn give_up(&mut self) {
        let tls = match &self.phase {
            Phase::Probing(Some(p)) => p.window.iter().any(|w| is_tls_record(w)),
            _ => false,
        };
        let key = self.start.key;
        let tls_port = self
            .enabled()
            .any(|(_, d)| d.tls_ports.contains(&key.lo.port) || d.tls_ports.contains(&key.hi.port));
        if tls && tls_port {
            self.stats_mut().encrypted += 1;
        } else {
            self.stats_mut().undetected += 1;
        }
        self.phase = Phase::Idle;
    }

    /// `--ports-only`: IMSpector's classic detection, the server being the
    /// end on the protocol's port.
    fn decide_by_ports(&mut self) {
        let key = self.start.key;
        let found = self.enabled().find_map(|(_, dec)| {
            [(key.hi, Dir::LoToHi), (key.lo, Dir::HiToLo)]
                .into_iter()
                .find(|(server, _)| dec.classic_ports.contains(&server.port))
                .map(|(_, client_dir)| (dec, client_dir))
        });
        if let Some((dec, client_dir)) = found {
            let client_dir = self.start.client_dir.unwrap_or(client_dir);
            self.start_session(dec, client_dir);
            return;
        }
        self.give_up();
    }

    fn start_session(&mut self, dec: &'static Decoder, client_dir: Dir) {
        let mut session = (dec.session)();
        session.configure(&self.config, self.start.flow);
        *self
            .stats_mut()
            .flows
            .entry(dec.protocol.name())
            .or_insert(0) += 1;
        self.phase = Phase::Decoding(Box::new(Decoding {
            protocol: dec.protocol,
            session,
            client_dir,
            dirs: [DirState::default(), DirState::default()],
        }));
    }

    /// Probe the new chunk; decide, give up, or keep it for later.
    fn probe_chunk(&mut self, chunk: Chunk<'_>, info: &ChunkInfo) {
        let mask = self.enabled;
        let enabled = move || {
            DECODERS
                .iter()
                .enumerate()
                .filter(move |(i, _)| *i < MAX_DECODERS && mask & (1 << i) != 0)
        };
        let Phase::Probing(slot) = &mut self.phase else {
            return;
        };
        let p = slot.get_or_insert_with(Box::default);
        let di = info.dir.index();
        let data = match chunk {
            Chunk::Gap(len) => {
                p.window[di].clear();
                p.window_mid[di] = true;
                p.log.push((*info, LoggedChunk::Gap(len)));
                if p.log.len() >= PROBE_CHUNKS {
                    self.give_up();
                }
                return;
            }
            Chunk::Data(d) => d,
        };
        if p.total[di] == 0 {
            p.window_mid[di] = info.flags.midstream || self.start.client_dir.is_none();
        }
        p.total[di] = p.total[di].saturating_add(data.len());
        let room = PROBE_LIMIT.saturating_sub(p.window[di].len());
        p.window[di].extend_from_slice(&data[..data.len().min(room)]);
        let start = if p.window_mid[di] {
            ProbeStart::Midstream
        } else {
            ProbeStart::Stream
        };
        let mut found = None;
        for (i, dec) in enabled() {
            if p.ruled_out[i][di] {
                continue;
            }
            match (dec.probe)(&p.window[di], start) {
                Verdict::Yes(role) => {
                    found = Some((dec, role));
                    break;
                }
                // From the stream's start, a "no" from either end is final:
                // the probe knows both ends' first bytes.
                Verdict::No if start == ProbeStart::Stream => p.ruled_out[i] = [true; 2],
                Verdict::No => p.ruled_out[i][di] = true,
                Verdict::NeedMore => {}
            }
        }
        if let Some((dec, role)) = found {
            let mut p = match std::mem::replace(&mut self.phase, Phase::Idle) {
                Phase::Probing(Some(p)) => p,
                _ => return,
            };
            let client_dir = self.choose_client(dec, info.dir, role);
            self.start_session(dec, client_dir);
            for (linfo, lchunk) in std::mem::take(&mut p.log) {
                match &lchunk {
                    LoggedChunk::Data(d) => self.decode_chunk(Chunk::Data(d), &linfo),
                    LoggedChunk::Gap(n) => self.decode_chunk(Chunk::Gap(*n), &linfo),
                }
            }
            self.decode_chunk(chunk, info);
            return;
        }
        let all_out = enabled().all(|(i, _)| p.ruled_out[i] == [true; 2]);
        if all_out || p.total[di] > PROBE_LIMIT || p.log.len() >= PROBE_CHUNKS {
            self.give_up();
            return;
        }
        p.log.push((*info, LoggedChunk::Data(data.to_vec())));
    }

    /// The direction of client → server bytes: the SYN sender, else the
    /// probe's role, else the ports.
    fn choose_client(&self, dec: &Decoder, dir: Dir, role: Role) -> Dir {
        if let Some(d) = self.start.client_dir {
            return d;
        }
        match role {
            Role::Client => return dir,
            Role::Server => return dir.reverse(),
            Role::Unknown => {}
        }
        let key = self.start.key;
        let lo_usual = dec.usual_ports.contains(&key.lo.port);
        let hi_usual = dec.usual_ports.contains(&key.hi.port);
        match (lo_usual, hi_usual) {
            (true, false) => Dir::HiToLo,
            (false, true) => Dir::LoToHi,
            // Ephemeral ports are the high ones: the lower port is the server.
            _ if key.lo.port <= key.hi.port => Dir::HiToLo,
            _ => Dir::LoToHi,
        }
    }

    fn decode_chunk(&mut self, chunk: Chunk<'_>, info: &ChunkInfo) {
        let Phase::Decoding(dec) = &mut self.phase else {
            return;
        };
        let stats = self.stats.get_or_insert_with(Box::default);
        let Decoding {
            protocol,
            session,
            client_dir,
            dirs,
        } = &mut **dec;
        let side = if info.dir == *client_dir {
            Side::Client
        } else {
            Side::Server
        };
        let client = self.start.key.src(*client_dir).socket_addr();
        let server = self.start.key.dst(*client_dir).socket_addr();
        let d = &mut dirs[info.dir.index()];
        d.overlap |= info.flags.overlap_conflict;
        d.midstream |= info.flags.midstream;
        let data = match chunk {
            Chunk::Gap(len) => {
                d.gap_before = true;
                d.lost = d.lost.saturating_add(len);
                d.pending.clear();
                d.resync = Some(ResyncCause::Gap);
                stats.gaps += 1;
                return;
            }
            Chunk::Data(data) => data,
        };
        if data.is_empty() {
            return;
        }
        let flow_mid = self.start.client_dir.is_none();
        if !d.seen_data {
            d.seen_data = true;
            if (info.flags.midstream || flow_mid) && d.resync.is_none() {
                d.resync = Some(ResyncCause::Midstream);
            }
        }
        let mut ctx = UnitCtx {
            session: session.as_mut(),
            side,
            info,
            emit: EmitBase {
                protocol: *protocol,
                client,
                server,
                flow: self.start.flow,
                source: self.start.source,
                keep_raw: self.config.raw,
                flow_midstream: flow_mid,
            },
            seq: &mut self.seq,
            events: &mut self.events,
            facts: &mut self.facts,
            stats,
        };
        // Complete the pending unit by appending the chunk in growing
        // steps, so that only the bytes up to its end are copied; the rest
        // of the chunk is then decoded in place.
        let mut taken = 0;
        while !d.pending.is_empty() && taken < data.len() {
            let step = (data.len() - taken).min(d.pending.len().max(PENDING_STEP));
            let old_len = d.pending.len();
            let mut buf = std::mem::take(&mut d.pending);
            buf.extend_from_slice(&data[taken..taken + step]);
            taken += step;
            let used = ctx.run(d, &buf, old_len).min(buf.len());
            if used >= old_len && d.resync.is_none() {
                // The carried unit is done: what is left came from this
                // chunk and is decoded in place below.
                taken -= buf.len() - used;
                buf.clear();
                d.pending = buf;
                break;
            }
            if used >= old_len {
                d.pending_first = info.first_frame;
            }
            buf.drain(..used);
            d.pending = buf;
        }
        if taken < data.len() && !ctx.session.encrypted() {
            let rest = &data[taken..];
            let used = ctx.run(d, rest, 0);
            if used < rest.len() {
                d.pending.extend_from_slice(&rest[used..]);
                d.pending_first = info.first_frame;
            }
        }
        if ctx.session.encrypted() {
            ctx.stats.encrypted += 1;
            self.phase = Phase::Idle;
        }
    }
}

/// The parts of every event that come from the flow, not the protocol.
#[derive(Clone, Copy)]
struct EmitBase {
    protocol: Protocol,
    client: std::net::SocketAddr,
    server: std::net::SocketAddr,
    flow: FlowId,
    source: SourceId,
    keep_raw: bool,
    flow_midstream: bool,
}

/// One pass of the unit loop over a buffer of one direction.
#[allow(clippy::vec_box)] // boxed on purpose: see `FlowDecoder::events`
struct UnitCtx<'a> {
    session: &'a mut dyn Session,
    side: Side,
    info: &'a ChunkInfo,
    emit: EmitBase,
    seq: &'a mut u64,
    events: &'a mut Vec<Box<Event>>,
    facts: &'a mut Vec<IdentityFact>,
    stats: &'a mut ProtoStats,
}

impl UnitCtx<'_> {
    /// Split `buf` into units and decode them; returns the bytes consumed.
    /// Bytes before `carried` came from earlier chunks (first frame
    /// `d.pending_first`).
    fn run(&mut self, d: &mut DirState, buf: &[u8], carried: usize) -> usize {
        let mut pos = 0usize;
        let cap = self.session.unit_cap();
        while pos < buf.len() {
            if self.session.encrypted() {
                return buf.len();
            }
            let rest = &buf[pos..];
            if let Some(cause) = d.resync {
                match self.session.resync(self.side, rest, cause) {
                    Resync::At(n) => {
                        pos += n.min(rest.len());
                        d.resync = None;
                        continue;
                    }
                    Resync::Skip(n) => {
                        pos += n.min(rest.len());
                        return pos;
                    }
                }
            }
            match self.session.next_unit(self.side, rest) {
                Step::Unit(n) if n > 0 => {
                    let n = n.min(rest.len());
                    let first = if pos < carried {
                        d.pending_first
                    } else {
                        self.info.first_frame
                    };
                    self.stats.units += 1;
                    let mut out = Emitter {
                        base: self.emit,
                        info: self.info,
                        first_frame: first,
                        dir: d,
                        seq: self.seq,
                        events: self.events,
                        facts: self.facts,
                        stats: self.stats,
                    };
                    self.session.on_unit(self.side, &rest[..n], &mut out);
                    pos += n;
                }
                Step::Skip(n) if n > 0 => pos += n.min(rest.len()),
                Step::Invalid(n) if n > 0 => {
                    self.stats.decode_errors += 1;
                    pos += n.min(rest.len());
                }
                Step::OverCap(n) if n > 0 => {
                    self.stats.caps_hit += 1;
                    d.gap_before = true;
                    d.resync = Some(ResyncCause::Cap);
                    pos += n.min(rest.len());
                }
                _ => {
                    if rest.len() > cap {
                        self.stats.caps_hit += 1;
                        d.gap_before = true;
                        d.resync = Some(ResyncCause::Cap);
                        return buf.len();
                    }
                    return pos;
                }
            }
        }
        pos
    }
}

/// Turns [`EventDraft`]s into complete [`Event`]s: the one place where time,
/// addresses, frames, flags, lost bytes and sequence are filled in.
#[allow(clippy::vec_box)] // boxed on purpose: see `FlowDecoder::events`
pub struct Emitter<'a> {
    base: EmitBase,
    info: &'a ChunkInfo,
    first_frame: FrameRef,
    dir: &'a mut DirState,
    seq: &'a mut u64,
    events: &'a mut Vec<Box<Event>>,
    facts: &'a mut Vec<IdentityFact>,
    stats: &'a mut ProtoStats,
}

impl Emitter<'_> {
    /// True when every event must carry its original bytes (`--raw`).
    pub fn keep_raw(&self) -> bool {
        self.base.keep_raw
    }

    /// Capture time of the chunk that completed the current unit.
    pub fn time(&self) -> Timestamp {
        self.info.ts
    }

    /// Count a unit (or part of one) that could not be decoded exactly.
    pub fn count_decode_error(&mut self) {
        self.stats.decode_errors += 1;
    }

    /// Record a file written to the carve directory (it goes to the manifest).
    pub fn carved(&mut self, file: CarvedFile) {
        self.stats.carved_files.push(file);
    }

    /// The flow these events belong to.
    pub fn flow(&self) -> FlowId {
        self.base.flow
    }

    /// Count an echoed copy of the local user's own message that was dropped.
    pub fn count_echo(&mut self) {
        self.stats.echoes_dropped += 1;
    }

    /// Count an offer of a direct chat connection (not itself an event).
    pub fn count_chat_offer(&mut self) {
        self.stats.chat_offers += 1;
    }

    /// Record an identity fact (token → user) learned now.
    pub fn fact(&mut self, token: String, user: String) {
        self.facts.push(IdentityFact {
            protocol: self.base.protocol,
            token,
            user,
            time: self.info.ts,
            frame: self.info.frame,
        });
    }

    /// Complete `draft` into an event of this flow.
    #[inline(always)]
    pub fn emit(&mut self, draft: EventDraft) {
        let flags = EventFlags {
            gap_before: self.dir.gap_before,
            overlap_conflict: self.dir.overlap,
            midstream: self.dir.midstream || self.base.flow_midstream,
            decode_error: draft.decode_error,
        };
        let first = if self.first_frame.index == 0 {
            self.info.first_frame.index
        } else {
            self.first_frame.index
        };
        let ev = Event {
            time: self.info.ts,
            protocol: self.base.protocol,
            kind: draft.kind,
            outgoing: draft.outgoing,
            local_id: draft.local_id,
            remote_id: draft.remote_id,
            group: draft.group,
            sender: draft.sender,
            client: self.base.client,
            server: self.base.server,
            text: draft.text,
            text_encoding: draft.text_encoding,
            raw: draft.raw,
            file_name: draft.file_name,
            file_size: draft.file_size,
            filtered: false,
            categories: Vec::new(),
            source: self.base.source,
            frames: (first.min(self.info.frame.index), self.info.frame.index),
            flow: self.base.flow,
            flags,
            lost_bytes: self.dir.lost,
            seq: *self.seq,
            policy: PolicyMarks::default(),
        };
        *self.seq += 1;
        self.dir.gap_before = false;
        self.dir.lost = 0;
        self.dir.overlap = false;
        self.events.push(Box::new(ev));
    }
}

impl StreamConsumer for FlowDecoder {
    fn wants_data(&self) -> bool {
        FlowDecoder::wants_data(self)
    }

    fn on_chunk(&mut self, chunk: Chunk<'_>, info: &ChunkInfo) {
        match self.phase {
            Phase::Probing(_) => self.probe_chunk(chunk, info),
            Phase::Decoding(_) => self.decode_chunk(chunk, info),
            Phase::Idle => {}
        }
    }

    fn on_close(&mut self, _reason: CloseReason, ts: Timestamp, frame: FrameRef) {
        if let Phase::Decoding(dec) = &mut self.phase {
            let Decoding {
                protocol,
                session,
                client_dir,
                dirs,
            } = &mut **dec;
            let info = ChunkInfo {
                dir: *client_dir,
                ts,
                frame,
                first_frame: frame,
                offset: 0,
                flags: Default::default(),
            };
            let mut out = Emitter {
                base: EmitBase {
                    protocol: *protocol,
                    client: self.start.key.src(*client_dir).socket_addr(),
                    server: self.start.key.dst(*client_dir).socket_addr(),
                    flow: self.start.flow,
                    source: self.start.source,
                    keep_raw: self.config.raw,
                    flow_midstream: self.start.client_dir.is_none(),
                },
                info: &info,
                first_frame: frame,
                dir: &mut dirs[client_dir.index()],
                seq: &mut self.seq,
                events: &mut self.events,
                facts: &mut self.facts,
                stats: self.stats.get_or_insert_with(Box::default),
            };
            session.on_close(&mut out);
        }
        let saw_data =
            matches!(&self.phase, Phase::Probing(Some(p)) if p.total.iter().any(|t| *t > 0));
        if saw_data {
            self.give_up();
        }
        self.phase = Phase::Idle;
    }
}

/// Does `b` start with a TLS record header (handshake, alert or application
/// data, versions SSL 3.0 to TLS 1.3)?
fn is_tls_record(b: &[u8]) -> bool {
    matches!(b, [0x15..=0x17, 0x03, 0x00..=0x04, ..])
}

/// Decode `bytes` as UTF-8, else as windows-1252 (a superset of Latin-1 for
/// printable text). Returns the text, its charset, and whether it was exact.
pub fn decode_text(bytes: &[u8]) -> (String, &'static str, bool) {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), "utf-8", true),
        Err(_) => {
            let (text, _, had_errors) = encoding_rs::WINDOWS_1252.decode(bytes);
            (text.into_owned(), "windows-1252", !had_errors)
        }
    }
}

/// `bytes` as UTF-8, with U+FFFD for what is not (as
/// `String::from_utf8_lossy`), borrowed when valid; valid text is checked
/// with SIMD first.
pub fn utf8_lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// An id (nick, screen name, JID, channel) from its wire bytes, decoded as
/// [`decode_text`] does; ids of up to 24 bytes need no allocation.
pub fn decode_id(bytes: &[u8]) -> Id {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(s) => Id::from(s),
        Err(_) => Id::from(encoding_rs::WINDOWS_1252.decode(bytes).0),
    }
}

#[cfg(test)]
pub(crate) mod tests;
