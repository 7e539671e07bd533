//! Drives one `FlowDecoder` straight from chunks (no capture, net, tcp or
//! engine stage): scripted conversations, cuts at any byte, gaps, and views
//! of the events that tests compare. Test-only code: it panics on a bad
//! address. Running whole captures through the stages is `stages.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use imscan::capture::FrameRef;
use imscan::event::{Event, FlowId, IdentityFact, Kind};
use imscan::net::{Dir, Endpoint, FlowKey, Transport};
use imscan::proto::{FlowDecoder, FlowStart, ProtoConfig};
use imscan::tcp::{harness, Chunk, ChunkFlags, ChunkInfo, CloseReason, StreamConsumer};
use imscan::time::Timestamp;

/// Capture time of the first chunk of a [`Flow`] unless a test sets it.
pub const FLOW_EPOCH: i64 = 1_700_000_000;

pub fn endpoint(s: &str) -> Endpoint {
    let a: SocketAddr = s.parse().expect("test address");
    Endpoint {
        ip: a.ip(),
        port: a.port(),
    }
}

/// A decoder for the flow `client` → `server`; `syn` says whether the
/// handshake was seen (then the client direction is known, and chunks are
/// not flagged mid-stream). Each chunk is carried by the next frame; its
/// time is [`FLOW_EPOCH`] plus the frame number, or what [`Flow::at`] set.
pub struct Flow {
    pub dec: FlowDecoder,
    pub key: FlowKey,
    pub c2s: Dir,
    frame: u64,
    offset: [u64; 2],
    clock: Option<i64>,
    pub flags: ChunkFlags,
    events: Vec<Event>,
    facts: Vec<IdentityFact>,
}

impl Flow {
    pub fn new(config: ProtoConfig, client: &str, server: &str, syn: bool) -> Flow {
        let (key, c2s) = FlowKey::new(Transport::Tcp, endpoint(client), endpoint(server));
        let start = FlowStart {
            key,
            flow: FlowId(FrameRef {
                source: 0,
                index: 1,
            }),
            source: 0,
            client_dir: syn.then_some(c2s),
        };
        Flow {
            dec: FlowDecoder::new(Arc::new(config), start),
            key,
            c2s,
            frame: 0,
            offset: [0; 2],
            clock: None,
            flags: ChunkFlags {
                overlap_conflict: false,
                midstream: !syn,
            },
            events: Vec::new(),
            facts: Vec::new(),
        }
    }

    pub fn dir(&self, client_sent: bool) -> Dir {
        if client_sent {
            self.c2s
        } else {
            self.c2s.reverse()
        }
    }

    /// The chunks that follow carry capture time `secs` (epoch seconds).
    pub fn at(&mut self, secs: i64) -> &mut Flow {
        self.clock = Some(secs);
        self
    }

    fn next_frame(&mut self) -> (FrameRef, Timestamp) {
        self.frame += 1;
        let secs = self.clock.unwrap_or(FLOW_EPOCH + self.frame as i64);
        (
            FrameRef {
                source: 0,
                index: self.frame,
            },
            Timestamp::from_secs_nanos(secs, 0),
        )
    }

    fn info(&mut self, client_sent: bool, len: u64) -> ChunkInfo {
        let dir = self.dir(client_sent);
        let (frame, ts) = self.next_frame();
        let offset = self.offset[dir.index()];
        self.offset[dir.index()] += len;
        ChunkInfo {
            dir,
            ts,
            frame,
            first_frame: frame,
            offset,
            flags: self.flags,
        }
    }

    /// Deliver `bytes` as one chunk carried by the next frame.
    pub fn data(&mut self, client_sent: bool, bytes: &[u8]) -> &mut Flow {
        let info = self.info(client_sent, bytes.len() as u64);
        self.dec.on_chunk(Chunk::Data(bytes), &info);
        self
    }

    /// Deliver a gap of `len` bytes.
    pub fn gap(&mut self, client_sent: bool, len: u64) -> &mut Flow {
        let info = self.info(client_sent, len);
        self.dec.on_chunk(Chunk::Gap(len), &info);
        self
    }

    /// The capture ends (`CloseReason::EndOfInput`) at the next frame.
    pub fn close(&mut self) {
        let (frame, ts) = self.next_frame();
        self.dec.on_close(CloseReason::EndOfInput, ts, frame);
    }

    fn drain(&mut self) {
        self.dec.drain(&mut self.events, &mut self.facts);
    }

    /// The events decoded so far and not yet taken.
    pub fn events(&mut self) -> Vec<Event> {
        self.drain();
        std::mem::take(&mut self.events)
    }

    /// Close the flow; every event and identity fact it gave.
    pub fn finish(mut self) -> (Vec<Event>, Vec<IdentityFact>) {
        self.close();
        self.drain();
        (self.events, self.facts)
    }
}

/// Feed a whole conversation, each element (client_sent, bytes) cut into
/// pieces at the given `cuts` (byte offsets into that element), and return
/// the events.
pub fn run_split(
    config: &ProtoConfig,
    client: &str,
    server: &str,
    syn: bool,
    script: &[(bool, &[u8])],
    cut: impl Fn(usize, usize) -> Vec<usize>,
) -> Vec<Event> {
    let mut f = Flow::new(config.clone(), client, server, syn);
    for (i, (c, bytes)) in script.iter().enumerate() {
        let mut last = 0;
        for at in cut(i, bytes.len()) {
            if at > last && at < bytes.len() {
                f.data(*c, &bytes[last..at]);
                last = at;
            }
        }
        f.data(*c, &bytes[last..]);
    }
    f.close();
    f.events()
}

/// Borrow an owned script as `run_split` takes it.
pub fn as_refs(v: &[(bool, Vec<u8>)]) -> Vec<(bool, &[u8])> {
    v.iter().map(|(c, b)| (*c, &b[..])).collect()
}

/// One step of a timed script: (client sent, capture second, bytes).
pub type Step = (bool, i64, Vec<u8>);

/// Feed a timed script, one chunk per step; every event and identity fact.
pub fn run_steps(
    config: ProtoConfig,
    client: &str,
    server: &str,
    syn: bool,
    script: &[Step],
) -> (Vec<Event>, Vec<IdentityFact>) {
    let mut f = Flow::new(config, client, server, syn);
    for (c, t, b) in script {
        f.at(*t).data(*c, b);
    }
    f.finish()
}

/// `script` with step `step` delivered as two chunks, cut at byte `cut`.
pub fn split_step(script: &[Step], step: usize, cut: usize) -> Vec<Step> {
    let mut split = Vec::with_capacity(script.len() + 1);
    for (i, (c, t, b)) in script.iter().enumerate() {
        if i == step {
            split.push((*c, *t, b[..cut].to_vec()));
            split.push((*c, *t, b[cut..].to_vec()));
        } else {
            split.push((*c, *t, b.clone()));
        }
    }
    split
}

/// What every split must keep: the events without their frame numbers,
/// times and sequence (those follow the chunking by design).
pub fn essence(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{:?} out={} local={:?} remote={} group={} sender={:?} text={:?} enc={:?} raw={:?} file={:?}/{:?} client={} server={} flags={:?} lost={}",
                e.kind,
                e.outgoing,
                e.local_id,
                e.remote_id,
                e.group,
                e.sender,
                e.text,
                e.text_encoding,
                e.raw,
                e.file_name,
                e.file_size,
                e.client,
                e.server,
                e.flags,
                e.lost_bytes
            )
        })
        .collect()
}

/// A compact view of an event for assertions: who, which way, what.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    pub kind: Kind,
    pub outgoing: bool,
    pub local: Option<String>,
    pub remote: String,
    pub group: bool,
    pub sender: Option<String>,
    pub text: Option<String>,
    pub file: Option<(Option<String>, Option<u64>)>,
}

impl Seen {
    /// A one-to-one event of local user `local` (no file).
    pub fn new(
        local: &str,
        kind: Kind,
        outgoing: bool,
        remote: &str,
        sender: &str,
        text: Option<&str>,
    ) -> Seen {
        Seen {
            kind,
            outgoing,
            local: Some(local.into()),
            remote: remote.into(),
            group: false,
            sender: Some(sender.into()),
            text: text.map(str::to_string),
            file: None,
        }
    }
}

impl From<&Event> for Seen {
    fn from(e: &Event) -> Seen {
        Seen {
            kind: e.kind,
            outgoing: e.outgoing,
            local: e.local_id_str().map(str::to_string),
            remote: e.remote_id.to_string(),
            group: e.group,
            sender: e.sender.as_ref().map(|s| s.to_string()),
            text: e.text.clone(),
            file: (e.kind == Kind::File).then(|| (e.file_name.clone(), e.file_size)),
        }
    }
}

pub fn seen(events: &[Event]) -> Vec<Seen> {
    events.iter().map(Seen::from).collect()
}

/// A decoder for the tcp harness's flow (`imscan::tcp::harness`, SYN seen).
pub fn harness_decoder(config: &ProtoConfig) -> FlowDecoder {
    let nf = harness::harness_flow();
    super::stages::decoder_for(&Arc::new(config.clone()), &nf)
}

/// The [`essence`] of what a harness-driven decoder gave.
pub fn harness_events(mut d: FlowDecoder) -> Vec<String> {
    let (mut ev, mut facts) = (Vec::new(), Vec::new());
    d.drain(&mut ev, &mut facts);
    essence(&ev)
}

/// `script` as a tcp-harness conversation, one delivery per element.
pub fn harness_conversation(script: &[(bool, &[u8])]) -> harness::Conversation {
    script
        .iter()
        .fold(harness::Conversation::new(), |c, (client_sent, b)| {
            if *client_sent {
                c.client(b)
            } else {
                c.server(b)
            }
        })
}

/// The tcp harness's split-invariance check (whole, byte by byte, random
/// cuts from `seeds` seeds) on decoders with `config`; the [`essence`] of
/// the events every delivery gave.
pub fn harness_split_invariance(
    conv: &harness::Conversation,
    config: &ProtoConfig,
    seeds: u64,
) -> Vec<String> {
    harness::check_split_invariance(conv, || harness_decoder(config), harness_events, seeds)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Every step of `script` delivered as two chunks, cut at each offset
/// `cuts(step length)` gives, must `run` to what the whole script gives;
/// returns that.
pub fn check_every_split<T: PartialEq + std::fmt::Debug>(
    script: &[Step],
    cuts: impl Fn(usize) -> Vec<usize>,
    run: impl Fn(&[Step]) -> T,
) -> T {
    let whole = run(script);
    for (step, (_, _, bytes)) in script.iter().enumerate() {
        for cut in cuts(bytes.len()) {
            assert_eq!(
                run(&split_step(script, step, cut)),
                whole,
                "step {step} cut {cut}"
            );
        }
    }
    whole
}

/// `script` (SYN seen) gives the same [`essence`] delivered whole, with
/// any one element cut in two at any byte, and byte by byte; returns it.
pub fn check_cut_anywhere(
    config: &ProtoConfig,
    client: &str,
    server: &str,
    script: &[(bool, &[u8])],
) -> Vec<String> {
    let run = |cut: &dyn Fn(usize, usize) -> Vec<usize>| {
        essence(&run_split(config, client, server, true, script, cut))
    };
    let whole = run(&|_, _| vec![]);
    for (i, (_, bytes)) in script.iter().enumerate() {
        for at in 1..bytes.len() {
            let cut_i = |j: usize, _: usize| if j == i { vec![at] } else { vec![] };
            assert_eq!(run(&cut_i), whole, "element {i} cut at {at}");
        }
    }
    assert_eq!(run(&|_, n| (1..n).collect()), whole, "byte by byte");
    whole
}

/// Hostile input: after `hello` from the client, deliver `chunks` from
/// alternating sides (client first), every fifth one replaced by a gap of
/// its length; close. Returns the events (the caller only needs it not to
/// panic or hang).
pub fn run_random_chunks(
    config: ProtoConfig,
    client: &str,
    server: &str,
    syn: bool,
    hello: &[u8],
    chunks: &[Vec<u8>],
) -> Vec<Event> {
    let mut f = Flow::new(config, client, server, syn);
    f.data(true, hello);
    for (i, c) in chunks.iter().enumerate() {
        if i % 5 == 4 {
            f.gap(i % 2 == 0, c.len() as u64);
        } else {
            f.data(i % 2 == 0, c);
        }
    }
    f.close();
    f.events()
}

/// Hostile input: XOR each `(position, value)` of `flips` into the bytes
/// of `script` (positions wrap around its total length), deliver every
/// element cut at the offsets `cuts`, with `gap` = (element, length): a
/// gap of that many bytes before that element; close. Returns the events.
pub fn run_mutated(
    config: ProtoConfig,
    client: &str,
    server: &str,
    mut script: Vec<(bool, Vec<u8>)>,
    flips: &[(usize, u8)],
    cuts: &[usize],
    gap: Option<(usize, u64)>,
) -> Vec<Event> {
    let total: usize = script.iter().map(|s| s.1.len()).sum();
    for &(pos, val) in flips {
        let mut p = pos % total;
        for s in script.iter_mut() {
            if p < s.1.len() {
                s.1[p] ^= val;
                break;
            }
            p -= s.1.len();
        }
    }
    let mut f = Flow::new(config, client, server, true);
    for (i, (c, b)) in script.iter().enumerate() {
        if let Some((_, len)) = gap.filter(|g| g.0 == i) {
            f.gap(*c, len);
        }
        let mut last = 0;
        for &at in cuts {
            if at > last && at < b.len() {
                f.data(*c, &b[last..at]);
                last = at;
            }
        }
        f.data(*c, &b[last..]);
    }
    f.close();
    f.events()
}

/// A decoder's buffered bytes stay within twice its unit cap `cap` after
/// every chunk of `chunks` (sent after `hello` from the client). With
/// `endless`, no line or tag ever ends (no `\n`, no `>`): units only grow.
pub fn check_buffering(
    config: ProtoConfig,
    client: &str,
    server: &str,
    hello: &[u8],
    cap: usize,
    chunks: Vec<(bool, Vec<u8>)>,
    endless: bool,
) -> Result<(), proptest::test_runner::TestCaseError> {
    let mut f = Flow::new(config, client, server, true);
    f.data(true, hello);
    for (client_sent, mut c) in chunks {
        if endless {
            c.retain(|b| *b != b'\n' && *b != b'>');
        }
        f.data(client_sent, &c);
        proptest::prop_assert!(
            f.dec.buffered_bytes() <= 2 * cap,
            "{}",
            f.dec.buffered_bytes()
        );
    }
    Ok(())
}

/// Hostile input: apply `edits` (position, byte, operation) to the bytes
/// `bytes` picks out of each step. A position picks the step (modulo their
/// number), then the offset in it; operation 0 overwrites the byte there, 1
/// inserts `byte` before it, 2 truncates there, and any other splices in
/// `splice` (bytes that stress the protocol's length fields).
pub fn apply_edits<T>(
    steps: &mut [T],
    bytes: impl Fn(&mut T) -> &mut Vec<u8>,
    edits: &[(usize, u8, u8)],
    splice: &[u8],
) {
    let n = steps.len();
    for &(pos, byte, op) in edits {
        let b = bytes(&mut steps[pos % n]);
        if b.is_empty() {
            continue;
        }
        let at = (pos / n) % b.len();
        match op {
            0 => b[at] = byte,
            1 => b.insert(at, byte),
            2 => b.truncate(at),
            _ => {
                b.splice(at..at, splice.iter().copied());
            }
        }
    }
}

/// `script` (SYN seen) with bytes `lost` of element `victim` never
/// delivered: the rest of that element follows a gap of their length.
/// Returns the events.
pub fn run_with_hole(
    config: ProtoConfig,
    client: &str,
    server: &str,
    script: &[(bool, Vec<u8>)],
    victim: usize,
    lost: std::ops::Range<usize>,
) -> Vec<Event> {
    let mut f = Flow::new(config, client, server, true);
    for (i, (c, b)) in script.iter().enumerate() {
        if i == victim {
            f.data(*c, &b[..lost.start]);
            f.gap(*c, lost.len() as u64);
            f.data(*c, &b[lost.end..]);
        } else {
            f.data(*c, b);
        }
    }
    f.close();
    f.events()
}

/// Deliver `script` (SYN seen) and close: the events, and the protocol the
/// flow was detected as (None: not IM).
pub fn detect(
    config: ProtoConfig,
    client: &str,
    server: &str,
    script: &[(bool, &[u8])],
) -> (Vec<Event>, Option<imscan::event::Protocol>) {
    let mut f = Flow::new(config, client, server, true);
    for (c, b) in script {
        f.data(*c, b);
    }
    f.close();
    (f.events(), f.dec.protocol())
}
