//! Truth files of real captures (`fixtures/real/*.truth.tsv`, made
//! independently of imscan, see PROVENANCE): reading them, and matching
//! events against their rows. Test-only code; it panics on a malformed file.

use std::net::SocketAddr;

use imscan::event::{Event, Kind};
use imscan::time::Timestamp;

/// One row of a `*.truth.tsv` file.
#[derive(Clone, Debug)]
pub struct TruthRow {
    pub frame: u64,
    /// Epoch seconds with 6 decimals, as written in the file.
    pub timestamp: String,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub event: String,
    pub sender: String,
    pub recipient: String,
    pub text: Vec<u8>,
    /// Set by a test when the tcp stage delivers this row's bytes only at a
    /// later frame (data waiting behind a hole is released when the hole is
    /// given up): the event's last frame is then that frame, its first frame
    /// still the one that carried the bytes.
    pub released_at: Option<u64>,
}

/// The rows of `<stem>.truth.tsv` (`stem` from the crate root).
pub fn truth_of(stem: &str) -> Vec<TruthRow> {
    read_truth(&super::golden::read_text(&format!("{stem}.truth.tsv")))
}

/// Undo the truth files' escaping (`\n`, `\t`, `\\`, `\xNN`).
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                b'x' if i + 3 < b.len() => {
                    out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap());
                    i += 4;
                    continue;
                }
                c => {
                    out.push(b'\\');
                    out.push(c);
                }
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

pub fn read_truth(tsv: &str) -> Vec<TruthRow> {
    tsv.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.splitn(8, '\t').collect();
            TruthRow {
                frame: f[0].parse().unwrap(),
                timestamp: f[1].to_owned(),
                src: f[2].parse().unwrap(),
                dst: f[3].parse().unwrap(),
                event: f[4].to_owned(),
                sender: f[5].to_owned(),
                recipient: f[6].to_owned(),
                text: unescape(f.get(7).copied().unwrap_or("")),
                released_at: None,
            }
        })
        .collect()
}

/// Does `e` carry `row`'s text? The decoded text, or the original bytes
/// (CTCP ACTION and DCC offers keep their wire form in `raw`), or the file
/// name of a file offer.
fn same_text(e: &Event, row: &TruthRow) -> bool {
    let text = e.text.as_deref().map(str::as_bytes);
    text == Some(&row.text[..])
        || e.raw.as_deref() == Some(&row.text[..])
        || (e.kind == Kind::File
            && e.file_name.as_deref().map(str::as_bytes) == Some(&row.text[..]))
        || e.kind == Kind::Typing
}

fn bare(j: &str) -> &str {
    j.split('/').next().unwrap_or(j)
}

/// Check every truth row of the `message`, `file` and `typing` kinds against
/// `events`: same frame, direction, kind, text and ids. Returns the rows
/// that no event matched and the events no row matched.
pub fn compare(events: &[Event], rows: &[TruthRow]) -> (Vec<TruthRow>, Vec<Event>) {
    let mut free = Matching::new(events);
    let mut missing = Vec::new();
    for row in rows {
        let kind = match row.event.as_str() {
            "message" => Kind::Message,
            "file" => Kind::File,
            "typing" => Kind::Typing,
            _ => continue,
        };
        let found = free.take(|e| {
            let at_frame = match row.released_at {
                Some(f) => e.frames == (row.frame, f),
                None => e.frames.1 == row.frame && e.time.epoch_micros_string() == row.timestamp,
            };
            if !at_frame || e.kind != kind || !same_text(e, row) {
                return false;
            }
            let c2s = e.client == row.src && e.server == row.dst;
            let s2c = e.client == row.dst && e.server == row.src;
            if !(c2s || s2c) {
                return false;
            }
            let sender_ok = match &e.sender {
                Some(s) => *s == row.sender || (row.sender == "?" && s.is_empty()),
                None => row.sender == "?",
            };
            let recipient_ok = if e.group || c2s || e.outgoing {
                bare(&e.remote_id) == bare(&row.recipient)
            } else {
                e.local_id_str().map(bare) == Some(bare(&row.recipient))
            };
            sender_ok && recipient_ok
        });
        if found.is_none() {
            missing.push(row.clone());
        }
    }
    let extra = free.untaken().cloned().collect();
    (missing, extra)
}

/// Truth rows that are the server's copy of a line the same connection sent
/// (IRCv3 echo-message, MUC reflection): imscan drops those copies.
pub fn is_echo(row: &TruthRow, rows: &[TruthRow]) -> bool {
    rows.iter().any(|o| {
        o.src == row.dst && o.dst == row.src && o.frame < row.frame && o.text == row.text && {
            let r = bare(&o.recipient);
            r == bare(&row.recipient)
        }
    })
}

/// RFC 3339 time (as JSON Lines write it) of a truth row's epoch
/// (`secs.micros`).
pub fn truth_time(epoch: &str) -> String {
    let (s, us) = epoch.split_once('.').unwrap();
    Timestamp::from_secs_nanos(s.parse().unwrap(), us.parse::<u32>().unwrap() * 1000)
        .rfc3339_micros()
}

/// An event as a truth-file row (the format generated fixtures keep their
/// decoded events in, `<case>.expected.tsv`).
pub fn truth_row(e: &Event) -> String {
    let local = e.local_id_str().unwrap_or("?");
    let (src, dst, sender, recipient) = if e.outgoing {
        (
            e.client,
            e.server,
            e.sender.as_deref().unwrap_or(local),
            e.remote_id.as_str(),
        )
    } else {
        (
            e.server,
            e.client,
            e.sender.as_deref().unwrap_or(e.remote_id.as_str()),
            local,
        )
    };
    let recipient = if e.group {
        e.remote_id.as_str()
    } else {
        recipient
    };
    let text = match e.kind {
        imscan::event::Kind::File => format!(
            "{} {} bytes",
            e.file_name.as_deref().unwrap_or(""),
            e.file_size.map(|n| n.to_string()).unwrap_or_default()
        ),
        _ => e.text.clone().unwrap_or_default(),
    };
    let text = text
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\t', "\\t");
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        e.frames.1,
        e.time.epoch_micros_string(),
        src,
        dst,
        e.kind.name(),
        sender,
        recipient,
        text
    )
}

pub const TRUTH_HEADER: &str = "frame\ttimestamp\tsrc\tdst\tevent\tsender\trecipient\ttext";

/// Items (events, JSON lines) that truth rows have not matched yet: each
/// row takes the first free item it matches, so no item serves two rows.
pub struct Matching<'a, T> {
    items: &'a [T],
    used: Vec<bool>,
}

impl<'a, T> Matching<'a, T> {
    pub fn new(items: &'a [T]) -> Matching<'a, T> {
        Matching {
            items,
            used: vec![false; items.len()],
        }
    }

    /// Take the first free item `matches` accepts; its index.
    pub fn take(&mut self, matches: impl Fn(&T) -> bool) -> Option<usize> {
        let i = (0..self.items.len()).find(|&i| !self.used[i] && matches(&self.items[i]))?;
        self.used[i] = true;
        Some(i)
    }

    /// Every item was taken by some row.
    pub fn all_taken(&self) -> bool {
        self.used.iter().all(|u| *u)
    }

    /// The items no row took.
    pub fn untaken(&self) -> impl Iterator<Item = &'a T> + '_ {
        self.items
            .iter()
            .zip(&self.used)
            .filter(|(_, u)| !**u)
            .map(|(item, _)| item)
    }
}
