//! A live run (`-i IFACE`, cargo feature `live`): starts the capture, turns
//! SIGINT/SIGTERM into a clean stop and SIGHUP into reopening the output,
//! flushes the sink twice a second, prints the status line, and adds the
//! live counters to the manifest and the exit status. The capture itself is
//! `capture::live`; the processing is the same engine loop as for files.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::{conclude, Cli, Exit, Output, Plan, RunError};
use crate::capture::live::{LiveCapture, LiveCounters, LiveCounts, LiveOptions};
use crate::capture::{CaptureStats, InputSummary};
use crate::engine;

/// How often the sink is flushed: events reach it within a second.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// After a write error, the output is reopened this often until writing
/// works again (a full disk that was cleaned up).
const RETRY_WRITE_AFTER: Duration = Duration::from_secs(10);

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
    let hup = Arc::new(AtomicBool::new(false));
    for (sig, flag) in [
        (signal_hook::consts::SIGTERM, &stop),
        (signal_hook::consts::SIGINT, &stop),
        (signal_hook::consts::SIGHUP, &hup),
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
    let mut capture = LiveCapture::start(&opts, stop.clone()).map_err(|e| RunError(e.0))?;
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
    Ok(conclude(cli, plan, &summary, output, drop_reasons(&counts)))
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
/// link): flush the sink, reopen it on SIGHUP, print the status.
pub(super) fn after_batch(out: &mut Output) {
    let events = out.counts.total();
    let retry = out
        .write_failed_at
        .is_some_and(|at| at.elapsed() >= RETRY_WRITE_AFTER);
    let Some(live) = &mut out.live else {
        return;
    };
    if let Some(d) = live.slow {
        std::thread::sleep(d);
    }
    let now = Instant::now();
    let reopen = live.hup.swap(false, Ordering::Relaxed);
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
    if reopen || retry {
        out.reopen();
    } else if flush && out.write_error.is_none() {
        if let Err(e) = out.sink.flush() {
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
    /// SIGHUP: close the output and open it again at the same path (after
    /// logrotate moved it away). A failure is said and counted; writing
    /// resumes at the next SIGHUP that succeeds.
    fn reopen(&mut self) {
        if self.write_error.is_none() {
            if let Err(e) = self.sink.finish() {
                self.write_failed(e);
            }
        }
        match self.spec.open() {
            Ok(sink) => {
                let old = std::mem::replace(&mut self.sink, sink);
                self.retired_counters.extend(old.counters());
                self.write_error = None;
                self.write_failed_at = None;
                self.say("imscan: SIGHUP: output reopened".into());
            }
            Err(e) => {
                self.write_failed(std::io::Error::other(e.0));
            }
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
