//! The command line (clap derive): the one flag table that drives `--help`,
//! the man page (`man/imscan.1`) and shell completions. It only describes
//! flags; turning them into stage configurations happens in `run`.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::event::Protocol;

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    Protocol::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Protocol::ALL.iter().map(|p| p.name()).collect();
        format!("unknown protocol `{s}` (one of {})", names.join(", "))
    })
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A readable transcript, one event per line.
    Text,
    /// JSON Lines: one object per event (a stable, public interface).
    Jsonl,
    /// Flat CSV with a header row and every JSON Lines field.
    Csv,
    /// The IMSpector log tree: DIR/<Protocol>/<local>/<remote>/<date>.
    Imspector,
}

/// When to show a progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// On a terminal, for large inputs.
    Auto,
    Always,
    Never,
}

/// Passive forensic analyzer for instant-messaging traffic.
///
/// imscan reads pcap and pcapng captures (plain or gzip-compressed, or standard
/// input as `-`), reassembles TCP streams, decodes MSN, Yahoo, AIM/ICQ, IRC,
/// XMPP and Gadu-Gadu by content, and writes a transcript, JSON Lines, CSV or
/// an IMSpector log tree. It never talks to the network it watches.
///
/// Exit status: 0 when every input was processed cleanly; 1 when inputs were
/// processed but some were damaged or something was dropped (said on stderr
/// and in the manifest); 2 on a usage error or when nothing could be read.
#[derive(Debug, Parser)]
#[command(name = "imscan", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    /// Capture files to read, in order (pcap, pcapng, optionally gzip-compressed; `-` is standard input).
    #[arg(value_name = "FILE")]
    pub files: Vec<String>,

    /// Read this capture file (may be repeated; read after the positional files).
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    pub read: Vec<String>,

    /// Write output here: a file for text/jsonl/csv (`-` is standard output), a directory for the IMSpector tree.
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Output format [default: text; imspector when -o names a directory].
    #[arg(short = 'F', long = "format", value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Worker threads [default: all cores]. Output is identical at any count.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// Print a JSON summary of all counters to standard error at the end.
    #[arg(long)]
    pub stats: bool,

    /// Print no warnings, only errors.
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Show a progress bar on standard error.
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    pub progress: Progress,

    /// Only traffic to or from this address (repeatable; several are or-ed).
    #[arg(long = "host", value_name = "ADDR")]
    pub hosts: Vec<String>,

    /// Only traffic to or from this network, e.g. 10.0.0.0/8 or 2001:db8::/32 (repeatable; or-ed).
    #[arg(long = "net", value_name = "CIDR")]
    pub nets: Vec<String>,

    /// Only traffic with this port on either side (repeatable; or-ed). Different kinds are and-ed.
    #[arg(long = "port", value_name = "N")]
    pub ports: Vec<u16>,

    /// Write each TCP flow's two directions as files in DIR, with DIR/streams.jsonl listing flows and gaps.
    #[arg(long, value_name = "DIR")]
    pub streams: Option<PathBuf>,

    /// Write files carried by file-transfer connections (AIM OFT) into DIR, named safely; the event gives their SHA-256.
    #[arg(long, value_name = "DIR")]
    pub carve: Option<PathBuf>,

    /// Decode only these protocols (comma-separated: msn, yahoo, oscar, irc, xmpp, gadugadu).
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_protocol)]
    pub protocols: Vec<Protocol>,

    /// Detect protocols by port only (IMSpector's classic ports), not by content.
    #[arg(long)]
    pub ports_only: bool,

    /// Keep the original bytes of every text in the `raw` field (JSON Lines, CSV).
    #[arg(long)]
    pub raw: bool,

    /// Flag events containing words from FILE (IMSpector badwords syntax).
    #[arg(long, value_name = "FILE")]
    pub badwords: Option<PathBuf>,

    /// With --badwords: mark an event filtered when it has at least N hits (IMSpector's badwords_block_count; 0 never).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub block_count: u32,

    /// Flag events that IMSpector's ACL in FILE would have denied.
    #[arg(long, value_name = "FILE")]
    pub acl: Option<PathBuf>,

    /// Flag every file transfer as IMSpector's block_files would have.
    #[arg(long)]
    pub block_files: bool,

    /// Time zone of the IMSpector tree's date files: UTC, `local`, or an IANA name such as Europe/Warsaw.
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    pub tz: String,

    /// Write CSV cells as they are (no `'` before cells starting with = + - @).
    #[arg(long)]
    pub csv_raw: bool,

    /// Most concurrent TCP flows; past it the longest idle flow is flushed and evicted.
    #[arg(long, value_name = "N", default_value_t = 262_144)]
    pub max_flows: usize,

    /// Most out-of-order bytes buffered across all flows (MiB).
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    pub max_buffer_mib: usize,

    /// Most out-of-order bytes buffered per flow direction (KiB).
    #[arg(long, value_name = "KIB", default_value_t = 1024)]
    pub max_ooo_kib: usize,

    /// Capture-time seconds a hole in a stream may stay open before it is reported as a gap.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub gap_timeout: f64,

    /// Capture-time seconds without a segment after which a flow is closed.
    #[arg(long, value_name = "SECS", default_value_t = 1800.0)]
    pub idle_timeout: f64,

    /// Capture live from this network interface (`any` for all) until SIGINT/SIGTERM; needs a build with `--features live`.
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub interface: Option<String>,

    /// Only packets matching this BPF expression (compiled by libpcap), e.g. `tcp port 6667`; live, and for files in a build with `--features live`.
    #[arg(short = 'f', long = "filter", value_name = "EXPR")]
    pub filter: Option<String>,

    /// Live: bytes captured per packet.
    #[arg(long, value_name = "BYTES", default_value_t = 262_144, value_parser = clap::value_parser!(u32).range(64..=262_144))]
    pub snaplen: u32,

    /// Live: the kernel's capture ring (MiB); a bigger ring rides out longer bursts.
    #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=2047))]
    pub buffer_size: u32,

    /// Live: do not put the interface into promiscuous mode (a mirror port usually needs it).
    #[arg(long)]
    pub no_promisc: bool,

    /// Live: also write every captured packet to this pcap file (evidence as seen).
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,

    /// Live, with -w: start a new file (FILE.1, FILE.2, ...) when the current one would pass this size (MiB; 0 never).
    #[arg(long, value_name = "MIB", default_value_t = 0)]
    pub rotate_size: u64,

    /// Live: print a one-line status (pkts/s, MB/s, flows, events, drops) to standard error every SECS seconds.
    #[arg(long, value_name = "SECS")]
    pub status_interval: Option<f64>,

    /// Print a shell completion script and exit.
    #[arg(long, value_name = "SHELL", value_enum)]
    pub completions: Option<clap_complete::Shell>,
}

impl Cli {
    /// All inputs in the order they are read: positional files, then `-r` files.
    pub fn inputs(&self) -> Vec<String> {
        self.files.iter().chain(self.read.iter()).cloned().collect()
    }
}

/// The clap command, for the man page and completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Render the man page (roff) from the flag table.
pub fn man_page() -> Vec<u8> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command())
        .render(&mut out)
        .expect("writing to a Vec cannot fail");
    out
}

/// The flag table as Markdown (for the README), from the same definitions as
/// `--help` and the man page.
pub fn flag_table_markdown() -> String {
    let cmd = command();
    let mut out = String::from("| flag | meaning |\n|---|---|\n");
    for arg in cmd.get_arguments() {
        if arg.is_hide_set() {
            continue;
        }
        let mut names = Vec::new();
        if let Some(s) = arg.get_short() {
            names.push(format!("-{s}"));
        }
        if let Some(l) = arg.get_long() {
            names.push(format!("--{l}"));
        }
        let value = arg
            .get_value_names()
            .map(|v| v.iter().map(|n| format!(" {n}")).collect::<String>())
            .unwrap_or_default();
        let flag = if names.is_empty() {
            value.trim().to_string()
        } else if arg.get_action().takes_values() {
            format!("{}{value}", names.join(", "))
        } else {
            names.join(", ")
        };
        let mut help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if !defaults.is_empty() && !arg.is_hide_default_value_set() {
            help.push_str(&format!(" [default: {}]", defaults.join(",")));
        }
        let possible: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|p| !p.is_hide_set())
            .map(|p| p.get_name().to_string())
            .collect();
        if arg.get_action().takes_values() && !possible.is_empty() && possible.len() <= 12 {
            help.push_str(&format!(" (one of: {})", possible.join(", ")));
        }
        out.push_str(&format!("| `{}` | {} |\n", flag, help.replace('|', "\\|")));
    }
    out.push_str("| `-h, --help` | Print help (`--help` for the long form) |\n");
    out.push_str("| `-V, --version` | Print the version |\n");
    out
}

/// Write a completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    clap_complete::generate(shell, &mut command(), "imscan", out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_table_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn inputs_keep_order() {
        let cli = Cli::try_parse_from(["imscan", "a.pcap", "b.pcap", "-r", "c.pcap"]).unwrap();
        assert_eq!(cli.inputs(), ["a.pcap", "b.pcap", "c.pcap"]);
    }

    #[test]
    fn threads_zero_is_rejected() {
        assert!(Cli::try_parse_from(["imscan", "--threads", "0", "x"]).is_err());
    }
}
