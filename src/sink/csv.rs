//! `-F csv`: a header row with the JSON Lines field names, then one row per
//! event, RFC 4180 quoting (the `csv` crate), CRLF-free: rows end with LF,
//! and a field holding line breaks is quoted.
//!
//! Rendering of the non-string JSON Lines values: `null` → empty cell,
//! booleans → `true`/`false`, arrays (`categories`, `flags`, and `frames` as
//! `first;last`) → items joined with `;`.
//!
//! Formula injection: unless `--csv-raw`, a cell that begins with `=`, `+`,
//! `-` or `@` (a spreadsheet would run it) gets one leading `'`; so does a
//! cell that already begins with `'`, so that removing one leading `'` from
//! a cell that starts with one always gives the original value back.

use std::borrow::Cow;
use std::io::{self, Write};

use crate::event::Event;
use crate::sink::record::{cells, push_epoch, Cell, TimeText, FIELDS};
use crate::sink::{Sink, SinkContext, STREAM_BUFFER};

pub struct CsvSink {
    out: ::csv::Writer<Box<dyn Write + Send>>,
    ctx: SinkContext,
    csv_raw: bool,
    header_written: bool,
    row: Vec<String>,
    times: TimeText,
}

impl CsvSink {
    pub fn new(w: Box<dyn Write + Send>, ctx: SinkContext, csv_raw: bool) -> Self {
        let out = ::csv::WriterBuilder::new()
            .buffer_capacity(STREAM_BUFFER)
            .terminator(::csv::Terminator::Any(b'\n'))
            .from_writer(w);
        CsvSink {
            out,
            ctx,
            csv_raw,
            header_written: false,
            row: Vec::with_capacity(FIELDS.len()),
            times: TimeText::default(),
        }
    }

    fn header(&mut self) -> io::Result<()> {
        if !self.header_written {
            self.header_written = true;
            self.out.write_record(FIELDS).map_err(io::Error::from)?;
        }
        Ok(())
    }
}

/// A cell defused against formula injection (see the module doc).
pub fn defuse(s: &str) -> Cow<'_, str> {
    match s.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\'') => Cow::Owned(format!("'{s}")),
        _ => Cow::Borrowed(s),
    }
}

fn render(cell: Cell<'_>, times: &mut TimeText) -> String {
    match cell {
        Cell::Null => String::new(),
        Cell::Str(s) => s.to_string(),
        Cell::Bool(b) => if b { "true" } else { "false" }.to_string(),
        Cell::U64(n) => n.to_string(),
        Cell::Time(t) => {
            let mut v = Vec::with_capacity(27);
            times.push(&mut v, t);
            String::from_utf8_lossy(&v).into_owned()
        }
        Cell::Epoch(t) => {
            let mut v = Vec::with_capacity(20);
            push_epoch(&mut v, t);
            String::from_utf8_lossy(&v).into_owned()
        }
        Cell::Addr(a) => a.to_string(),
        Cell::Flow(f) => f.to_string(),
        Cell::Hex(b) => hex::encode(b),
        Cell::List(items) => items.join(";"),
        Cell::Flags(f) => f.names().join(";"),
        Cell::Pair(a, b) => format!("{a};{b}"),
    }
}

impl Sink for CsvSink {
    fn write(&mut self, ev: &Event) -> io::Result<()> {
        self.header()?;
        self.row.clear();
        for cell in cells(ev, &self.ctx) {
            let s = render(cell, &mut self.times);
            self.row.push(if self.csv_raw {
                s
            } else {
                match defuse(&s) {
                    Cow::Borrowed(_) => s,
                    Cow::Owned(d) => d,
                }
            });
        }
        self.out.write_record(&self.row).map_err(io::Error::from)
    }

    fn finish(&mut self) -> io::Result<()> {
        // An empty run still gets its header, so the file is a valid CSV.
        self.header()?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defuses_formula_starts_and_is_reversible() {
        assert_eq!(defuse("=1+1"), "'=1+1");
        assert_eq!(defuse("+1"), "'+1");
        assert_eq!(defuse("-1"), "'-1");
        assert_eq!(defuse("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(defuse("'quoted"), "''quoted");
        assert_eq!(defuse("a=b"), "a=b");
        assert_eq!(defuse(""), "");
    }
}
