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
use sha2::{Digest, Sha256};

use crate::capture::LinkType;
use crate::event::{Event, Kind, Protocol};
use crate::time::Timestamp;

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

impl InputRecord {
    /// Fills size and hash from a finished digest.
    pub fn set_digest(&mut self, digest: InputDigest) {
        let (size, sha) = digest.finish();
        self.size = size;
        self.sha256 = sha;
    }

    /// Notes a frame: its link type and time widen the record.
    pub fn note_frame(&mut self, link: LinkType, ts: Timestamp) {
        if let Err(i) = self.link_types.binary_search(&link.0) {
            self.link_types.insert(i, link.0);
        }
        self.frames += 1;
        let t = ts.rfc3339_micros();
        // RFC 3339 UTC strings of equal width sort like the times (years 0..9999).
        if self.first_capture.as_ref().is_none_or_gt(&t) {
            self.first_capture = Some(t.clone());
        }
        if self.last_capture.as_ref().is_none_or_lt(&t) {
            self.last_capture = Some(t);
        }
    }
}

trait OptCmp {
    fn is_none_or_gt(&self, t: &str) -> bool;
    fn is_none_or_lt(&self, t: &str) -> bool;
}

impl OptCmp for Option<&String> {
    fn is_none_or_gt(&self, t: &str) -> bool {
        self.map_or(true, |s| s.as_str() > t)
    }
    fn is_none_or_lt(&self, t: &str) -> bool {
        self.map_or(true, |s| s.as_str() < t)
    }
}

/// SHA-256 and size of an input, fed with its bytes as they are read (one
/// pass, no re-reading).
#[derive(Clone, Debug, Default)]
pub struct InputDigest {
    hasher: Sha256,
    size: u64,
}

impl InputDigest {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
    }

    /// (size, lower-case hex SHA-256).
    pub fn finish(self) -> (u64, String) {
        (self.size, hex::encode(self.hasher.finalize()))
    }
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
    fn digest_matches_sha256sum() {
        // `printf 'abc' | sha256sum`
        let mut d = InputDigest::new();
        d.update(b"a");
        d.update(b"bc");
        assert_eq!(
            d.finish(),
            (
                3,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_string()
            )
        );
    }

    #[test]
    fn frames_widen_the_record() {
        let mut r = InputRecord::default();
        r.note_frame(LinkType::ETHERNET, Timestamp::from_secs_nanos(20, 0));
        r.note_frame(LinkType::RAW, Timestamp::from_secs_nanos(10, 5_000));
        r.note_frame(LinkType::ETHERNET, Timestamp::from_secs_nanos(30, 0));
        assert_eq!(r.link_types, vec![1, 101]);
        assert_eq!(r.frames, 3);
        assert_eq!(
            r.first_capture.as_deref(),
            Some("1970-01-01T00:00:10.000005Z")
        );
        assert_eq!(
            r.last_capture.as_deref(),
            Some("1970-01-01T00:00:30.000000Z")
        );
    }

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
