//! The run manifest, `imscan-manifest.json` next to the output: what was
//! read (each input's path, size, SHA-256, link types, capture time range),
//! with which arguments, and what came out (events per protocol and kind,
//! and the stage counters the engine collects). This module owns the types,
//! the per-event counter and the writer; the engine fills the values.
//!
//! Serialised with serde_json, pretty, keys in a fixed order: struct fields
//! in declaration order, maps in sorted order (serde_json's default map).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::event::{Event, Kind, Protocol};

/// The manifest's file name.
pub const MANIFEST_NAME: &str = "imscan-manifest.json";

/// Where the manifest goes for an output path: inside an output directory,
/// next to an output file.
pub fn manifest_path(output: &Path, output_is_dir: bool) -> PathBuf {
    if output_is_dir {
        output.join(MANIFEST_NAME)
    } else {
        match output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.join(MANIFEST_NAME),
            _ => PathBuf::from(MANIFEST_NAME),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Manifest {
    /// imscan's version (`CARGO_PKG_VERSION`).
    pub imscan_version: String,
    /// The command line, program name first.
    pub arguments: Vec<String>,
    /// Output format name (`imspector`, `jsonl`, ...).
    pub format: String,
    /// The output path as given.
    pub output: String,
    pub inputs: Vec<InputRecord>,
    /// Events written, per protocol and kind.
    pub events: EventCounts,
    /// Stage counters assembled by the engine: frames, flows, gaps, overlap
    /// conflicts, damaged records, budgets hit, dropped, ...
    pub counters: serde_json::Value,
}

impl Manifest {
    pub fn new(arguments: Vec<String>, format: &str, output: &str) -> Self {
        Manifest {
            imscan_version: env!("CARGO_PKG_VERSION").to_string(),
            arguments,
            format: format.to_string(),
            output: output.to_string(),
            inputs: Vec::new(),
            events: EventCounts::default(),
            counters: serde_json::Value::Object(serde_json::Map::new()),
        }
    }
}

/// One input capture.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InputRecord {
    /// The path as given (`-` for stdin).
    pub path: String,
    /// Bytes read (of the file as stored, before gunzip).
    pub size: u64,
    /// Lower-case hex SHA-256 of those bytes, as `sha256sum` prints it.
    pub sha256: String,
    /// Link types seen (tcpdump.org numbers), ascending, once each.
    pub link_types: Vec<u32>,
    /// RFC 3339 UTC with microseconds; null when the input had no frame.
    pub first_capture: Option<String>,
    pub last_capture: Option<String>,
    pub frames: u64,
    /// Records of the container that could not be read whole.
    pub damaged_records: u64,
}

/// Events per protocol and kind; the sinks stage calls [`EventCounts::count`]
/// once per event written. Serialised as `{"msn": {"message": 3, ...}, ...,
/// "total": n}` with every protocol and kind present, in a fixed order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventCounts {
    counts: [[u64; 4]; 6],
}

fn protocol_index(p: Protocol) -> usize {
    Protocol::ALL.iter().position(|&q| q == p).unwrap_or(0)
}

fn kind_index(k: Kind) -> usize {
    Kind::ALL.iter().position(|&q| q == k).unwrap_or(0)
}

impl EventCounts {
    pub fn count(&mut self, ev: &Event) {
        self.counts[protocol_index(ev.protocol)][kind_index(ev.kind)] += 1;
    }

    pub fn get(&self, p: Protocol, k: Kind) -> u64 {
        self.counts[protocol_index(p)][kind_index(k)]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Adds another counter (e.g. from another sink thread).
    pub fn merge(&mut self, other: &EventCounts) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }
}

struct KindCounts<'a>(&'a [u64; 4]);

impl Serialize for KindCounts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        for (k, n) in Kind::ALL.iter().zip(self.0) {
            m.serialize_entry(k.name(), n)?;
        }
        m.end()
    }
}

impl Serialize for EventCounts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(7))?;
        for (p, row) in Protocol::ALL.iter().zip(&self.counts) {
            m.serialize_entry(p.name(), &KindCounts(row))?;
        }
        m.serialize_entry("total", &self.total())?;
        m.end()
    }
}

/// Writes the manifest (pretty JSON and a final newline) to `path`.
pub fn write_manifest(path: &Path, manifest: &Manifest) -> io::Result<()> {
    let mut out = serde_json::to_vec_pretty(manifest).map_err(io::Error::other)?;
    out.push(b'\n');
    let mut f = std::fs::File::create(path)?;
    f.write_all(&out)?;
    f.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_goes_next_to_the_output() {
        assert_eq!(
            manifest_path(Path::new("out"), true),
            Path::new("out/imscan-manifest.json")
        );
        assert_eq!(
            manifest_path(Path::new("a/b.jsonl"), false),
            Path::new("a/imscan-manifest.json")
        );
        assert_eq!(
            manifest_path(Path::new("b.jsonl"), false),
            Path::new("imscan-manifest.json")
        );
    }
}
