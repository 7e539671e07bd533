//! One invocation of imscan: turns the parsed command line into stage
//! configurations, runs the engine, feeds policy and sinks, reports warnings,
//! counters and the manifest, and decides the exit code. The binary only
//! calls [`main`].

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::capture::CaptureWarning;
use crate::cli::{Cli, Format, Progress};
use crate::engine::{self, EngineConfig, EngineOutput, RunStats, RunSummary};
use crate::event::Event;
use crate::event::Protocol;
use crate::net::{NetConfig, Selection};
use crate::policy::Policy;
use crate::proto::ProtoConfig;
use crate::sink::{
    self, write_manifest, DateZone, EventCounts, ImspectorOptions, InputRecord, Manifest, Sink,
    SinkContext,
};
use crate::tcp::TcpConfig;
use crate::time::Timestamp;

#[cfg(feature = "live")]
mod live;

/// The process exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Every input processed cleanly.
    Ok,
    /// Processed, but some input was damaged or something was dropped.
    Damaged,
    /// Usage error, or nothing could be read.
    Usage,
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Ok => 0,
            Exit::Damaged => 1,
            Exit::Usage => 2,
        }
    }
}

/// A failure that stops the run before or while it starts: one line for the user.
#[derive(Debug)]
pub struct RunError(pub String);

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Run imscan for a parsed command line; print errors; return the exit status.
pub fn main(cli: Cli) -> Exit {
    if let Some(shell) = cli.completions {
        crate::cli::completions(shell, &mut std::io::stdout());
        return Exit::Ok;
    }
    match run(&cli) {
        Ok(exit) => exit,
        Err(e) => {
            eprintln!("imscan: {e}");
            Exit::Usage
        }
    }
}

/// What the run was asked to do, checked before any input is read.
struct Plan {
    inputs: Vec<String>,
    format: Format,
    /// `-o PATH`; `None` or `-` is standard output (not for the IMSpector tree).
    output: Option<PathBuf>,
    engine: EngineConfig,
    policy: Policy,
    zone: DateZone,
}

fn plan(cli: &Cli) -> Result<Plan, RunError> {
    let inputs = cli.inputs();
    if let Some(iface) = &cli.interface {
        if !cfg!(feature = "live") {
            return Err(RunError(format!(
                "-i {iface}: this imscan was built without live capture; rebuild with `cargo build --release --features live` (needs libpcap-dev)"
            )));
        }
        if !inputs.is_empty() {
            return Err(RunError(
                "-i reads a live interface: give either -i or capture files, not both".into(),
            ));
        }
    } else if cli.filter.is_some() && !cfg!(feature = "live") {
        return Err(RunError(
            "-f/--filter needs libpcap: rebuild with `cargo build --release --features live` (needs libpcap-dev)".into(),
        ));
    } else if cli.write.is_some() || cli.status_interval.is_some() {
        return Err(RunError(
            "-w and --status-interval apply to live capture (-i) only".into(),
        ));
    }
    if inputs.is_empty() && cli.interface.is_none() {
        return Err(RunError(
            "no capture file given (try `imscan FILE.pcap`, or `imscan --help`)".into(),
        ));
    }
    if inputs.iter().filter(|p| p.as_str() == "-").count() > 1 {
        return Err(RunError(
            "standard input (`-`) can be read only once".into(),
        ));
    }
    let output_is_dir = cli.output.as_deref().is_some_and(Path::is_dir);
    let format = match cli.format {
        Some(f) => f,
        None if output_is_dir => Format::Imspector,
        None => Format::Text,
    };
    if format == Format::Imspector && !output_is_dir {
        return Err(RunError(match &cli.output {
            None => "-F imspector needs -o DIR (an existing directory)".into(),
            Some(p) => format!("{}: -F imspector needs an existing directory", p.display()),
        }));
    }
    let selection = Selection::parse(&cli.hosts, &cli.nets, &cli.ports).map_err(RunError)?;
    let seconds = |flag: &str, v: f64| -> Result<i64, RunError> {
        if v.is_finite() && v > 0.0 && v < 1e9 {
            Ok((v * 1e9) as i64)
        } else {
            Err(RunError(format!(
                "{flag} {v}: expected a positive number of seconds"
            )))
        }
    };
    let tcp = TcpConfig {
        max_flows: cli.max_flows.max(1),
        total_buffered_bytes: cli.max_buffer_mib.saturating_mul(1 << 20),
        ooo_bytes_per_dir: cli.max_ooo_kib.saturating_mul(1 << 10),
        gap_window_ns: seconds("--gap-timeout", cli.gap_timeout)?,
        idle_timeout_ns: seconds("--idle-timeout", cli.idle_timeout)?,
    };
    let net = NetConfig {
        max_fragments: cli.max_fragments.max(1),
        max_reassemblies: cli.max_reassemblies.max(1),
        fragment_timeout_ns: seconds("--frag-timeout", cli.frag_timeout)?,
        ..NetConfig::default()
    };
    let proto = ProtoConfig {
        protocols: if cli.protocols.is_empty() {
            Protocol::ALL.to_vec()
        } else {
            cli.protocols.clone()
        },
        ports_only: cli.ports_only,
        raw: cli.raw,
        carve_dir: cli.carve.clone(),
    };
    if let Some(dir) = &cli.carve {
        if !dir.is_dir() {
            return Err(RunError(format!(
                "{}: --carve needs an existing directory",
                dir.display()
            )));
        }
    }
    if let Some(dir) = &cli.streams {
        if !dir.is_dir() {
            return Err(RunError(format!(
                "{}: --streams needs an existing directory",
                dir.display()
            )));
        }
    }
    let mut engine = EngineConfig {
        selection,
        tcp,
        net,
        proto,
        streams_dir: cli.streams.clone(),
        hash_inputs: cli.output.is_some(),
        ..EngineConfig::default()
    };
    if let Some(t) = cli.threads {
        engine.threads = usize::from(t);
    }
    #[cfg(feature = "live")]
    if let (Some(expr), None) = (&cli.filter, &cli.interface) {
        engine.frame_filter = Some(std::sync::Arc::new(
            crate::capture::live::BpfFrameFilter::new(expr).map_err(|e| RunError(e.0))?,
        ));
    }
    let policy = Policy::load(
        cli.badwords.as_deref(),
        cli.block_count,
        cli.acl.as_deref(),
        cli.block_files,
    )
    .map_err(|e| RunError(e.to_string()))?;
    let zone = DateZone::parse(&cli.tz).map_err(|e| RunError(format!("--tz {}: {e}", cli.tz)))?;
    Ok(Plan {
        inputs,
        format,
        output: cli.output.clone().filter(|p| p.as_os_str() != "-"),
        engine,
        policy,
        zone,
    })
}

fn run(cli: &Cli) -> Result<Exit, RunError> {
    let mut plan = plan(cli)?;
    let mut output = Output::new(cli, &plan)?;
    for w in plan.policy.warnings.drain(..) {
        output.say(format!("imscan: warning: {w}"));
    }
    output.policy = std::mem::take(&mut plan.policy);
    #[cfg(feature = "live")]
    if let Some(iface) = &cli.interface {
        return live::run(cli, iface, &plan, output);
    }
    let summary = engine::run(&plan.inputs, &plan.engine, &mut output)
        .map_err(|e| RunError(e.to_string()))?;
    Ok(conclude(cli, &plan, &summary, output, Vec::new()))
}

/// After the engine: flush the sink, write the manifest and the counters,
/// say why the run was not clean (`extra` adds reasons of a live run) and
/// pick the exit status.
fn conclude(
    cli: &Cli,
    plan: &Plan,
    summary: &RunSummary,
    mut output: Output,
    extra: Vec<String>,
) -> Exit {
    output.finish();
    if let Some(path) = &plan.output {
        let is_dir = plan.format == Format::Imspector;
        let manifest = manifest(plan, summary, &output);
        let at = sink::manifest::manifest_path(path, is_dir);
        if let Err(e) = write_manifest(&at, &manifest) {
            output.write_failed(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", at.display()),
            ));
        }
    }
    let mut reasons = damage_reasons(&summary.stats);
    if output.unwritten > 0 {
        reasons.push(format!(
            "{} events not written (the output failed)",
            output.unwritten
        ));
    }
    reasons.extend(extra);
    let damaged = !reasons.is_empty() || output.warnings > 0;
    if cli.stats {
        let json = serde_json::to_string_pretty(&stats_json(summary, &output))
            .expect("counters serialise");
        eprintln!("{json}");
    }
    // The output could not be written (a closed pipe is not an error: the
    // reader had what it wanted): the error was said when it happened.
    if let Some(e) = &output.write_error {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Exit::Damaged;
        }
    }
    if damaged {
        if !cli.quiet {
            let mut why = reasons.join(", ");
            if why.is_empty() {
                why = format!("{} warnings", output.warnings);
            }
            eprintln!("imscan: processed with damage: {why} (see --stats)");
        }
        Exit::Damaged
    } else {
        Exit::Ok
    }
}

/// Whether a run must exit 1: input damaged, bytes lost or anything dropped
/// by a budget. Each reason is named for the one-line summary on stderr.
fn damage_reasons(stats: &RunStats) -> Vec<String> {
    let (c, n, t) = (&stats.capture, &stats.net, &stats.tcp);
    let mut why = Vec::new();
    let mut note = |count: u64, what: &str| {
        if count > 0 {
            why.push(format!("{count} {what}"));
        }
    };
    note(c.damaged, "damaged capture records");
    note(c.snaplen_truncated, "frames cut by the snaplen");
    note(n.malformed.total(), "malformed packets");
    note(n.truncated, "truncated segments");
    note(n.fragment_drops(), "IP fragment reassemblies dropped");
    note(
        n.fragment_overlap_conflicts,
        "conflicting IP fragment overlaps",
    );
    note(t.gap_bytes, "stream bytes missing");
    note(t.overlap_conflicts, "conflicting TCP retransmissions");
    note(t.evictions, "flows evicted by the flow budget");
    note(
        t.ooo_budget_bites + t.total_budget_bites,
        "reassembly buffer budget hits",
    );
    note(
        stats.proto.caps_hit,
        "protocol units dropped over their size cap",
    );
    why
}

fn stats_json(summary: &RunSummary, output: &Output) -> serde_json::Value {
    serde_json::json!({
        "inputs": summary.inputs,
        "counters": counters(summary, output),
        "events": output.counts,
    })
}

/// Every stage's counters, and the sink's, as one JSON object.
fn counters(summary: &RunSummary, output: &Output) -> serde_json::Value {
    let mut v = serde_json::to_value(&summary.stats).expect("counters serialise");
    if let serde_json::Value::Object(map) = &mut v {
        let mut sink: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
        for (k, n) in output
            .retired_counters
            .iter()
            .copied()
            .chain(output.sink.counters())
        {
            let sum = sink.get(k).and_then(|v| v.as_u64()).unwrap_or(0) + n;
            sink.insert(k.to_string(), sum.into());
        }
        map.insert("sink".into(), sink.into());
        #[cfg(feature = "live")]
        if let Some(l) = &output.live {
            map.insert(
                "live".into(),
                serde_json::to_value(l.counters.snapshot()).expect("counters serialise"),
            );
        }
        if let Some(kib) = peak_rss_kib() {
            map.insert("peak_rss_kib".into(), kib.into());
        }
        map.insert("warnings".into(), output.warnings.into());
        map.insert("events_unwritten".into(), output.unwritten.into());
        map.insert("output_write_errors".into(), output.write_errors.into());
        #[cfg(feature = "live")]
        if let Some(h) = &output.spec.health {
            map.insert("output_bytes_lost".into(), h.bytes_lost().into());
        }
    }
    v
}

/// The process's peak resident set so far (Linux `VmHWM`), so a user and the
/// tests can see that a run stayed within its memory budgets.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The run manifest written next to the output.
fn manifest(plan: &Plan, summary: &RunSummary, output: &Output) -> Manifest {
    let format = match plan.format {
        Format::Text => "text",
        Format::Jsonl => "jsonl",
        Format::Csv => "csv",
        Format::Imspector => "imspector",
    };
    let out = plan
        .output
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "-".into());
    let mut m = Manifest::new(std::env::args().collect(), format, &out);
    m.inputs = summary
        .inputs
        .iter()
        .map(|i| InputRecord {
            path: i.path.clone(),
            size: i.size.unwrap_or(0),
            sha256: i.sha256.clone().unwrap_or_default(),
            link_types: i.link_types.clone(),
            first_capture: i.first_time_ns.map(|t| Timestamp(t).rfc3339_micros()),
            last_capture: i.last_time_ns.map(|t| Timestamp(t).rfc3339_micros()),
            frames: i.stats.frames,
            damaged_records: i.stats.damaged,
        })
        .collect();
    m.events = output.counts.clone();
    m.counters = counters(summary, output);
    m
}

/// Receives events and warnings from the engine on the main thread: applies
/// the policy, counts, and writes through the chosen sink.
struct Output {
    quiet: bool,
    warnings: u64,
    progress: Option<ProgressBar>,
    /// Bytes of the inputs already finished, for the progress bar.
    progress_base: u64,
    policy: Policy,
    sink: Box<dyn Sink>,
    /// How to open the sink again (SIGHUP in a live run).
    #[cfg_attr(not(feature = "live"), allow(dead_code))]
    spec: SinkSpec,
    /// Counters of sinks closed by a reopen, added to the current sink's.
    retired_counters: Vec<(&'static str, u64)>,
    counts: EventCounts,
    /// The write error that stopped writing (the run goes on counting; a
    /// live run retries and clears it when writing works again).
    write_error: Option<std::io::Error>,
    /// When writing last failed (a live run retries a second later).
    write_failed_at: Option<std::time::Instant>,
    /// Times writing the output failed (a failure that lasts counts once).
    write_errors: u64,
    /// Events not written because the output had failed (counted all the same).
    unwritten: u64,
    /// A live run's flushing, reopening and status line.
    #[cfg(feature = "live")]
    live: Option<live::LiveState>,
}

/// What the sink is and where it writes.
struct SinkSpec {
    format: Format,
    output: Option<PathBuf>,
    zone: DateZone,
    ctx: SinkContext,
    csv_raw: bool,
    /// Append to an existing output file instead of truncating it.
    append: bool,
    /// A live run: stream outputs keep what the disk refused and say so here.
    #[cfg(feature = "live")]
    health: Option<std::sync::Arc<live::OutputHealth>>,
}

impl SinkSpec {
    fn open(&self) -> Result<Box<dyn Sink>, RunError> {
        Ok(match (self.format, &self.output) {
            (Format::Imspector, Some(dir)) => sink::imspector(
                dir,
                ImspectorOptions {
                    zone: self.zone.clone(),
                    ..ImspectorOptions::default()
                },
            )
            .map_err(|e| RunError(format!("{}: {e}", dir.display())))?,
            (Format::Imspector, None) => {
                return Err(RunError("-F imspector needs -o DIR".into()));
            }
            (format, output) => {
                let w: Box<dyn Write + Send> = match output {
                    None => Box::new(std::io::stdout()),
                    Some(path) => {
                        let mut o = std::fs::OpenOptions::new();
                        if self.append {
                            o.create(true).append(true);
                        } else {
                            o.create(true).write(true).truncate(true);
                        }
                        Box::new(
                            o.open(path)
                                .map_err(|e| RunError(format!("{}: {e}", path.display())))?,
                        )
                    }
                };
                #[cfg(feature = "live")]
                let w = match &self.health {
                    Some(h) => live::SpoolingWriter::boxed(w, h.clone()),
                    None => w,
                };
                let ctx = self.ctx.clone();
                match format {
                    Format::Jsonl => sink::jsonl(w, ctx),
                    Format::Csv => sink::csv(w, ctx, self.csv_raw),
                    _ => sink::text(w, ctx),
                }
            }
        })
    }
}

impl Output {
    fn new(cli: &Cli, plan: &Plan) -> Result<Output, RunError> {
        let total: u64 = plan
            .inputs
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let show = match cli.progress {
            Progress::Never => false,
            Progress::Always => cli.interface.is_none(),
            Progress::Auto => std::io::stderr().is_terminal() && total > 64 << 20,
        };
        let progress = show.then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("valid template"),
            );
            bar
        });
        let spec = SinkSpec {
            format: plan.format,
            output: plan.output.clone(),
            zone: plan.zone.clone(),
            ctx: SinkContext {
                inputs: match &cli.interface {
                    Some(iface) => vec![format!("live:{iface}")],
                    None => plan.inputs.clone(),
                },
                raw: cli.raw,
                color: plan.output.is_none() && std::io::stdout().is_terminal(),
            },
            csv_raw: cli.csv_raw,
            // A live run is a service: a restart must not truncate its log.
            append: cli.interface.is_some(),
            #[cfg(feature = "live")]
            health: cli.interface.is_some().then(Default::default),
        };
        let sink = spec.open()?;
        Ok(Output {
            quiet: cli.quiet,
            warnings: 0,
            progress,
            progress_base: 0,
            policy: Policy::default(),
            sink,
            spec,
            retired_counters: Vec::new(),
            counts: EventCounts::default(),
            write_error: None,
            write_failed_at: None,
            write_errors: 0,
            unwritten: 0,
            #[cfg(feature = "live")]
            live: None,
        })
    }

    fn say(&self, line: String) {
        if self.quiet {
            return;
        }
        match &self.progress {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn write_failed(&mut self, e: std::io::Error) {
        self.write_errors += 1;
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            // A live run retries (run/live.rs); a file run stops writing.
            #[cfg(feature = "live")]
            let note = if self.live.is_some() {
                "; retrying every second, events meanwhile are counted as not written"
            } else {
                ""
            };
            #[cfg(not(feature = "live"))]
            let note = "";
            eprintln!("imscan: writing output: {e}{note}");
        }
        self.write_error = Some(e);
        self.write_failed_at = Some(std::time::Instant::now());
    }

    /// The error of a live output that took the event but could not write
    /// it yet (see `live::SpoolingWriter`): no more events go to it until a
    /// retry works.
    fn held_error(&self) -> std::io::Result<()> {
        #[cfg(feature = "live")]
        if let Some(h) = &self.spec.health {
            return h.check();
        }
        Ok(())
    }

    fn finish(&mut self) {
        if let Some(bar) = self.progress.take() {
            bar.finish_and_clear();
        }
        if self.write_error.is_none() {
            if let Err(e) = self.sink.finish() {
                self.write_failed(e);
            }
        }
    }
}

impl EngineOutput for Output {
    fn event(&mut self, mut ev: Event) {
        self.policy.apply(&mut ev);
        self.counts.count(&ev);
        if self.write_error.is_none() {
            if let Err(e) = self.sink.write(&ev).and_then(|()| self.held_error()) {
                self.write_failed(e);
            }
        } else {
            self.unwritten += 1;
        }
    }

    fn warning(&mut self, w: &CaptureWarning) {
        self.warnings += 1;
        self.say(format!("imscan: warning: {w}"));
    }

    fn progress(&mut self, consumed: u64) {
        if let Some(bar) = &self.progress {
            bar.set_position(self.progress_base + consumed);
        }
        #[cfg(feature = "live")]
        live::after_batch(self);
    }

    fn open_flows(&mut self, _flows: usize) {
        #[cfg(feature = "live")]
        if let Some(l) = &mut self.live {
            l.flows = _flows;
        }
    }

    fn input_done(&mut self, size: u64) {
        self.progress_base += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[cfg(not(feature = "live"))]
    #[test]
    fn interface_without_the_live_feature_says_how_to_build_and_exits_2() {
        let cli = Cli::try_parse_from(["imscan", "-i", "eth0"]).unwrap();
        let err = plan(&cli).err().expect("-i needs the feature").0;
        assert!(err.contains("--features live"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        assert_eq!(main(cli), Exit::Usage);
    }

    #[test]
    fn live_only_flags_on_files_are_usage_errors() {
        let cli = Cli::try_parse_from(["imscan", "-w", "x.pcap", "in.pcap"]).unwrap();
        let err = plan(&cli).err().expect("-w needs -i").0;
        assert!(err.contains("live capture (-i) only"), "{err}");
    }
}
