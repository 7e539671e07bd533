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
    /// Packets written to the `-w` file(s) (counted when the buffer that
    /// held them reached the disk).
    pub written: u64,
    /// Packets not written to the `-w` file because the writer fell behind
    /// or its disk failed (a failed write is retried; what is buffered
    /// waits for it, and only what is still buffered at the end is lost).
    pub write_dropped: u64,
    /// Failed writes of the `-w` file (retries included; the first of a
    /// run of failures is said on stderr, and so is the recovery).
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
    /// thread of its own until `stop` is set. Setting `reopen` (SIGHUP)
    /// makes the `-w` writer start a new file once the current one was moved
    /// away; the capture thread never waits for that.
    pub fn start(
        opts: &LiveOptions,
        stop: Arc<AtomicBool>,
        reopen: Arc<AtomicBool>,
    ) -> Result<LiveCapture, LiveError> {
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
                let file = EvidenceWriter::create(
                    path,
                    link_type,
                    opts.snaplen,
                    opts.rotate_bytes,
                    counters.clone(),
                )
                .map_err(|e| LiveError(format!("{}: {e}", path.display())))?;
                let (tx, rx) = crossbeam_channel::bounded(WRITER_QUEUE);
                let handle = std::thread::Builder::new()
                    .name("imscan-pcap-writer".into())
                    .spawn(move || file.run(rx, &reopen))
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

/// Writes captured packets to classic pcap files (microsecond resolution,
/// the interface's link type) on a thread of its own: a slow or failing disk
/// costs counted `-w` packets, never capture.
///
/// It never overwrites a file: a name that is taken is skipped (`FILE`,
/// then `FILE.1`, `FILE.2`, ...). It starts the next name when
/// `--rotate-size` would be passed, and on SIGHUP (logrotate) a new `FILE`
/// once the current file was moved away, after writing out everything the
/// old one was given. A failed write keeps the records already buffered and
/// is retried with the next batch or flush; a record is buffered whole or
/// not at all, so a file never holds half a record.
struct EvidenceWriter {
    base: PathBuf,
    link_type: LinkType,
    snaplen: u32,
    rotate_bytes: u64,
    counters: Arc<LiveCounters>,
    out: Option<EvidenceFile>,
    /// The next name to try (0: `FILE`, n: `FILE.n`).
    next_name: u64,
    /// Frames in the buffer, not yet on the disk.
    buffered: u64,
    /// An error was said on stderr (only the first is, until writing works again).
    said: bool,
}

/// The file being written.
struct EvidenceFile {
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes given to the file so far (header included).
    size: u64,
    /// Device and inode, to see on SIGHUP whether the file was moved away.
    id: (u64, u64),
}

/// Writes buffered for the evidence file before they go to the disk; at
/// least one whole record always fits.
const EVIDENCE_BUFFER: usize = 1 << 20;
/// The evidence file is written out at least this often.
const EVIDENCE_FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often the writer looks at the SIGHUP flag when no batch comes.
const EVIDENCE_POLL: Duration = Duration::from_millis(100);
/// Taken names skipped before giving up on finding a free one.
const MAX_TAKEN_NAMES: u64 = 100_000;

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
        counters: Arc<LiveCounters>,
    ) -> std::io::Result<EvidenceWriter> {
        let mut w = EvidenceWriter {
            base: path.to_path_buf(),
            link_type,
            snaplen,
            rotate_bytes,
            counters,
            out: None,
            next_name: 0,
            buffered: 0,
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

    /// Starts a new file at the first free name from `next_name` on. The
    /// current file, if any, must have been written out already.
    fn open_next(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        self.out = None;
        let last = self.next_name.saturating_add(MAX_TAKEN_NAMES);
        let (path, file) = loop {
            let path = self.path_of(self.next_name);
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => break (path, file),
                Err(e)
                    if e.kind() == std::io::ErrorKind::AlreadyExists && self.next_name < last =>
                {
                    self.next_name += 1;
                }
                Err(e) => return Err(e),
            }
        };
        self.next_name += 1;
        let meta = file.metadata()?;
        let record_max = 16 + self.snaplen.min(super::MAX_FRAME_LEN) as usize;
        let mut out = BufWriter::with_capacity(EVIDENCE_BUFFER.max(record_max), file);
        // Into an empty buffer: cannot fail.
        out.write_all(&pcap_header(self.link_type, self.snaplen))?;
        add(&self.counters.files_written, 1);
        self.out = Some(EvidenceFile {
            path,
            out,
            size: 24,
            id: (meta.dev(), meta.ino()),
        });
        Ok(())
    }

    /// SIGHUP: write out the current file; if it is no longer at its path
    /// (logrotate moved it), start a new one at `FILE` (or the next free
    /// name). Kept as it is when it did not move. An error leaves the
    /// current file in use (nothing it holds is lost) and is retried.
    fn reopen(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        self.flush()?;
        if let Some(cur) = &self.out {
            let in_place = std::fs::metadata(&cur.path).is_ok_and(|m| (m.dev(), m.ino()) == cur.id);
            if in_place {
                return Ok(());
            }
        }
        self.next_name = 0;
        self.open_next()
    }

    /// Writes out what is buffered (the file stays open); the frames it
    /// held count as written once that worked.
    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(cur) = &mut self.out {
            cur.out.flush()?;
        }
        add(&self.counters.written, std::mem::take(&mut self.buffered));
        Ok(())
    }

    fn run(mut self, rx: Receiver<Batch>, reopen: &AtomicBool) {
        let counters = self.counters.clone();
        let counters = &*counters;
        let mut last_flush = Instant::now();
        let mut reopen_pending = false;
        loop {
            match rx.recv_timeout(EVIDENCE_POLL) {
                Ok(batch) => {
                    // Buffered frames count as written at the flush that
                    // puts them on the disk.
                    if let Err((kept, e)) = self.write_batch(&batch) {
                        add(&counters.write_dropped, batch.frames.len() as u64 - kept);
                        self.failed(&e, counters);
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            let flush_due = now - last_flush >= EVIDENCE_FLUSH_EVERY;
            // A SIGHUP at once; one that failed, with the next flush.
            if reopen.swap(false, Ordering::Relaxed) || (reopen_pending && flush_due) {
                last_flush = now;
                match self.reopen() {
                    Ok(()) => {
                        reopen_pending = false;
                        self.recovered();
                    }
                    Err(e) => {
                        reopen_pending = true;
                        self.failed(&e, counters);
                    }
                }
            } else if flush_due {
                last_flush = now;
                match self.flush() {
                    Ok(()) => self.recovered(),
                    Err(e) => self.failed(&e, counters),
                }
            }
        }
        if let Err(e) = self.flush() {
            self.said = false;
            self.failed(&e, counters);
            // What the buffer still holds never reaches the disk.
            add(&counters.write_dropped, std::mem::take(&mut self.buffered));
        }
    }

    /// A write failed: count it, say it once, keep what is buffered.
    fn failed(&mut self, e: &std::io::Error, counters: &LiveCounters) {
        add(&counters.write_errors, 1);
        if !self.said {
            let path = self.out.as_ref().map_or(&self.base, |f| &f.path);
            eprintln!("imscan: -w {}: {e}", path.display());
            self.said = true;
        }
    }

    fn recovered(&mut self) {
        if self.said {
            let path = self.out.as_ref().map_or(&self.base, |f| &f.path);
            eprintln!("imscan: -w {}: writing works again", path.display());
            self.said = false;
        }
    }

    /// Writes every frame of the batch; on an error, how many frames were
    /// kept (buffered whole) before it.
    fn write_batch(&mut self, batch: &Batch) -> Result<(), (u64, std::io::Error)> {
        for i in 0..batch.frames.len() {
            let kept = i as u64;
            let frame = batch.frame(i);
            let record = 16 + frame.data.len();
            let rotate = self.rotate_bytes > 0
                && self
                    .out
                    .as_ref()
                    .is_some_and(|f| f.size > 24 && f.size + record as u64 > self.rotate_bytes);
            if rotate {
                self.flush().map_err(|e| (kept, e))?;
            }
            if self.out.is_none() || rotate {
                self.open_next().map_err(|e| (kept, e))?;
            }
            let Some(cur) = self.out.as_mut() else {
                unreachable!("opened above")
            };
            // Make room for the whole record first, so it is buffered
            // whole or not at all.
            if cur.out.capacity() - cur.out.buffer().len() < record {
                self.flush().map_err(|e| (kept, e))?;
            }
            let Some(cur) = self.out.as_mut() else {
                unreachable!("opened above")
            };
            let mut h = [0u8; 16];
            h[0..4].copy_from_slice(&(frame.ts.secs() as u32).to_le_bytes());
            h[4..8].copy_from_slice(&frame.ts.subsec_micros().to_le_bytes());
            h[8..12].copy_from_slice(&(frame.data.len() as u32).to_le_bytes());
            h[12..16].copy_from_slice(&frame.orig_len.to_le_bytes());
            cur.out.write_all(&h).map_err(|e| (kept, e))?;
            cur.out.write_all(frame.data).map_err(|e| (kept, e))?;
            cur.size += record as u64;
            self.buffered += 1;
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

    fn writer(path: &Path, rotate_bytes: u64) -> (EvidenceWriter, Arc<LiveCounters>) {
        let counters = Arc::new(LiveCounters::default());
        let w = EvidenceWriter::create(
            path,
            LinkType::ETHERNET,
            65535,
            rotate_bytes,
            counters.clone(),
        )
        .unwrap();
        (w, counters)
    }

    /// The frames of a pcap file as read back by the crate's reader, which
    /// must find nothing wrong with it.
    fn read_back(path: &Path) -> Vec<(Timestamp, Vec<u8>)> {
        let mut r = crate::capture::CaptureReader::open(
            path.to_str().unwrap(),
            0,
            crate::capture::ReadOptions::default(),
        )
        .unwrap();
        let mut frames = Vec::new();
        while let Some(b) = r.next_batch(100, 1 << 20) {
            for i in 0..b.len() {
                frames.push((b.frame(i).ts, b.frame(i).data.to_vec()));
            }
        }
        assert!(r.take_warnings().is_empty(), "{}", path.display());
        assert_eq!(r.stats().damaged, 0, "{}", path.display());
        frames
    }

    #[test]
    fn evidence_file_is_a_pcap_our_reader_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ev.pcap");
        let (mut w, counters) = writer(&path, 0);
        w.write_batch(&batch(&[60, 100, 70])).unwrap();
        w.flush().unwrap();
        let frames = read_back(&path);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[1].1, [1u8; 100]);
        assert_eq!(
            frames[2].0,
            Timestamp::from_secs_nanos(1_700_000_002, 5_000)
        );
        assert_eq!(counters.snapshot().files_written, 1);
    }

    #[test]
    fn evidence_rotates_before_passing_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ev.pcap");
        // Header 24 + two records of 16 + 100 fit in 256; the third does not.
        let (mut w, counters) = writer(&path, 256);
        w.write_batch(&batch(&[100, 100, 100, 100, 100])).unwrap();
        w.flush().unwrap();
        drop(w);
        let sizes: Vec<u64> = ["ev.pcap", "ev.pcap.1", "ev.pcap.2"]
            .iter()
            .map(|n| std::fs::metadata(dir.path().join(n)).unwrap().len())
            .collect();
        assert_eq!(sizes, [24 + 2 * 116, 24 + 2 * 116, 24 + 116]);
        assert_eq!(counters.snapshot().files_written, 3);
        assert!(!dir.path().join("ev.pcap.3").exists());
    }

    #[test]
    fn evidence_never_overwrites_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ev.pcap");
        std::fs::write(&path, b"an earlier run").unwrap();
        std::fs::write(dir.path().join("ev.pcap.1"), b"rotated by logrotate").unwrap();
        let (mut w, _) = writer(&path, 0);
        w.write_batch(&batch(&[60])).unwrap();
        w.flush().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"an earlier run");
        assert_eq!(read_back(&dir.path().join("ev.pcap.2")).len(), 1);
    }

    #[test]
    fn sighup_starts_a_new_file_once_the_old_one_was_moved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ev.pcap");
        let (mut w, counters) = writer(&path, 0);
        w.write_batch(&batch(&[60, 61])).unwrap();
        // Not moved: SIGHUP writes it out and keeps it.
        w.reopen().unwrap();
        assert_eq!(read_back(&path).len(), 2);
        w.write_batch(&batch(&[62])).unwrap();
        // What logrotate does: move it away, then SIGHUP. The old file is
        // complete at once, the new one has its own header.
        let moved = dir.path().join("ev.pcap.1");
        std::fs::rename(&path, &moved).unwrap();
        w.reopen().unwrap();
        assert_eq!(read_back(&moved).len(), 3);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            0,
            "header still buffered"
        );
        w.write_batch(&batch(&[63, 64])).unwrap();
        w.flush().unwrap();
        let new = read_back(&path);
        assert_eq!(new.iter().map(|f| f.1.len()).collect::<Vec<_>>(), [63, 64]);
        assert_eq!(counters.snapshot().files_written, 2);
        // Moved again, and `FILE.1` is taken by the first move: the next
        // size rotation would go on at `FILE.2`, a SIGHUP starts at `FILE`.
        std::fs::rename(&path, dir.path().join("ev.pcap.keep")).unwrap();
        w.reopen().unwrap();
        w.flush().unwrap();
        assert!(read_back(&path).is_empty());
    }

    #[test]
    fn a_full_disk_keeps_whole_records_in_the_buffer() {
        // /dev/full refuses every write (ENOSPC).
        let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
            eprintln!("skipping: no /dev/full");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let (mut w, counters) = writer(&dir.path().join("ev.pcap"), 0);
        let cur = w.out.as_mut().unwrap();
        // A buffer of 24 + 2 records of 16 + 100 and a bit: the third
        // record does not fit, and making room fails.
        cur.out = BufWriter::with_capacity(24 + 2 * 116 + 50, full);
        cur.out
            .write_all(&pcap_header(LinkType::ETHERNET, 65535))
            .unwrap();
        let (kept, err) = w.write_batch(&batch(&[100, 100, 100, 100])).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28));
        assert_eq!(kept, 2);
        let cur = w.out.as_ref().unwrap();
        assert_eq!(cur.out.buffer().len(), 24 + 2 * 116, "whole records only");
        assert!(w.flush().is_err());
        assert_eq!(counters.snapshot().written, 0, "not on the disk yet");
    }

    #[test]
    fn writer_thread_reopens_on_the_flag_and_writes_everything_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ev.pcap");
        let (w, counters) = writer(&path, 0);
        let reopen = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::bounded(4);
        let flag = reopen.clone();
        let thread = std::thread::spawn(move || w.run(rx, &flag));
        tx.send(batch(&[60, 61, 62])).unwrap();
        // Wait until the writer took the batch (the queue is empty).
        while !tx.is_empty() {
            std::thread::yield_now();
        }
        let moved = dir.path().join("moved.pcap");
        std::fs::rename(&path, &moved).unwrap();
        reopen.store(true, Ordering::Relaxed);
        while reopen.load(Ordering::Relaxed) || !path.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
        tx.send(batch(&[70, 71])).unwrap();
        drop(tx);
        thread.join().unwrap();
        let c = counters.snapshot();
        assert_eq!((c.written, c.write_dropped, c.write_errors), (5, 0, 0));
        assert_eq!(read_back(&moved).len(), 3);
        assert_eq!(read_back(&path).len(), 2);
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
        let no = || Arc::new(AtomicBool::new(false));
        let err = LiveCapture::start(&opts, no(), no())
            .err()
            .expect("no such interface");
        let msg = err.to_string();
        assert!(msg.starts_with("capture on imscan-no-such-if0: "), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }
}
