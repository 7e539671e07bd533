//! The flat record behind JSON Lines and CSV: one list of named cells per
//! event, in the public field order. Both writers render these same cells,
//! so the two formats cannot drift apart.

use std::io::Write;
use std::net::SocketAddr;

use crate::event::{Event, EventFlags, FlowId};
use crate::sink::SinkContext;
use crate::time::{civil_from_secs, Timestamp};

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

/// One value of the record, borrowed from the event and rendered by each
/// writer straight into its output (no string per cell on the JSONL path).
pub(crate) enum Cell<'a> {
    Null,
    Str(&'a str),
    Bool(bool),
    U64(u64),
    /// RFC 3339 UTC with microseconds.
    Time(Timestamp),
    /// Epoch seconds with exactly 6 decimals (a JSON number).
    Epoch(Timestamp),
    Addr(SocketAddr),
    Flow(FlowId),
    /// Lower-case hex of bytes.
    Hex(&'a [u8]),
    /// A list of strings (`categories`).
    List(&'a [String]),
    /// Damage flag names in their fixed order.
    Flags(EventFlags),
    Pair(u64, u64),
}

fn opt_str(s: Option<&str>) -> Cell<'_> {
    s.map_or(Cell::Null, Cell::Str)
}

/// Appends epoch seconds with exactly 6 decimals, correct before 1970 too
/// (the microseconds are floored, as in the RFC 3339 `time`).
pub(crate) fn push_epoch(out: &mut Vec<u8>, ts: Timestamp) {
    let us = ts.0.div_euclid(1000);
    let sign = if us < 0 { "-" } else { "" };
    let a = us.unsigned_abs();
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{sign}{}.{:06}", a / 1_000_000, a % 1_000_000);
}

/// Appends a decimal number without going through `fmt`.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends `ip:port` (`[v6]:port` for IPv6), as `SocketAddr` displays it.
pub(crate) fn push_addr(out: &mut Vec<u8>, a: SocketAddr) {
    match a {
        SocketAddr::V4(v4) => {
            for (i, o) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_u64(out, u64::from(o));
            }
            out.push(b':');
            push_u64(out, u64::from(v4.port()));
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{a}");
        }
    }
}

/// Formats RFC 3339 times, remembering the last whole second (events come
/// in time order, so most share their second's text with the one before).
#[derive(Default)]
pub(crate) struct TimeText {
    secs: Option<i64>,
    head: Vec<u8>,
}

impl TimeText {
    pub(crate) fn push(&mut self, out: &mut Vec<u8>, ts: Timestamp) {
        let secs = ts.secs();
        if self.secs != Some(secs) {
            let (y, m, d, hh, mm, ss) = civil_from_secs(secs);
            self.head.clear();
            let _ = write!(self.head, "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}");
            self.secs = Some(secs);
        }
        out.extend_from_slice(&self.head);
        let _ = write!(out, ".{:06}Z", ts.subsec_micros());
    }
}

/// The cells of one event, in [`FIELDS`] order.
pub(crate) fn cells<'a>(ev: &'a Event, ctx: &'a SinkContext) -> [Cell<'a>; 23] {
    let raw = match (&ev.raw, &ev.text) {
        (Some(r), _) => Cell::Hex(r),
        (None, Some(t)) if ctx.raw => Cell::Hex(t.as_bytes()),
        _ => Cell::Null,
    };
    let remote = if ev.remote_id.is_empty() {
        Cell::Null
    } else {
        Cell::Str(&ev.remote_id)
    };
    [
        Cell::Time(ev.time),
        Cell::Epoch(ev.time),
        Cell::Str(ev.protocol.name()),
        Cell::Str(ev.kind.name()),
        Cell::Bool(ev.outgoing),
        opt_str(ev.local_id_str()),
        remote,
        Cell::Bool(ev.group),
        opt_str(ev.sender.as_deref()),
        Cell::Addr(ev.client),
        Cell::Addr(ev.server),
        opt_str(ev.text.as_deref()),
        opt_str(ev.text_encoding),
        raw,
        opt_str(ev.file_name.as_deref()),
        ev.file_size.map_or(Cell::Null, Cell::U64),
        Cell::Bool(ev.filtered),
        Cell::List(&ev.categories),
        opt_str(ctx.inputs.get(usize::from(ev.source)).map(String::as_str)),
        Cell::Pair(ev.frames.0, ev.frames.1),
        Cell::Flow(ev.flow),
        Cell::Flags(ev.flags),
        Cell::U64(ev.lost_bytes),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(ts: Timestamp) -> String {
        let mut v = Vec::new();
        push_epoch(&mut v, ts);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn epoch_has_six_decimals_on_both_sides_of_1970() {
        assert_eq!(
            epoch(Timestamp::from_secs_nanos(1_248_087_600, 0)),
            "1248087600.000000"
        );
        assert_eq!(
            epoch(Timestamp::from_secs_nanos(1, 123_456_789)),
            "1.123456"
        );
        assert_eq!(epoch(Timestamp(-1)), "-0.000001");
        assert_eq!(epoch(Timestamp(-1_500_000_000)), "-1.500000");
    }

    #[test]
    fn fast_numbers_and_addresses_match_display() {
        for n in [0u64, 7, 10, 1_248_087_600, u64::MAX] {
            let mut v = Vec::new();
            push_u64(&mut v, n);
            assert_eq!(String::from_utf8(v).unwrap(), n.to_string());
        }
        for a in [
            "10.0.0.5:1042",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[2001:db8::1]:5222",
            "[::ffff:1.2.3.4]:1",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            let mut v = Vec::new();
            push_addr(&mut v, a);
            assert_eq!(String::from_utf8(v).unwrap(), a.to_string());
        }
    }

    #[test]
    fn cached_time_text_matches_the_timestamp_formatter() {
        let mut t = TimeText::default();
        for ts in [
            0,
            1_999_999,
            1_000_000_000,
            1_000_000_001,
            -1,
            1_248_087_600_123_456_789,
        ] {
            let ts = Timestamp(ts);
            let mut v = Vec::new();
            t.push(&mut v, ts);
            assert_eq!(String::from_utf8(v).unwrap(), ts.rfc3339_micros());
        }
    }
}
