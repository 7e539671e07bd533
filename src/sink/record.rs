//! The flat record behind JSON Lines and CSV: one list of named cells per
//! event, in the public field order. Both writers render these same cells,
//! so the two formats cannot drift apart.

use std::borrow::Cow;

use crate::event::Event;
use crate::sink::SinkContext;
use crate::time::Timestamp;

/// The JSON Lines keys and CSV columns, in order. A public interface: keep
/// these names and this order stable.
pub const FIELDS: [&str; 23] = [
    "time",
    "epoch",
    "protocol",
    "kind",
    "outgoing",
    "local_id",
    "remote_id",
    "group",
    "sender",
    "client",
    "server",
    "text",
    "text_encoding",
    "raw",
    "file_name",
    "file_size",
    "filtered",
    "categories",
    "file",
    "frames",
    "flow",
    "flags",
    "lost_bytes",
];

/// One value of the record.
pub(crate) enum Cell<'a> {
    Null,
    Str(Cow<'a, str>),
    Bool(bool),
    U64(u64),
    /// A number already rendered (the epoch, with exactly 6 decimals).
    Number(String),
    List(Vec<Cow<'a, str>>),
    Pair(u64, u64),
}

fn opt_str(s: Option<&str>) -> Cell<'_> {
    s.map_or(Cell::Null, |s| Cell::Str(Cow::Borrowed(s)))
}

/// Epoch seconds with exactly 6 decimals, correct before 1970 too (the
/// microseconds are floored, as in the RFC 3339 `time`).
pub(crate) fn epoch_micros(ts: Timestamp) -> String {
    let us = ts.0.div_euclid(1000);
    let sign = if us < 0 { "-" } else { "" };
    let a = us.unsigned_abs();
    format!("{sign}{}.{:06}", a / 1_000_000, a % 1_000_000)
}

/// The cells of one event, in [`FIELDS`] order.
pub(crate) fn cells<'a>(ev: &'a Event, ctx: &'a SinkContext) -> [Cell<'a>; 23] {
    let raw = match (&ev.raw, &ev.text) {
        (Some(r), _) => Cell::Str(Cow::Owned(hex::encode(r))),
        (None, Some(t)) if ctx.raw => Cell::Str(Cow::Owned(hex::encode(t.as_bytes()))),
        _ => Cell::Null,
    };
    let remote = if ev.remote_id.is_empty() {
        Cell::Null
    } else {
        Cell::Str(Cow::Borrowed(&ev.remote_id))
    };
    [
        Cell::Str(Cow::Owned(ev.time.rfc3339_micros())),
        Cell::Number(epoch_micros(ev.time)),
        Cell::Str(Cow::Borrowed(ev.protocol.name())),
        Cell::Str(Cow::Borrowed(ev.kind.name())),
        Cell::Bool(ev.outgoing),
        opt_str(ev.local_id_str()),
        remote,
        Cell::Bool(ev.group),
        opt_str(ev.sender.as_deref()),
        Cell::Str(Cow::Owned(ev.client.to_string())),
        Cell::Str(Cow::Owned(ev.server.to_string())),
        opt_str(ev.text.as_deref()),
        opt_str(ev.text_encoding),
        raw,
        opt_str(ev.file_name.as_deref()),
        ev.file_size.map_or(Cell::Null, Cell::U64),
        Cell::Bool(ev.filtered),
        Cell::List(
            ev.categories
                .iter()
                .map(|c| Cow::Borrowed(c.as_str()))
                .collect(),
        ),
        opt_str(ctx.inputs.get(usize::from(ev.source)).map(String::as_str)),
        Cell::Pair(ev.frames.0, ev.frames.1),
        Cell::Str(Cow::Owned(ev.flow.to_string())),
        Cell::List(ev.flags.names().into_iter().map(Cow::Borrowed).collect()),
        Cell::U64(ev.lost_bytes),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_has_six_decimals_on_both_sides_of_1970() {
        assert_eq!(
            epoch_micros(Timestamp::from_secs_nanos(1_248_087_600, 0)),
            "1248087600.000000"
        );
        assert_eq!(
            epoch_micros(Timestamp::from_secs_nanos(1, 123_456_789)),
            "1.123456"
        );
        assert_eq!(epoch_micros(Timestamp(-1)), "-0.000001");
        assert_eq!(epoch_micros(Timestamp(-1_500_000_000)), "-1.500000");
    }
}
