//! Stage 3, engine: reads batches of frames, decodes link and IP layers,
//! routes each TCP segment to one of a FIXED number of shards by a hash of its
//! canonical flow key, runs the shards in parallel (rayon; each shard owns its
//! flow table, no locks on the hot path) and merges their events into one
//! deterministic order before anything reaches a sink.
//!
//! Determinism: the shard count, the batch boundaries (a fixed number of
//! frames) and the merge key never depend on the thread count, so the output
//! is byte-identical at `--threads 1` and `--threads N`.
//!
//! Pipelining: with more than one thread, a reader thread reads and decodes
//! the next batch while the shards work on this one; the queue between them
//! holds one batch, so memory stays bounded whatever the input size.

mod shard;

use std::sync::Arc;

use serde::Serialize;

use crate::capture::{
    Batch, BatchSource, CaptureError, CaptureReader, CaptureStats, CaptureWarning, FrameFilter,
    FrameRef, InputSummary, ReadOptions, SourceId,
};
use crate::event::{Event, Id, IdentityFact, LocalId};
use crate::net::{NetConfig, NetDecoder, NetStats, Packet, Selection};
use crate::proto::{ProtoConfig, ProtoStats};
use crate::tcp::export::StreamExport;
use crate::tcp::{TcpConfig, TcpStats};
use crate::time::Timestamp;

use shard::Shard;
pub use shard::{PayloadRef, SegWork};

/// Number of shards. Fixed: it must not depend on the thread count.
pub const SHARDS: usize = 64;

/// Open files the `--streams` exporter may keep across all flows.
const STREAM_FILES_OPEN: usize = 256;

/// Why a run could not go on.
#[derive(Debug)]
pub enum EngineError {
    /// An input could not be opened or is not a capture.
    Input(CaptureError),
    /// An output file or directory could not be written.
    Output {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    /// More inputs than a `SourceId` can number.
    TooManyInputs(usize),
}

impl EngineError {
    fn output(path: &std::path::Path, error: std::io::Error) -> EngineError {
        EngineError::Output {
            path: path.to_path_buf(),
            error,
        }
    }
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Input(e) => write!(f, "{e}"),
            EngineError::Output { path, error } => write!(f, "{}: {error}", path.display()),
            EngineError::TooManyInputs(n) => {
                write!(
                    f,
                    "{n} inputs given; at most {} can be read in one run",
                    u32::from(SourceId::MAX) + 1
                )
            }
        }
    }
}

impl std::error::Error for EngineError {}

impl From<CaptureError> for EngineError {
    fn from(e: CaptureError) -> Self {
        EngineError::Input(e)
    }
}

/// Everything the engine needs to know for one run.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Worker threads; 1 runs everything on the calling thread.
    pub threads: usize,
    /// Frames per batch (fixed per run: part of the determinism contract).
    pub batch_frames: usize,
    /// Soft cap on captured bytes per batch.
    pub batch_bytes: usize,
    pub net: NetConfig,
    pub tcp: TcpConfig,
    pub proto: ProtoConfig,
    pub selection: Selection,
    /// Compute each input's SHA-256 while reading (for the manifest).
    pub hash_inputs: bool,
    /// Write each TCP flow's bytes here (`--streams DIR`).
    pub streams_dir: Option<std::path::PathBuf>,
    /// Reassemble every stream and discard the bytes, decoding nothing: a
    /// measure of the stages below proto (benchmarks).
    pub reassemble_only: bool,
    /// Frames it rejects are not analysed (`-f EXPR` on files).
    pub frame_filter: Option<Arc<dyn FrameFilter>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            batch_frames: 8192,
            batch_bytes: 16 << 20,
            net: NetConfig::default(),
            tcp: TcpConfig::run_wide(),
            proto: ProtoConfig::default(),
            selection: Selection::default(),
            hash_inputs: false,
            streams_dir: None,
            reassemble_only: false,
            frame_filter: None,
        }
    }
}

/// Counters of a whole run, one section per stage.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunStats {
    pub capture: CaptureStats,
    pub net: NetStats,
    pub tcp: TcpStats,
    pub proto: ProtoStats,
    /// Segments outside the `--host/--net/--port` selection, and frames
    /// rejected by `-f EXPR` on files.
    pub deselected: u64,
    /// Events emitted, after the merge.
    pub events: u64,
    /// Events whose local user was known only by a token no fact resolved.
    pub unresolved_identities: u64,
}

/// What a run leaves behind besides its events.
#[derive(Debug, Default)]
pub struct RunSummary {
    pub inputs: Vec<InputSummary>,
    pub stats: RunStats,
}

/// Receives the engine's output in merge order, on the calling thread.
pub trait EngineOutput {
    fn event(&mut self, ev: Event);
    fn warning(&mut self, w: &CaptureWarning);
    /// Called after each batch with the bytes consumed so far of the current input.
    fn progress(&mut self, _consumed: u64) {}
    /// Called when an input is finished, with its size in bytes.
    fn input_done(&mut self, _size: u64) {}
    /// Called after each batch with the number of flows the shards hold.
    fn open_flows(&mut self, _flows: usize) {}
}

/// A decoded batch on its way to the shards.
struct Work {
    batch: Batch,
    per_shard: Vec<Vec<SegWork>>,
    /// Time and frame of the batch's last frame: advances every shard's clock.
    end: Option<(Timestamp, FrameRef)>,
}

/// The part of the engine that runs on the reading side of the pipeline.
struct Reader {
    net: NetDecoder,
    selection: Selection,
    filter: Option<Arc<dyn FrameFilter>>,
    deselected: u64,
    /// The last frame decoded, across batches: an empty batch that only
    /// advances the clock is attributed to it.
    last: FrameRef,
}

impl Reader {
    fn decode(&mut self, batch: Batch) -> Work {
        let mut per_shard: Vec<Vec<SegWork>> = (0..SHARDS).map(|_| Vec::new()).collect();
        let base = batch.data.bytes();
        let mut end = None;
        for frame in batch.iter() {
            end = Some((frame.ts, frame.frame_ref()));
            if self.filter.as_ref().is_some_and(|f| !f.keep(&frame)) {
                self.deselected += 1;
                continue;
            }
            let Some(packet) = self.net.decode(&frame) else {
                continue;
            };
            let Packet::Tcp(seg) = packet else {
                continue;
            };
            if !self.selection.matches(&seg.key) {
                self.deselected += 1;
                continue;
            }
            let shard = (seg.key.stable_hash() % SHARDS as u64) as usize;
            per_shard[shard].push(SegWork::new(&seg, base));
        }
        if let Some((_, f)) = end {
            self.last = f;
        }
        if let Some(clock) = batch.clock {
            let later = end.map_or(clock, |(ts, _)| ts.max(clock));
            end = Some((later, self.last));
        }
        Work {
            batch,
            per_shard,
            end,
        }
    }
}

/// Run the whole pipeline over `inputs` (paths as given; `-` is stdin).
///
/// Returns an error only when an input cannot be opened or is not a capture
/// at all; damage inside an input is counted and reported through `out`.
pub fn run(
    inputs: &[String],
    config: &EngineConfig,
    out: &mut dyn EngineOutput,
) -> Result<RunSummary, EngineError> {
    // Open every input first: a typo in the third file must not cost a long
    // run over the first two.
    let mut readers = Vec::with_capacity(inputs.len());
    for (i, path) in inputs.iter().enumerate() {
        let Ok(source) = SourceId::try_from(i) else {
            return Err(EngineError::TooManyInputs(inputs.len()));
        };
        readers.push(CaptureReader::open(
            path,
            source,
            ReadOptions {
                hash: config.hash_inputs,
            },
        )?);
    }
    let mut pipeline = Pipeline::new(config)?;
    let mut summary = RunSummary::default();
    for capture in readers {
        let mut capture = pipeline.drive(capture, out);
        for w in capture.take_warnings() {
            out.warning(&w);
        }
        summary.stats.capture.merge(capture.stats());
        out.input_done(capture.stats().bytes_read);
        summary.inputs.push(capture.finish());
    }
    pipeline.finish(summary, out)
}

/// Run the whole pipeline over one source of batches that is not a list of
/// files (a live capture): until it ends, then flush every flow. Returns the
/// source too, so its owner can read its counters.
pub fn run_source<S: BatchSource>(
    source: S,
    config: &EngineConfig,
    out: &mut dyn EngineOutput,
) -> Result<(RunSummary, S), EngineError> {
    let mut pipeline = Pipeline::new(config)?;
    let source = pipeline.drive(source, out);
    Ok((pipeline.finish(RunSummary::default(), out)?, source))
}

/// The engine's state across inputs: shards, merge stage, thread pool.
struct Pipeline {
    pool: rayon::ThreadPool,
    shards: Vec<Shard>,
    reader: Option<Reader>,
    merger: Merger,
    last_frame: FrameRef,
    export: Option<Arc<StreamExport>>,
    threads: usize,
    batch_frames: usize,
    batch_bytes: usize,
}

impl Pipeline {
    fn new(config: &EngineConfig) -> Result<Pipeline, EngineError> {
        let proto_config = Arc::new(config.proto.clone());
        let export = match &config.streams_dir {
            Some(dir) => Some(
                StreamExport::create(dir, STREAM_FILES_OPEN)
                    .map_err(|e| EngineError::output(dir, e))?,
            ),
            None => None,
        };
        let tcp = config.tcp.per_shard(SHARDS);
        let shards: Vec<Shard> = (0..SHARDS)
            .map(|_| {
                Shard::new(
                    tcp.clone(),
                    proto_config.clone(),
                    export.clone(),
                    config.reassemble_only,
                )
            })
            .collect();
        let reader = Reader {
            net: NetDecoder::new(config.net),
            selection: config.selection.clone(),
            filter: config.frame_filter.clone(),
            deselected: 0,
            last: FrameRef::default(),
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads.max(1))
            .build()
            .expect("building the rayon thread pool");
        Ok(Pipeline {
            pool,
            shards,
            reader: Some(reader),
            merger: Merger::default(),
            last_frame: FrameRef::default(),
            export,
            threads: config.threads,
            batch_frames: config.batch_frames,
            batch_bytes: config.batch_bytes,
        })
    }

    /// Run every batch of `source` through the shards, handing events to
    /// `out` as each batch completes; returns the source at its end.
    fn drive<S: BatchSource>(&mut self, mut source: S, out: &mut dyn EngineOutput) -> S {
        let (batch_frames, batch_bytes) = (self.batch_frames, self.batch_bytes);
        let mut reader = self.reader.take().expect("reader present between inputs");
        if self.threads <= 1 {
            while let Some(batch) = source.next_batch(batch_frames, batch_bytes) {
                for w in source.take_warnings() {
                    out.warning(&w);
                }
                let work = reader.decode(batch);
                self.process(work, out);
                out.progress(source.consumed());
            }
        } else {
            // Read and decode the next batch while the shards work on this one.
            let (tx, rx) = crossbeam_channel::bounded::<(Work, Vec<CaptureWarning>, u64)>(1);
            let (source_back, reader_back) = std::thread::scope(|scope| {
                let handle = scope.spawn(move || {
                    while let Some(batch) = source.next_batch(batch_frames, batch_bytes) {
                        let warnings = source.take_warnings();
                        let consumed = source.consumed();
                        let work = reader.decode(batch);
                        if tx.send((work, warnings, consumed)).is_err() {
                            break;
                        }
                    }
                    (source, reader)
                });
                for (work, warnings, consumed) in rx.iter() {
                    for w in &warnings {
                        out.warning(w);
                    }
                    self.process(work, out);
                    out.progress(consumed);
                }
                handle.join().expect("reader thread panicked")
            });
            source = source_back;
            reader = reader_back;
        }
        self.reader = Some(reader);
        source
    }

    /// Run one batch through the shards and hand its events to `out` in order.
    fn process(&mut self, work: Work, out: &mut dyn EngineOutput) {
        process(
            &self.pool,
            &mut self.shards,
            work,
            &mut self.merger,
            out,
            &mut self.last_frame,
        );
        out.open_flows(self.shards.iter().map(Shard::flows).sum());
    }

    /// End of input: flush every flow, gaps included, and sum the counters.
    fn finish(
        mut self,
        mut summary: RunSummary,
        out: &mut dyn EngineOutput,
    ) -> Result<RunSummary, EngineError> {
        let last_frame = self.last_frame;
        self.pool.install(|| {
            use rayon::prelude::*;
            self.shards
                .par_iter_mut()
                .for_each(|s| s.finish(last_frame));
        });
        self.merger.collect(&mut self.shards);
        self.merger.emit(out);

        for shard in &self.shards {
            summary.stats.tcp.merge(shard.tcp_stats());
            summary.stats.proto.merge(shard.proto_stats());
        }
        if let Some(export) = &self.export {
            let mut records = Vec::new();
            for shard in &mut self.shards {
                records.append(&mut shard.take_stream_records());
            }
            export
                .write_index(records)
                .map_err(|e| EngineError::output(export.root(), e))?;
        }
        if let Some(reader) = &mut self.reader {
            // Reassemblies still open at the end are lost datagrams: count them.
            reader.net.finish();
            summary.stats.net = reader.net.stats().clone();
            summary.stats.deselected = reader.deselected;
        }
        summary.stats.events = self.merger.emitted;
        summary.stats.unresolved_identities = self.merger.unresolved;
        Ok(summary)
    }
}

/// Run one batch through the shards and hand its events to `out` in order.
fn process(
    pool: &rayon::ThreadPool,
    shards: &mut [Shard],
    work: Work,
    merger: &mut Merger,
    out: &mut dyn EngineOutput,
    last_frame: &mut FrameRef,
) {
    let Work {
        batch,
        per_shard,
        end,
    } = work;
    if let Some((_, f)) = end {
        *last_frame = f;
    }
    let data = batch.data.bytes();
    pool.install(|| {
        use rayon::prelude::*;
        shards
            .par_iter_mut()
            .zip(per_shard.into_par_iter())
            .for_each(|(shard, segs)| shard.process(data, &segs, end));
    });
    merger.collect(shards);
    merger.emit(out);
}

/// Puts the shards' events into one order and resolves identity tokens.
///
/// An event is emitted while the batch holding the frame that made it
/// complete is processed, so sorting each batch's events by their merge key
/// (input, last frame, flow, sequence) gives capture order. The exception is
/// data released from behind a hole: its events carry the earlier frames that
/// carried the bytes, and come out with the batch that released them. Batch
/// boundaries are a fixed number of frames, so the order never depends on the
/// thread count. (A total order by capture time would need every event of the
/// run held in memory: clocks in merged captures jump back and forth.)
#[derive(Default)]
#[allow(clippy::vec_box)] // boxed on purpose: see `proto::FlowDecoder`'s events
struct Merger {
    events: Vec<Box<Event>>,
    facts: Vec<IdentityFact>,
    identities: std::collections::HashMap<(crate::event::Protocol, Arc<str>), Id>,
    emitted: u64,
    unresolved: u64,
}

impl Merger {
    fn collect(&mut self, shards: &mut [Shard]) {
        for shard in shards {
            shard.drain(&mut self.events, &mut self.facts);
        }
    }

    fn emit(&mut self, out: &mut dyn EngineOutput) {
        // Facts first, in capture order, so a login seen in this batch
        // resolves the events of this batch too.
        self.facts.sort_by_key(|f| (f.frame, f.time));
        for fact in self.facts.drain(..) {
            self.identities
                .insert((fact.protocol, fact.token.into()), fact.user.into());
        }
        // Each key read once (the events are behind pointers).
        self.events.sort_by_cached_key(|e| e.merge_key());
        for ev in self.events.drain(..) {
            let mut ev = *ev;
            if let LocalId::Token(token) = &ev.local_id {
                match self.identities.get(&(ev.protocol, token.clone())) {
                    Some(user) => {
                        // The local user sent an outgoing event: name them
                        // as its sender too, now that they are known.
                        if ev.outgoing && ev.sender.is_none() {
                            ev.sender = Some(user.clone());
                        }
                        ev.local_id = LocalId::Known(user.clone());
                    }
                    None => {
                        self.unresolved += 1;
                        ev.local_id = LocalId::Unknown;
                    }
                }
            }
            self.emitted += 1;
            out.event(ev);
        }
    }
}
