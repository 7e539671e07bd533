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
use crate::net::Selection;
use crate::policy::Policy;
use crate::proto::ProtoConfig;
use crate::sink::{
    self, write_manifest, DateZone, EventCounts, ImspectorOptions, InputRecord, Manifest, Sink,
    SinkContext,
};
use crate::tcp::TcpConfig;
use crate::time::Timestamp;

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
    if inputs.is_empty() {
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
        proto,
        streams_dir: cli.streams.clone(),
        hash_inputs: cli.output.is_some(),
        ..EngineConfig::default()
    };
    if let Some(t) = cli.threads {
        engine.threads = usize::from(t);
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
    let summary = engine::run(&plan.inputs, &plan.engine, &mut output)
        .map_err(|e| RunError(e.to_string()))?;
    output.finish();
    if let Some(path) = &plan.output {
        let is_dir = plan.format == Format::Imspector;
        let manifest = manifest(&plan, &summary, &output);
        let at = sink::manifest::manifest_path(path, is_dir);
        if let Err(e) = write_manifest(&at, &manifest) {
            output.write_failed(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", at.display()),
            ));
        }
    }
    let reasons = damage_reasons(&summary.stats);
    let damaged = !reasons.is_empty() || output.warnings > 0;
    if let Some(e) = &output.write_error {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Ok(Exit::Damaged);
        }
    }
    if cli.stats {
        let json = serde_json::to_string_pretty(&stats_json(&summary, &output))
            .expect("counters serialise");
        eprintln!("{json}");
    }
    if damaged {
        if !cli.quiet {
            let mut why = reasons.join(", ");
            if why.is_empty() {
                why = format!("{} warnings", output.warnings);
            }
            eprintln!("imscan: processed with damage: {why} (see --stats)");
        }
        Ok(Exit::Damaged)
    } else {
        Ok(Exit::Ok)
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
        let sink: serde_json::Map<String, serde_json::Value> = output
            .sink
            .counters()
            .into_iter()
            .map(|(k, n)| (k.to_string(), n.into()))
            .collect();
        map.insert("sink".into(), sink.into());
        if let Some(kib) = peak_rss_kib() {
            map.insert("peak_rss_kib".into(), kib.into());
        }
        map.insert("warnings".into(), output.warnings.into());
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
    counts: EventCounts,
    /// The first write error; writing stops there (the run goes on counting).
    write_error: Option<std::io::Error>,
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
            Progress::Always => true,
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
        let ctx = SinkContext {
            inputs: plan.inputs.clone(),
            raw: cli.raw,
            color: plan.output.is_none() && std::io::stdout().is_terminal(),
        };
        let sink = match (plan.format, &plan.output) {
            (Format::Imspector, Some(dir)) => sink::imspector(
                dir,
                ImspectorOptions {
                    zone: plan.zone.clone(),
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
                    Some(path) => Box::new(
                        std::fs::File::create(path)
                            .map_err(|e| RunError(format!("{}: {e}", path.display())))?,
                    ),
                };
                match format {
                    Format::Jsonl => sink::jsonl(w, ctx),
                    Format::Csv => sink::csv(w, ctx, cli.csv_raw),
                    _ => sink::text(w, ctx),
                }
            }
        };
        Ok(Output {
            quiet: cli.quiet,
            warnings: 0,
            progress,
            progress_base: 0,
            policy: Policy::default(),
            sink,
            counts: EventCounts::default(),
            write_error: None,
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
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("imscan: writing output: {e}");
        }
        self.write_error = Some(e);
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
            if let Err(e) = self.sink.write(&ev) {
                self.write_failed(e);
            }
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
    }

    fn input_done(&mut self, size: u64) {
        self.progress_base += size;
    }
}
