//! `-F jsonl`: one JSON object per event per line, keys in [`FIELDS`] order,
//! absent values as `null`. Strings are escaped by serde_json; the line is
//! assembled here so that the key order is fixed and `epoch` keeps exactly
//! six decimals (a float would not).
//!
//! [`FIELDS`]: crate::sink::FIELDS

use std::io::{self, Write};

use crate::event::Event;
use crate::sink::record::{cells, push_addr, push_epoch, push_u64, Cell, TimeText, FIELDS};
use crate::sink::{Sink, SinkContext, STREAM_BUFFER};

pub struct JsonlSink {
    out: Box<dyn Write + Send>,
    ctx: SinkContext,
    /// Lines waiting to be written (rendered in place: no second copy).
    buf: Vec<u8>,
    times: TimeText,
}

impl JsonlSink {
    pub fn new(w: Box<dyn Write + Send>, ctx: SinkContext) -> Self {
        JsonlSink {
            out: w,
            ctx,
            buf: Vec::with_capacity(STREAM_BUFFER + 4096),
            times: TimeText::default(),
        }
    }
}

/// Appends `s` as a JSON string: as is when nothing needs escaping (the
/// common case), else through serde_json.
fn json_str(line: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        line.push(b'"');
        line.extend_from_slice(s.as_bytes());
        line.push(b'"');
    } else {
        // Serialising a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *line, s);
    }
}

/// Appends one event as a JSON object (no newline) to `line`.
pub(crate) fn render(line: &mut Vec<u8>, ev: &Event, ctx: &SinkContext, times: &mut TimeText) {
    line.push(b'{');
    for (i, (name, cell)) in FIELDS.iter().zip(cells(ev, ctx)).enumerate() {
        if i > 0 {
            line.push(b',');
        }
        line.push(b'"');
        line.extend_from_slice(name.as_bytes());
        line.extend_from_slice(b"\":");
        // Writing into a Vec cannot fail.
        match cell {
            Cell::Null => line.extend_from_slice(b"null"),
            Cell::Str(s) => json_str(line, s),
            Cell::Bool(b) => line.extend_from_slice(if b { b"true" } else { b"false" }),
            Cell::U64(n) => push_u64(line, n),
            Cell::Time(t) => {
                line.push(b'"');
                times.push(line, t);
                line.push(b'"');
            }
            Cell::Epoch(t) => push_epoch(line, t),
            Cell::Addr(a) => {
                line.push(b'"');
                push_addr(line, a);
                line.push(b'"');
            }
            Cell::Flow(f) => {
                let _ = write!(line, "\"{f}\"");
            }
            Cell::Hex(b) => {
                line.push(b'"');
                line.extend_from_slice(hex::encode(b).as_bytes());
                line.push(b'"');
            }
            Cell::List(items) => {
                line.push(b'[');
                for (j, s) in items.iter().enumerate() {
                    if j > 0 {
                        line.push(b',');
                    }
                    json_str(line, s);
                }
                line.push(b']');
            }
            Cell::Flags(f) => {
                line.push(b'[');
                for (j, s) in f.iter_names().enumerate() {
                    if j > 0 {
                        line.push(b',');
                    }
                    json_str(line, s);
                }
                line.push(b']');
            }
            Cell::Pair(a, b) => {
                line.push(b'[');
                push_u64(line, a);
                line.push(b',');
                push_u64(line, b);
                line.push(b']');
            }
        }
    }
    line.push(b'}');
}

impl Sink for JsonlSink {
    fn write(&mut self, ev: &Event) -> io::Result<()> {
        render(&mut self.buf, ev, &self.ctx, &mut self.times);
        self.buf.push(b'\n');
        if self.buf.len() >= STREAM_BUFFER {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()
    }
}

impl Drop for JsonlSink {
    /// Best effort when `finish` was not called: the waiting lines are
    /// still written.
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let _ = self.out.write_all(&self.buf);
            let _ = self.out.flush();
        }
    }
}
