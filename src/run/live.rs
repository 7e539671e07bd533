//! A live run (`-i IFACE`, cargo feature `live`): starts the capture, turns
//! SIGINT/SIGTERM into a clean stop and SIGHUP into reopening the output
//! and the `-w` file, flushes the sink twice a second, retries a failed
//! output every second, prints the status line, and adds the live counters
//! to the manifest and the exit status. The capture itself is
//! `capture::live`; the processing is the same engine loop as for files.
//! Nothing here runs on the capture thread.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::{conclude, Cli, Exit, Output, Plan, RunError};
use crate::capture::live::{LiveCapture, LiveCounters, LiveCounts, LiveOptions};
use crate::capture::{CaptureStats, InputSummary};
use crate::engine;

/// How often the sink is flushed: events reach it within a second.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// After a write error, writing is tried again this often until it works
/// (a full disk that was cleaned up).
const RETRY_WRITE_AFTER: Duration = Duration::from_secs(1);

/// Bytes a failing stream output holds for later (see [`SpoolingWriter`]).
/// Events stop going to it at the first failure, so it holds at most the
/// sink's buffer and one event; the cap is a safety net.
const MAX_SPOOL: usize = 16 << 20;

/// Batches waiting between capture and processing. With the default batch
/// of 8192 frames this rides out a burst of some 500k packets.
const QUEUE_BATCHES: usize = 64;

/// Test-only: milliseconds to sleep after each processed batch, to make
/// processing fall behind on purpose (the overload test).
const SLOW_ENV: &str = "IMSCAN_TEST_SLOW_MS";
/// Test-only: batches the queue holds (default [`QUEUE_BATCHES`]), so the
/// overload test overflows it quickly.
const QUEUE_ENV: &str = "IMSCAN_TEST_QUEUE_BATCHES";

/// What a live run adds to [`Output`].
pub(super) struct LiveState {
    pub(super) counters: Arc<LiveCounters>,
    hup: Arc<AtomicBool>,
    /// A SIGHUP whose reopening waits until the old output is written out.
    reopen_pending: bool,
    last_flush: Instant,
    status_every: Option<Duration>,
    last_status: Instant,
    last_counts: LiveCounts,
    spinner: Option<ProgressBar>,
    slow: Option<Duration>,
    pub(super) flows: usize,
}

pub(super) fn run(
    cli: &Cli,
    iface: &str,
    plan: &Plan,
    mut output: Output,
) -> Result<Exit, RunError> {
    let stop = Arc::new(AtomicBool::new(false));
    // SIGHUP sets two flags: one for the output (seen after each batch on
    // this thread), one for the `-w` writer's thread.
    let hup = Arc::new(AtomicBool::new(false));
    let hup_evidence = Arc::new(AtomicBool::new(false));
    for (sig, flag) in [
        (signal_hook::consts::SIGTERM, &stop),
        (signal_hook::consts::SIGINT, &stop),
        (signal_hook::consts::SIGHUP, &hup),
        (signal_hook::consts::SIGHUP, &hup_evidence),
    ] {
        signal_hook::flag::register(sig, Arc::clone(flag))
            .map_err(|e| RunError(format!("installing signal handlers: {e}")))?;
    }
    let status_every = match cli.status_interval {
        None => None,
        Some(v) if v.is_finite() && v > 0.0 && v < 1e6 => Some(Duration::from_secs_f64(v)),
        Some(v) => {
            return Err(RunError(format!(
                "--status-interval {v}: expected a positive number of seconds"
            )))
        }
    };
    let opts = LiveOptions {
        interface: iface.to_string(),
        filter: cli.filter.clone(),
        snaplen: cli.snaplen,
        buffer_bytes: cli.buffer_size.saturating_mul(1 << 20),
        promisc: !cli.no_promisc,
        batch_frames: plan.engine.batch_frames,
        batch_bytes: plan.engine.batch_bytes,
        queue_batches: std::env::var(QUEUE_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(QUEUE_BATCHES),
        write: cli.write.clone(),
        rotate_bytes: cli.rotate_size.saturating_mul(1 << 20),
    };
    let mut capture =
        LiveCapture::start(&opts, stop.clone(), hup_evidence).map_err(|e| RunError(e.0))?;
    let link_type = capture.link_type();
    if !cli.quiet {
        eprintln!(
            "imscan: capturing on {iface} (link type {}); stop with Ctrl-C or SIGTERM",
            link_type.0
        );
    }
    let spinner = (status_every.is_some() && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .then(|| {
            let s = ProgressBar::new_spinner();
            s.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
            s.enable_steady_tick(Duration::from_millis(200));
            s
        });
    let slow = std::env::var(SLOW_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis);
    output.live = Some(LiveState {
        counters: capture.counters(),
        hup,
        reopen_pending: false,
        last_flush: Instant::now(),
        status_every,
        last_status: Instant::now(),
        last_counts: LiveCounts::default(),
        spinner,
        slow,
        flows: 0,
    });
    let source = capture
        .take_source()
        .expect("a fresh capture has its source");
    let result = engine::run_source(source, &plan.engine, &mut output);
    // Processing ended: make sure the capture thread ends too.
    stop.store(true, Ordering::Relaxed);
    let (mut summary, source) = match result {
        Ok(r) => r,
        Err(e) => {
            capture.join();
            return Err(RunError(e.to_string()));
        }
    };
    drop(source);
    if let Some(failure) = capture.join() {
        output.warning_line(format!("imscan: {iface}: {failure}"));
    }
    let counts = capture.counters().snapshot();
    if let Some(l) = &mut output.live {
        if let Some(s) = l.spinner.take() {
            s.finish_and_clear();
        }
    }
    // A last try: the disk may have room again.
    if output.write_error.is_some() {
        output.retry_write();
    }
    let mut lost = drop_reasons(&counts);
    if let Some(bytes) = output.spec.health.as_ref().map(|h| h.bytes_lost()) {
        if bytes > 0 {
            lost.push(format!("{bytes} bytes of output lost"));
        }
    }
    summary.inputs.push(InputSummary {
        path: format!("live:{iface}"),
        format: "live".into(),
        size: Some(counts.received_bytes),
        link_types: vec![link_type.0],
        stats: CaptureStats {
            frames: counts.received,
            captured_bytes: counts.received_bytes,
            ..CaptureStats::default()
        },
        ..InputSummary::default()
    });
    summary.stats.capture.frames = counts.processed;
    summary.stats.capture.captured_bytes = counts.processed_bytes;
    Ok(conclude(cli, plan, &summary, output, lost))
}

/// Why a live run lost packets, for the one-line summary and the exit status.
fn drop_reasons(c: &LiveCounts) -> Vec<String> {
    let mut why = Vec::new();
    if c.dropped > 0 {
        why.push(format!(
            "{} packets dropped by imscan (processing fell behind)",
            c.dropped
        ));
    }
    if c.kernel_dropped > 0 {
        why.push(format!(
            "{} packets dropped by the kernel",
            c.kernel_dropped
        ));
    }
    if c.interface_dropped > 0 {
        why.push(format!(
            "{} packets dropped by the interface",
            c.interface_dropped
        ));
    }
    if c.write_dropped > 0 {
        why.push(format!("{} packets not written to -w", c.write_dropped));
    }
    why
}

/// After each batch (a tick batch at least four times a second on a quiet
/// link): flush the sink, reopen it on SIGHUP, retry it after a write
/// error, print the status.
pub(super) fn after_batch(out: &mut Output) {
    let events = out.counts.total();
    let retry = out
        .write_failed_at
        .is_some_and(|at| at.elapsed() >= RETRY_WRITE_AFTER);
    let failing = out.write_error.is_some();
    let Some(live) = &mut out.live else {
        return;
    };
    if let Some(d) = live.slow {
        std::thread::sleep(d);
    }
    let now = Instant::now();
    let reopen = live.hup.swap(false, Ordering::Relaxed) || (live.reopen_pending && retry);
    let flush = now - live.last_flush >= FLUSH_EVERY;
    let status = live
        .status_every
        .filter(|every| now - live.last_status >= *every)
        .map(|_| {
            let c = live.counters.snapshot();
            let secs = (now - live.last_status).as_secs_f64().max(1e-3);
            let line = status_line(&c, &live.last_counts, secs, live.flows, events);
            live.last_counts = c;
            live.last_status = now;
            line
        });
    if flush {
        live.last_flush = now;
    }
    if let Some(line) = status {
        match out.live.as_ref().and_then(|l| l.spinner.as_ref()) {
            Some(s) => s.set_message(line),
            None => eprintln!("imscan: {line}"),
        }
    }
    if reopen {
        out.reopen();
    } else if failing {
        if retry {
            out.retry_write();
        }
    } else if flush {
        if let Err(e) = out.sink.flush().and_then(|()| out.held_error()) {
            out.write_failed(e);
        }
    }
}

/// One status line: rates since the last one, totals of drops.
fn status_line(c: &LiveCounts, prev: &LiveCounts, secs: f64, flows: usize, events: u64) -> String {
    let pkts = (c.received - prev.received.min(c.received)) as f64 / secs;
    let mb = (c.received_bytes - prev.received_bytes.min(c.received_bytes)) as f64 / secs / 1e6;
    format!(
        "{pkts:.0} pkts/s, {mb:.2} MB/s, {flows} flows, {events} events, drops: {} imscan, {} kernel",
        c.dropped, c.kernel_dropped
    )
}

impl Output {
    /// SIGHUP: write out the old output, then open it again at the same
    /// path (after logrotate moved it away). The old output is kept, and
    /// the reopening tried again every second, until everything it holds is
    /// written: nothing is lost to a SIGHUP during a write error.
    fn reopen(&mut self) {
        let pending = |out: &mut Output, on: bool| {
            if let Some(l) = &mut out.live {
                l.reopen_pending = on;
            }
        };
        if let Err(e) = self.sink.finish() {
            if self.write_error.is_none() {
                self.write_failed(e);
            } else {
                self.write_failed_at = Some(Instant::now());
            }
            pending(self, true);
            return;
        }
        match self.spec.open() {
            Ok(sink) => {
                let old = std::mem::replace(&mut self.sink, sink);
                self.retired_counters.extend(old.counters());
                drop(old);
                pending(self, false);
                self.recovered("SIGHUP: output reopened");
            }
            Err(e) => {
                pending(self, true);
                if self.write_error.is_none() {
                    self.write_failed(io::Error::other(e.0));
                } else {
                    self.write_failed_at = Some(Instant::now());
                }
            }
        }
    }

    /// After a write error: write out what the output holds; when that
    /// works, events go to it again.
    pub(super) fn retry_write(&mut self) {
        match self.sink.flush().and_then(|()| self.held_error()) {
            Ok(()) => self.recovered("writing output works again"),
            Err(_) => self.write_failed_at = Some(Instant::now()),
        }
    }

    /// Writing works (again): say so, with what was lost meanwhile (even
    /// with `-q`, as the error was).
    fn recovered(&mut self, what: &str) {
        if self.write_error.take().is_some() {
            self.write_failed_at = None;
            eprintln!(
                "imscan: {what} ({} events not written so far)",
                self.unwritten
            );
        } else {
            self.say(format!("imscan: {what}"));
        }
    }

    fn warning_line(&mut self, line: String) {
        self.warning_count();
        self.say(line);
    }

    fn warning_count(&mut self) {
        self.warnings += 1;
    }
}

/// How a live run's stream output is doing: set by its [`SpoolingWriter`],
/// read by [`Output`] after each event, so that no more events go to an
/// output that cannot write.
#[derive(Debug, Default)]
pub(super) struct OutputHealth {
    /// The error that keeps bytes waiting; `None` once they are written.
    error: Mutex<Option<io::Error>>,
    /// Bytes dropped: over [`MAX_SPOOL`], or still waiting when the output
    /// was closed.
    bytes_lost: AtomicU64,
}

impl OutputHealth {
    /// `Err` while bytes wait for a write that failed.
    pub(super) fn check(&self) -> io::Result<()> {
        match &*self.error.lock().expect("health lock") {
            Some(e) => Err(copy_error(e)),
            None => Ok(()),
        }
    }

    pub(super) fn bytes_lost(&self) -> u64 {
        self.bytes_lost.load(Ordering::Relaxed)
    }

    fn set(&self, e: Option<io::Error>) {
        *self.error.lock().expect("health lock") = e;
    }
}

/// The same error again (`io::Error` is not `Clone`).
fn copy_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// A live run's stream output (an `-o` file or standard output) that never
/// fails a write: what the disk refuses waits here, the tail of a partly
/// written line included, and goes out in order before anything else at
/// the next write or flush that works. So a full disk never leaves half a
/// line, and never loses what a sink already took. While bytes wait,
/// [`OutputHealth`] holds the error and `flush` returns it; [`Output`] then
/// stops handing events to the sink (and counts them) until a retry
/// works.
pub(super) struct SpoolingWriter {
    inner: Box<dyn Write + Send>,
    spool: Vec<u8>,
    health: Arc<OutputHealth>,
}

impl SpoolingWriter {
    pub(super) fn boxed(
        inner: Box<dyn Write + Send>,
        health: Arc<OutputHealth>,
    ) -> Box<dyn Write + Send> {
        // A new output starts with nothing waiting.
        health.set(None);
        Box::new(SpoolingWriter {
            inner,
            spool: Vec::new(),
            health,
        })
    }

    /// Writes as much of `buf` as the output takes; returns how much.
    fn write_some(&mut self, buf: &[u8]) -> (usize, Option<io::Error>) {
        let mut done = 0;
        while done < buf.len() {
            match self.inner.write(&buf[done..]) {
                Ok(0) => return (done, Some(io::ErrorKind::WriteZero.into())),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (done, Some(e)),
            }
        }
        (done, None)
    }

    /// Writes what waits; true when nothing waits any more.
    fn drain(&mut self) -> bool {
        if self.spool.is_empty() {
            return true;
        }
        let spool = std::mem::take(&mut self.spool);
        let (done, err) = self.write_some(&spool);
        self.spool = spool;
        self.spool.drain(..done);
        if let Some(e) = err {
            self.health.set(Some(e));
        }
        self.spool.is_empty()
    }

    fn keep(&mut self, rest: &[u8]) {
        if self.spool.len() + rest.len() > MAX_SPOOL {
            self.health
                .bytes_lost
                .fetch_add(rest.len() as u64, Ordering::Relaxed);
        } else {
            self.spool.extend_from_slice(rest);
        }
    }
}

impl Write for SpoolingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.drain() {
            self.keep(buf);
            return Ok(buf.len());
        }
        let (done, err) = self.write_some(buf);
        if let Some(e) = err {
            self.keep(&buf[done..]);
            self.health.set(Some(e));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.drain() {
            return self.health.check();
        }
        match self.inner.flush() {
            Ok(()) => {
                self.health.set(None);
                Ok(())
            }
            Err(e) => {
                let err = copy_error(&e);
                self.health.set(Some(e));
                Err(err)
            }
        }
    }
}

impl Drop for SpoolingWriter {
    /// Closing with bytes still waiting (the run ends during a write error):
    /// one last try, then what remains is counted as lost.
    fn drop(&mut self) {
        if !self.drain() {
            self.health
                .bytes_lost
                .fetch_add(self.spool.len() as u64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that takes `room` bytes, then fails like a full disk until
    /// given more room.
    #[derive(Clone, Default)]
    struct Disk {
        written: Arc<Mutex<Vec<u8>>>,
        room: Arc<AtomicU64>,
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let room = self.room.load(Ordering::Relaxed) as usize;
            if room == 0 {
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            let n = buf.len().min(room);
            self.room.fetch_sub(n as u64, Ordering::Relaxed);
            self.written.lock().unwrap().extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_disk_leaves_no_half_line_and_loses_nothing_taken() {
        let disk = Disk::default();
        disk.room.store(10, Ordering::Relaxed);
        let health = Arc::new(OutputHealth::default());
        let mut out = SpoolingWriter::boxed(Box::new(disk.clone()), health.clone());
        // The disk takes 10 bytes of the first line, then fails: the write
        // still succeeds (the rest waits), the health says why.
        out.write_all(b"first line\nsecond line\n").unwrap();
        assert_eq!(&*disk.written.lock().unwrap(), b"first line");
        let err = health.check().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28));
        assert_eq!(out.flush().unwrap_err().raw_os_error(), Some(28));
        // What the sink had taken before it was told also waits.
        out.write_all(b"third\n").unwrap();
        // Room again: the next flush writes all of it, in order, once.
        disk.room.store(1 << 20, Ordering::Relaxed);
        out.flush().unwrap();
        health.check().unwrap();
        assert_eq!(
            &*disk.written.lock().unwrap(),
            b"first line\nsecond line\nthird\n"
        );
        drop(out);
        assert_eq!(health.bytes_lost(), 0);
    }

    #[test]
    fn bytes_still_waiting_at_the_end_are_counted_as_lost() {
        let disk = Disk::default();
        let health = Arc::new(OutputHealth::default());
        let mut out = SpoolingWriter::boxed(Box::new(disk.clone()), health.clone());
        out.write_all(b"0123456789").unwrap();
        assert!(out.flush().is_err());
        drop(out);
        assert_eq!(health.bytes_lost(), 10);
        assert!(disk.written.lock().unwrap().is_empty());
    }

    #[test]
    fn the_spool_is_bounded() {
        let disk = Disk::default();
        let health = Arc::new(OutputHealth::default());
        let mut out = SpoolingWriter::boxed(Box::new(disk.clone()), health.clone());
        let chunk = vec![b'x'; MAX_SPOOL / 2];
        for _ in 0..3 {
            out.write_all(&chunk).unwrap();
        }
        assert_eq!(health.bytes_lost(), chunk.len() as u64);
        disk.room.store(u64::MAX, Ordering::Relaxed);
        out.flush().unwrap();
        assert_eq!(disk.written.lock().unwrap().len(), 2 * chunk.len());
    }
}
