//! Stage 8, sink: owns serialization of events (text transcript, JSON Lines,
//! CSV, the IMSpector log tree) and the run manifest. Sinks see events in
//! the merged, final order and write them as they come; they never reorder,
//! drop or change an event, and they never read the wall clock.

pub mod csv;
pub mod imspector;
pub mod jsonl;
pub mod manifest;
mod record;
pub mod text;

use std::io::{self, Write};
use std::path::Path;

use crate::event::Event;

pub use imspector::{DateZone, ImspectorOptions};
pub use manifest::{write_manifest, EventCounts, InputRecord, Manifest};
pub use record::FIELDS;

/// What every sink needs to know about the run besides the events.
#[derive(Clone, Debug, Default)]
pub struct SinkContext {
    /// Input paths as given on the command line, indexed by `Event::source`.
    pub inputs: Vec<String>,
    /// `--raw`: write `raw` (the hex of the text bytes) for every text.
    pub raw: bool,
    /// Colour in the text transcript (only when writing to a terminal).
    pub color: bool,
}

/// A writer of events.
pub trait Sink: Send {
    /// Writes one event (buffered).
    fn write(&mut self, ev: &Event) -> io::Result<()>;
    /// Flushes everything; call once after the last event.
    fn finish(&mut self) -> io::Result<()>;
    /// Writes out what is buffered, so a reader of the output sees every
    /// event written so far (a live run calls it about twice a second). The
    /// sink stays usable. Every stream sink's `finish` is such a flush.
    fn flush(&mut self) -> io::Result<()> {
        self.finish()
    }
    /// Counters for the manifest and `--stats` (name, value), e.g. how often
    /// the IMSpector writer's open-file cache had to close a file.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// Buffer size for stream outputs.
const STREAM_BUFFER: usize = 1 << 16;

/// `-F text`: one readable line per event (see [`mod@text`] for the format).
pub fn text(w: Box<dyn Write + Send>, ctx: SinkContext) -> Box<dyn Sink> {
    Box::new(text::TextSink::new(w, ctx))
}

/// `-F jsonl`: one JSON object per line, fields as [`FIELDS`].
pub fn jsonl(w: Box<dyn Write + Send>, ctx: SinkContext) -> Box<dyn Sink> {
    Box::new(jsonl::JsonlSink::new(w, ctx))
}

/// `-F csv`: a header row, then one RFC 4180 row per event. Unless `csv_raw`,
/// cells that a spreadsheet would run as a formula are defused (see [`mod@csv`]).
pub fn csv(w: Box<dyn Write + Send>, ctx: SinkContext, csv_raw: bool) -> Box<dyn Sink> {
    Box::new(csv::CsvSink::new(w, ctx, csv_raw))
}

/// `-F imspector -o DIR`: the IMSpector 0.9 log tree under `dir` (created when
/// missing).
pub fn imspector(dir: &Path, opts: ImspectorOptions) -> io::Result<Box<dyn Sink>> {
    Ok(Box::new(imspector::ImspectorSink::new(dir, opts)?))
}
