//! Live capture from a network interface through libpcap (cargo feature
//! `live`). It owns the capture thread, the bounded queue to processing, the
//! optional evidence writer (`-w`) and the live counters.
//!
//! It must never block the capture loop: batches go to processing with
//! `try_send`, and when the queue is full the whole batch is dropped and
//! counted, so `received = processed + dropped` holds at every moment the
//! capture is stopped. It knows nothing about link layers or protocols.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::Serialize;

use super::{Batch, BatchData, BatchSource, FrameMeta, LinkType, SourceId};
use crate::time::Timestamp;

/// How long the kernel may hold packets in a partly filled ring block
/// before handing them over (ms).
const READ_TIMEOUT_MS: i32 = 50;
/// How long the capture loop sleeps when the ring is empty: the latency it
/// adds is far below the kernel's block timeout, the cost when quiet is a
/// few hundred wake-ups a second.
const IDLE_SLEEP: Duration = Duration::from_millis(2);
/// A partly filled batch is handed over once its first frame is this old,
/// so events reach the sinks well within a second.
const BATCH_AGE: Duration = Duration::from_millis(100);
/// On a quiet link, an empty batch carrying the host clock goes to
/// processing this often, so idle flows close on time.
const TICK_EVERY: Duration = Duration::from_millis(250);
/// After a stop, packets the kernel already captured are read for at most
/// this long.
const DRAIN_FOR: Duration = Duration::from_secs(1);
/// ... and stop early once the ring was empty this long after the stop
/// (longer than the kernel's block timeout).
const DRAIN_QUIET: Duration = Duration::from_millis(3 * READ_TIMEOUT_MS as u64);
/// How often the kernel's drop counters are read.
const KERNEL_STATS_EVERY: Duration = Duration::from_secs(1);
/// Batches waiting for the evidence writer before new ones are dropped.
const WRITER_QUEUE: usize = 64;

/// What to capture and how.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub interface: String,
    /// BPF expression compiled by libpcap.
    pub filter: Option<String>,
    pub snaplen: u32,
    /// Kernel capture ring, bytes.
    pub buffer_bytes: u32,
    pub promisc: bool,
    /// Most frames and captured bytes per batch.
    pub batch_frames: usize,
    pub batch_bytes: usize,
    /// Batches waiting for processing before new ones are dropped.
    pub queue_batches: usize,
    /// `-w`: write every captured packet here too.
    pub write: Option<PathBuf>,
    /// With `write`: start a new file when the current one would pass this
    /// many bytes (0: never).
    pub rotate_bytes: u64,
}

/// Why a capture could not start: one line for the user.
#[derive(Debug)]
pub struct LiveError(pub String);

impl std::fmt::Display for LiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LiveError {}

/// Counters shared by the capture thread, the processing side and the
/// evidence writer. Atomics: the capture thread never takes a lock.
#[derive(Debug, Default)]
pub struct LiveCounters {
    received: AtomicU64,
    received_bytes: AtomicU64,
    processed: AtomicU64,
    processed_bytes: AtomicU64,
    dropped: AtomicU64,
    dropped_batches: AtomicU64,
    kernel_dropped: AtomicU64,
    interface_dropped: AtomicU64,
    written: AtomicU64,
    write_dropped: AtomicU64,
    write_errors: AtomicU64,
    files_written: AtomicU64,
}

/// A snapshot of [`LiveCounters`], for the status line, `--stats` and the
/// manifest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LiveCounts {
    /// Packets libpcap handed to imscan.
    pub received: u64,
    pub received_bytes: u64,
    /// Packets handed to processing.
    pub processed: u64,
    pub processed_bytes: u64,
    /// Packets imscan dropped because processing fell behind (whole batches).
    pub dropped: u64,
    pub dropped_batches: u64,
    /// Packets the kernel dropped (its ring was full), from libpcap's stats.
    pub kernel_dropped: u64,
    /// Packets the interface or its driver dropped, from libpcap's stats.
    pub interface_dropped: u64,
    /// Packets written to the `-w` file(s).
    pub written: u64,
    /// Packets not written to the `-w` file because the writer fell behind
    /// or its disk failed.
    pub write_dropped: u64,
    /// Write errors of the `-w` file (each is also said on stderr once).
    pub write_errors: u64,
    /// `-w` files started (1 + rotations).
    pub files_written: u64,
}

impl LiveCounters {
    pub fn snapshot(&self) -> LiveCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LiveCounts {
            received: get(&self.received),
            received_bytes: get(&self.received_bytes),
            processed: get(&self.processed),
            processed_bytes: get(&self.processed_bytes),
            dropped: get(&self.dropped),
            dropped_batches: get(&self.dropped_batches),
            kernel_dropped: get(&self.kernel_dropped),
            interface_dropped: get(&self.interface_dropped),
            written: get(&self.written),
            write_dropped: get(&self.write_dropped),
            write_errors: get(&self.write_errors),
            files_written: get(&self.files_written),
        }
    }
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

/// A running capture: its thread, and the processing end of its queue.
pub struct LiveCapture {
    thread: Option<JoinHandle<Option<String>>>,
    writer: Option<JoinHandle<()>>,
    source: Option<LiveSource>,
    counters: Arc<LiveCounters>,
    link_type: LinkType,
}

/// The processing end of the queue: what the engine reads batches from.
/// It ends when the capture thread stops (its sender is dropped).
pub struct LiveSource {
    rx: Receiver<Batch>,
    counters: Arc<LiveCounters>,
}

impl BatchSource for LiveSource {
    fn next_batch(&mut self, _max_frames: usize, _max_bytes: usize) -> Option<Batch> {
        let batch = self.rx.recv().ok()?;
        add(&self.counters.processed, batch.frames.len() as u64);
        add(&self.counters.processed_bytes, batch.captured_bytes());
        Some(batch)
    }

    fn consumed(&self) -> u64 {
        self.counters.processed_bytes.load(Ordering::Relaxed)
    }
}

impl LiveCapture {
    /// Opens the interface, applies the filter and starts capturing on a
    /// thread of its own until `stop` is set.
    pub fn start(opts: &LiveOptions, stop: Arc<AtomicBool>) -> Result<LiveCapture, LiveError> {
        let iface = &opts.interface;
        let cap = pcap::Capture::from_device(iface.as_str())
            .map_err(|e| open_error(iface, &e))?
            .promisc(opts.promisc)
            .snaplen(i32::try_from(opts.snaplen).unwrap_or(i32::MAX))
            .buffer_size(i32::try_from(opts.buffer_bytes).unwrap_or(i32::MAX))
            .timeout(READ_TIMEOUT_MS)
            .open()
            .map_err(|e| open_error(iface, &e))?
            // Non-blocking: with TPACKET_V3 a blocking read may never time
            // out on a quiet link, and the loop must wake to send ticks and
            // see the stop flag.
            .setnonblock()
            .map_err(|e| open_error(iface, &e))?;
        let mut cap = cap;
        if let Some(expr) = &opts.filter {
            cap.filter(expr, true)
                .map_err(|e| LiveError(format!("--filter `{expr}`: {e}")))?;
        }
        let link_type = LinkType(u32::try_from(cap.get_datalink().0).unwrap_or(0));
        let counters = Arc::new(LiveCounters::default());
        let (writer_tx, writer) = match &opts.write {
            Some(path) => {
                let file = EvidenceWriter::create(path, link_type, opts.snaplen, opts.rotate_bytes)
                    .map_err(|e| LiveError(format!("{}: {e}", path.display())))?;
                add(&counters.files_written, 1);
                let (tx, rx) = crossbeam_channel::bounded(WRITER_QUEUE);
                let c = counters.clone();
                let handle = std::thread::Builder::new()
                    .name("imscan-pcap-writer".into())
                    .spawn(move || file.run(rx, &c))
                    .map_err(|e| LiveError(format!("starting the -w writer: {e}")))?;
                (Some(tx), Some(handle))
            }
            None => (None, None),
        };
        let (tx, rx) = crossbeam_channel::bounded(opts.queue_batches.max(1));
        let loop_state = CaptureLoop {
            tx,
            writer: writer_tx,
            counters: counters.clone(),
            stop,
            link_type,
            batch_frames: opts.batch_frames.max(1),
            batch_bytes: opts.batch_bytes.max(1),
        };
        let thread = std::thread::Builder::new()
            .name("imscan-capture".into())
            .spawn(move || loop_state.run(cap))
            .map_err(|e| LiveError(format!("starting the capture thread: {e}")))?;
        Ok(LiveCapture {
            thread: Some(thread),
            writer,
            source: Some(LiveSource {
                rx,
                counters: counters.clone(),
            }),
            counters,
            link_type,
        })
    }

    /// The link type of the interface (what `-w` files are written as).
    pub fn link_type(&self) -> LinkType {
        self.link_type
    }

    /// The processing end of the queue (once).
    pub fn take_source(&mut self) -> Option<LiveSource> {
        self.source.take()
    }

    pub fn counters(&self) -> Arc<LiveCounters> {
        self.counters.clone()
    }

    /// Waits for the capture and writer threads (after `stop` was set and the
    /// source drained). Returns the error that ended the capture, if any.
    pub fn join(&mut self) -> Option<String> {
        let err = self
            .thread
            .take()
            .and_then(|t| t.join().unwrap_or(Some("capture thread panicked".into())));
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        err
    }
}

fn open_error(iface: &str, e: &pcap::Error) -> LiveError {
    let msg = e.to_string();
    let lower = msg.to_ascii_lowercase();
    let hint = if lower.contains("permitted") || lower.contains("permission") {
        " (capturing needs root or CAP_NET_RAW: `setcap cap_net_raw,cap_net_admin=eip $(which imscan)`)"
    } else if lower.contains("no such device") {
        " (see `ip link` for the interfaces of this host)"
    } else {
        ""
    };
    LiveError(format!("capture on {iface}: {msg}{hint}"))
}

/// The capture thread's state.
struct CaptureLoop {
    tx: Sender<Batch>,
    writer: Option<Sender<Batch>>,
    counters: Arc<LiveCounters>,
    stop: Arc<AtomicBool>,
    link_type: LinkType,
    batch_frames: usize,
    batch_bytes: usize,
}

/// Frames captured and not yet handed over.
struct Filling {
    data: Vec<u8>,
    frames: Vec<FrameMeta>,
    since: Instant,
}

impl CaptureLoop {
    /// Captures until `stop` is set or libpcap fails; returns the failure.
    fn run(self, mut cap: pcap::Capture<pcap::Active>) -> Option<String> {
        let mut filling = self.empty();
        let mut index: u64 = 0;
        let mut last_handover = Instant::now();
        let mut last_stats = Instant::now();
        let mut failure = None;
        // After a stop, what the kernel already holds is still read, until
        // the ring is empty or this deadline passes.
        let mut drain_until: Option<Instant> = None;
        loop {
            if drain_until.is_none() && self.stop.load(Ordering::Relaxed) {
                drain_until = Some(Instant::now() + DRAIN_FOR);
            }
            if drain_until.is_some_and(|t| Instant::now() >= t) {
                break;
            }
            match cap.next_packet() {
                Ok(p) => {
                    index += 1;
                    let caplen = p.data.len();
                    add(&self.counters.received, 1);
                    add(&self.counters.received_bytes, caplen as u64);
                    if filling.frames.is_empty() {
                        filling.since = Instant::now();
                    }
                    let ts = Timestamp::from_secs_nanos(
                        p.header.ts.tv_sec,
                        u32::try_from(p.header.ts.tv_usec).unwrap_or(0).min(999_999) * 1000,
                    );
                    filling.frames.push(FrameMeta {
                        index,
                        ts,
                        link_type: self.link_type,
                        orig_len: p.header.len,
                        offset: filling.data.len(),
                        len: u32::try_from(caplen).unwrap_or(u32::MAX),
                    });
                    filling.data.extend_from_slice(p.data);
                }
                // Nothing waiting (non-blocking mode reports it so).
                // While draining, the ring counts as empty once the kernel
                // had time to retire its partly filled block.
                Err(pcap::Error::TimeoutExpired)
                    if drain_until
                        .is_some_and(|t| t - Instant::now() < DRAIN_FOR - DRAIN_QUIET) =>
                {
                    break
                }
                Err(pcap::Error::TimeoutExpired) => std::thread::sleep(IDLE_SLEEP),
                Err(e) => {
                    failure = Some(format!("capture stopped: {e}"));
                    break;
                }
            }
            let now = Instant::now();
            let full =
                filling.frames.len() >= self.batch_frames || filling.data.len() >= self.batch_bytes;
            if full || (!filling.frames.is_empty() && now - filling.since >= BATCH_AGE) {
                let batch = std::mem::replace(&mut filling, self.empty());
                if !self.hand_over(batch) {
                    break;
                }
                last_handover = now;
            } else if filling.frames.is_empty() && now - last_handover >= TICK_EVERY {
                // A tick: no frames, only the host clock. Losing one to a
                // full queue loses no packet, so it is not counted.
                let _ = self.tx.try_send(Batch {
                    source: LIVE_SOURCE,
                    data: BatchData::Owned(Arc::new(Vec::new())),
                    frames: Vec::new(),
                    clock: Some(host_clock()),
                });
                last_handover = now;
            }
            if now - last_stats >= KERNEL_STATS_EVERY {
                self.kernel_stats(&mut cap);
                last_stats = now;
            }
        }
        self.kernel_stats(&mut cap);
        // Capture is over: the last frames may wait for room in the queue.
        if !filling.frames.is_empty() {
            let batch = self.to_batch(filling);
            self.to_writer(&batch);
            let n = batch.frames.len() as u64;
            if self.tx.send(batch).is_err() {
                add(&self.counters.dropped, n);
                add(&self.counters.dropped_batches, 1);
            }
        }
        failure
    }

    fn empty(&self) -> Filling {
        Filling {
            data: Vec::with_capacity(self.batch_bytes.min(1 << 20)),
            frames: Vec::with_capacity(self.batch_frames.min(4096)),
            since: Instant::now(),
        }
    }

    fn to_batch(&self, f: Filling) -> Batch {
        Batch {
            source: LIVE_SOURCE,
            data: BatchData::Owned(Arc::new(f.data)),
            frames: f.frames,
            clock: None,
        }
    }

    fn to_writer(&self, batch: &Batch) {
        if let Some(w) = &self.writer {
            if w.try_send(batch.clone()).is_err() {
                add(&self.counters.write_dropped, batch.frames.len() as u64);
            }
        }
    }

    /// Hands a batch to processing without waiting: when the queue is full
    /// the whole batch is dropped and counted. False when processing is gone.
    fn hand_over(&self, filling: Filling) -> bool {
        let batch = self.to_batch(filling);
        self.to_writer(&batch);
        let n = batch.frames.len() as u64;
        match self.tx.try_send(batch) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                add(&self.counters.dropped, n);
                add(&self.counters.dropped_batches, 1);
                true
            }
            Err(TrySendError::Disconnected(_)) => {
                add(&self.counters.dropped, n);
                add(&self.counters.dropped_batches, 1);
                false
            }
        }
    }

    fn kernel_stats(&self, cap: &mut pcap::Capture<pcap::Active>) {
        if let Ok(s) = cap.stats() {
            self.counters
                .kernel_dropped
                .store(u64::from(s.dropped), Ordering::Relaxed);
            self.counters
                .interface_dropped
                .store(u64::from(s.if_dropped), Ordering::Relaxed);
        }
    }
}

/// The source id of live frames (a live run has one input).
const LIVE_SOURCE: SourceId = 0;

/// The host clock as a capture time: the clock libpcap stamps packets with.
fn host_clock() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_secs_nanos(
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        d.subsec_nanos(),
    )
}

/// Writes captured packets to a classic pcap file (microsecond resolution,
/// the interface's link type) on a thread of its own, rotating by size: a
/// slow or failing disk costs counted `-w` packets, never capture.
struct EvidenceWriter {
    base: PathBuf,
    link_type: LinkType,
    snaplen: u32,
    rotate_bytes: u64,
    out: Option<BufWriter<File>>,
    size: u64,
    /// Files started so far; the n-th after the first is `FILE.n`.
    files: u64,
    /// An error was said on stderr (only the first is, until writing works again).
    said: bool,
}

/// The classic pcap file header (little-endian, microseconds).
fn pcap_header(link_type: LinkType, snaplen: u32) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&snaplen.to_le_bytes());
    h[20..24].copy_from_slice(&link_type.0.to_le_bytes());
    h
}

impl EvidenceWriter {
    fn create(
        path: &Path,
        link_type: LinkType,
        snaplen: u32,
        rotate_bytes: u64,
    ) -> std::io::Result<EvidenceWriter> {
        let mut w = EvidenceWriter {
            base: path.to_path_buf(),
            link_type,
            snaplen,
            rotate_bytes,
            out: None,
            size: 0,
            files: 0,
            said: false,
        };
        w.open_next()?;
        Ok(w)
    }

    fn path_of(&self, n: u64) -> PathBuf {
        if n == 0 {
            self.base.clone()
        } else {
            let mut s = self.base.clone().into_os_string();
            s.push(format!(".{n}"));
            PathBuf::from(s)
        }
    }

    fn open_next(&mut self) -> std::io::Result<()> {
        if let Some(mut old) = self.out.take() {
            old.flush()?;
        }
        let path = self.path_of(self.files);
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        out.write_all(&pcap_header(self.link_type, self.snaplen))?;
        self.files += 1;
        self.size = 24;
        self.out = Some(out);
        Ok(())
    }

    fn run(mut self, rx: Receiver<Batch>, counters: &LiveCounters) {
        loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(batch) => {
                    let n = batch.frames.len() as u64;
                    match self.write_batch(&batch, counters) {
                        Ok(()) => {
                            add(&counters.written, n);
                            self.said = false;
                        }
                        Err(e) => {
                            add(&counters.write_dropped, n);
                            add(&counters.write_errors, 1);
                            if !self.said {
                                eprintln!("imscan: -w {}: {e}", self.base.display());
                                self.said = true;
                            }
                            // Start afresh with the next batch.
                            self.out = None;
                        }
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if let Some(out) = &mut self.out {
                        let _ = out.flush();
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        }
        if let Some(out) = &mut self.out {
            if let Err(e) = out.flush() {
                eprintln!("imscan: -w {}: {e}", self.base.display());
                add(&counters.write_errors, 1);
            }
        }
    }

    fn write_batch(&mut self, batch: &Batch, counters: &LiveCounters) -> std::io::Result<()> {
        for i in 0..batch.frames.len() {
            let frame = batch.frame(i);
            let record = 16 + frame.data.len() as u64;
            let rotate =
                self.rotate_bytes > 0 && self.size + record > self.rotate_bytes && self.size > 24;
            if self.out.is_none() || rotate {
                self.open_next()?;
                add(&counters.files_written, 1);
            }
            let out = self.out.as_mut().expect("opened above");
            let mut h = [0u8; 16];
            h[0..4].copy_from_slice(&(frame.ts.secs() as u32).to_le_bytes());
            h[4..8].copy_from_slice(&frame.ts.subsec_micros().to_le_bytes());
            h[8..12].copy_from_slice(&(frame.data.len() as u32).to_le_bytes());
            h[12..16].copy_from_slice(&frame.orig_len.to_le_bytes());
            out.write_all(&h)?;
            out.write_all(frame.data)?;
            self.size += record;
        }
        Ok(())
    }
}

/// `-f EXPR` on capture files: the expression compiled by libpcap once per
/// link type met (a BPF program depends on the link header it starts from).
/// A link type the expression cannot be compiled for keeps none of its
/// frames (a filter means "only these"), and says so once.
pub struct BpfFrameFilter {
    expr: String,
    programs: std::sync::Mutex<std::collections::HashMap<u32, Option<pcap::BpfProgram>>>,
}

impl std::fmt::Debug for BpfFrameFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpfFrameFilter")
            .field("expr", &self.expr)
            .finish_non_exhaustive()
    }
}

impl BpfFrameFilter {
    /// Checks the expression by compiling it for Ethernet.
    pub fn new(expr: &str) -> Result<BpfFrameFilter, LiveError> {
        let f = BpfFrameFilter {
            expr: expr.to_string(),
            programs: Default::default(),
        };
        let program = f
            .compile(LinkType::ETHERNET)
            .map_err(|e| LiveError(format!("--filter `{expr}`: {e}")))?;
        f.programs
            .lock()
            .expect("filter lock")
            .insert(LinkType::ETHERNET.0, Some(program));
        Ok(f)
    }

    fn compile(&self, link: LinkType) -> Result<pcap::BpfProgram, pcap::Error> {
        let dl = pcap::Linktype(i32::try_from(link.0).unwrap_or(-1));
        pcap::Capture::dead(dl)?.compile(&self.expr, true)
    }
}

impl super::FrameFilter for BpfFrameFilter {
    fn keep(&self, frame: &super::Frame<'_>) -> bool {
        let mut programs = self.programs.lock().expect("filter lock");
        let program = programs.entry(frame.link_type.0).or_insert_with(|| {
            match self.compile(frame.link_type) {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!(
                        "imscan: warning: --filter `{}` does not apply to link type {}: {e}; its frames are skipped",
                        self.expr, frame.link_type.0
                    );
                    None
                }
            }
        });
        program.as_ref().is_some_and(|p| p.filter(frame.data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(sizes: &[usize]) -> Batch {
        let mut data = Vec::new();
        let mut frames = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            frames.push(FrameMeta {
                index: i as u64 + 1,
                ts: Timestamp::from_secs_nanos(1_700_000_000 + i as i64, 5_000),
                link_type: LinkType::ETHERNET,
                orig_len: n as u32,
                offset: data.len(),
                len: n as u32,
            });
            data.extend(std::iter::repeat(i as u8).take(n));
        }
        Batch {
            source: 0,
            data: BatchData::Owned(Arc::new(data)),
            frames,
            clock: None,
        }
    }

    #[test]
    fn evidence_file_is_a_pcap_our_reader_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ev.pcap");
        let counters = LiveCounters::default();
        let mut w = EvidenceWriter::create(&path, LinkType::ETHERNET, 65535, 0).unwrap();
        w.write_batch(&batch(&[60, 100, 70]), &counters).unwrap();
        w.out.as_mut().unwrap().flush().unwrap();
        let mut r = crate::capture::CaptureReader::open(
            path.to_str().unwrap(),
            0,
            crate::capture::ReadOptions::default(),
        )
        .unwrap();
        let b = r.next_batch(100, 1 << 20).unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(b.frame(1).data, &[1u8; 100][..]);
        assert_eq!(
            b.frame(2).ts,
            Timestamp::from_secs_nanos(1_700_000_002, 5_000)
        );
        assert!(r.take_warnings().is_empty());
    }

    #[test]
    fn evidence_rotates_before_passing_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ev.pcap");
        let counters = LiveCounters::default();
        // Header 24 + two records of 16 + 100 fit in 256; the third does not.
        let mut w = EvidenceWriter::create(&path, LinkType::ETHERNET, 65535, 256).unwrap();
        w.write_batch(&batch(&[100, 100, 100, 100, 100]), &counters)
            .unwrap();
        w.out.as_mut().unwrap().flush().unwrap();
        drop(w);
        let sizes: Vec<u64> = ["ev.pcap", "ev.pcap.1", "ev.pcap.2"]
            .iter()
            .map(|n| std::fs::metadata(dir.path().join(n)).unwrap().len())
            .collect();
        assert_eq!(sizes, [24 + 2 * 116, 24 + 2 * 116, 24 + 116]);
        assert_eq!(counters.snapshot().files_written, 2);
        assert!(!dir.path().join("ev.pcap.3").exists());
    }

    #[test]
    fn bpf_filter_keeps_only_matching_frames() {
        use crate::capture::FrameFilter;
        // Ethernet + IPv4 + TCP 40000 -> 6667, no payload.
        let mut pkt = vec![0u8; 12];
        pkt.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![
            0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        ip.extend_from_slice(&40000u16.to_be_bytes());
        ip.extend_from_slice(&6667u16.to_be_bytes());
        ip.extend_from_slice(&[0; 8]);
        ip.extend_from_slice(&[0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        pkt.extend_from_slice(&ip);
        let frame = |link| super::super::Frame {
            source: 0,
            index: 1,
            ts: Timestamp(0),
            link_type: link,
            data: &pkt,
            orig_len: pkt.len() as u32,
        };
        let irc = BpfFrameFilter::new("tcp port 6667").unwrap();
        let xmpp = BpfFrameFilter::new("tcp port 5222").unwrap();
        assert!(irc.keep(&frame(LinkType::ETHERNET)));
        assert!(!xmpp.keep(&frame(LinkType::ETHERNET)));
        let bad = BpfFrameFilter::new("tcp port").unwrap_err().to_string();
        assert!(bad.starts_with("--filter `tcp port`: "), "{bad}");
    }

    #[test]
    fn missing_interface_is_one_clear_line() {
        let opts = LiveOptions {
            interface: "imscan-no-such-if0".into(),
            filter: None,
            snaplen: 65535,
            buffer_bytes: 1 << 20,
            promisc: false,
            batch_frames: 16,
            batch_bytes: 1 << 16,
            queue_batches: 2,
            write: None,
            rotate_bytes: 0,
        };
        let err = LiveCapture::start(&opts, Arc::new(AtomicBool::new(false)))
            .err()
            .expect("no such interface");
        let msg = err.to_string();
        assert!(msg.starts_with("capture on imscan-no-such-if0: "), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }
}
