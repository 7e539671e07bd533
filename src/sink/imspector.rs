//! `-F imspector -o DIR`: the IMSpector 0.9 file-logging tree, byte for byte
//! (imspector-format.md §4, §5):
//!
//! ```text
//! DIR/<protocol>/<localid>/<remoteid>/<YYYY-MM-DD>
//! clientaddress,timestamp,outgoing,type,filtered,categories,eventdata\n
//! ```
//!
//! * `<protocol>` is IMSpector's directory name (`MSN`, `Yahoo`, `ICQ-AIM`,
//!   `IRC`, `Jabber`, `Gadu-Gadu`); ids are normalised as IMSpector did
//!   ([`Event::imspector_local_id`]) and then made safe by
//!   [`path_component`].
//! * The day is the capture time's date in UTC unless another zone is asked
//!   for ([`DateZone`]); a conversation crossing midnight continues in the
//!   next day's file.
//! * clientaddress: `a.b.c.d:port` (IPv6, which IMSpector never logged:
//!   `[addr]:port`); timestamp: whole capture seconds (floor), in full
//!   (IMSpector cut them to 32 bits); categories: `<n> badwords;` when bad
//!   words were counted, else empty (ACL and blocked files add no text, as
//!   in IMSpector); eventdata: the text as on the wire ([`imspector_text`]),
//!   with `<sender>: ` in front of incoming MSN, Yahoo and IRC group
//!   messages; for files `<name> <size> bytes` (an unknown part leaves its
//!   slot empty); empty for typing and webcam. It is cut at the first NUL
//!   and every LF becomes `\n`; nothing else is escaped.
//! * Files are appended in event order (existing files are extended, as
//!   IMSpector did). Lines wait in memory up to a byte budget, then go out
//!   through a bounded cache of open files ([`ImspectorSink`]); how often
//!   each bound bit is counted (`imspector_buffer_flushes`,
//!   `imspector_files_closed_early`).
//!
//! It writes nothing outside DIR: see [`path_component`].

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::event::{Event, Kind, Protocol};
use crate::sink::record::{push_addr, push_u64};
use crate::sink::Sink;
use crate::time::{civil_from_secs, Timestamp};

/// Longest directory name we create (the usual `NAME_MAX`).
pub const MAX_COMPONENT: usize = 255;
/// Hex digits of SHA-256 appended to an over-long id.
const HASH_HEX: usize = 32;
/// Room left for the kept start of an over-long id (`%%` + hash follow).
const LONG_PREFIX: usize = MAX_COMPONENT - 2 - HASH_HEX;

/// Default number of log files kept open.
pub const DEFAULT_MAX_OPEN: usize = 128;
/// Default bytes of log lines waiting in memory before they are written.
pub const DEFAULT_BUFFER_BYTES: usize = 16 << 20;

/// Turns a (normalised) id into a safe directory name, deterministically.
///
/// An id is used unchanged unless it holds something unsafe. Then:
/// 1. These bytes are written as `%XX` (upper-case hex): `%` itself, `/`,
///    `\`, NUL and all other control characters (C0, DEL and the C1 range
///    U+0080–U+009F, each UTF-8 byte escaped), and the Unicode bidi
///    controls U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069 (they
///    reorder how a path is displayed).
/// 2. In an id that is `.` or contains `..` anywhere, every `.` is written
///    `%2E` (so `.`, `..` and `a..b` never name a real directory; IMSpector
///    refused to log such ids at all, imscan keeps the events). A single
///    leading dot otherwise stays, as in IMSpector (a hidden directory).
/// 3. If the result is longer than 255 bytes, it is cut to at most 221
///    bytes (never inside an escape or a UTF-8 character) and `%%` plus the
///    first 32 hex digits of the SHA-256 of the whole id are appended.
/// 4. The empty id becomes `%` (IMSpector made it an empty path level; the
///    normalised ids written by imscan are never empty).
///
/// `%` never appears in a result except as `%XX`, `%%<hash>` or the lone
/// `%`, so different ids give different names (for over-long ids, up to a
/// 128-bit hash collision), and percent-decoding a short result gives the
/// id back. The result is never empty, `.` or `..`, and never holds `/` or
/// NUL: joined under DIR it stays one level below its parent.
pub fn path_component(id: &str) -> Cow<'_, str> {
    if id.is_empty() {
        return Cow::Borrowed("%");
    }
    let dots_unsafe = id == "." || id.contains("..");
    let unsafe_char = |c: char| {
        matches!(c, '%' | '/' | '\\')
            || c.is_control()
            || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
            || (dots_unsafe && c == '.')
    };
    if id.len() <= MAX_COMPONENT && !id.chars().any(unsafe_char) {
        return Cow::Borrowed(id);
    }
    // Encode unit by unit, remembering where each unit ends, so an
    // over-long result can be cut on a unit boundary.
    let mut out = String::with_capacity(id.len() + 16);
    let mut boundaries = Vec::with_capacity(id.len());
    for c in id.chars() {
        if unsafe_char(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
        boundaries.push(out.len());
    }
    if out.len() <= MAX_COMPONENT {
        return Cow::Owned(out);
    }
    let cut = boundaries
        .iter()
        .copied()
        .take_while(|&b| b <= LONG_PREFIX)
        .last()
        .unwrap_or(0);
    out.truncate(cut);
    let digest = Sha256::digest(id.as_bytes());
    out.push_str("%%");
    out.push_str(&hex::encode(digest)[..HASH_HEX]);
    Cow::Owned(out)
}

/// The zone whose calendar names the day files.
#[derive(Clone, Debug)]
pub enum DateZone {
    Utc,
    Zone(jiff::tz::TimeZone),
}

impl DateZone {
    /// `utc` (or `UTC`), `local` (the system zone, like IMSpector's
    /// `localtime`), a fixed offset such as `+02:00`, or an IANA zone name.
    pub fn parse(s: &str) -> Result<DateZone, String> {
        match s {
            "utc" | "UTC" => Ok(DateZone::Utc),
            "local" => jiff::tz::TimeZone::try_system()
                .map(DateZone::Zone)
                .map_err(|e| format!("cannot find the local time zone: {e}")),
            _ if s.starts_with('+') || s.starts_with('-') => {
                let off =
                    parse_offset(s).ok_or_else(|| format!("bad UTC offset {s:?} (want ±HH:MM)"))?;
                Ok(DateZone::Zone(jiff::tz::TimeZone::fixed(off)))
            }
            _ => jiff::tz::TimeZone::get(s)
                .map(DateZone::Zone)
                .map_err(|e| format!("unknown time zone {s:?}: {e}")),
        }
    }

    /// `YYYY-MM-DD` of a capture second in this zone.
    pub fn date(&self, secs: i64) -> String {
        if let DateZone::Zone(tz) = self {
            if let Ok(ts) = jiff::Timestamp::from_second(secs) {
                let d = tz.to_datetime(ts).date();
                return format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day());
            }
        }
        // UTC, or a time outside jiff's range (years ±9999).
        let (y, m, d, ..) = civil_from_secs(secs);
        format!("{y:04}-{m:02}-{d:02}")
    }
}

/// `±HH:MM` or `±HH`, at most 25:59.
fn parse_offset(s: &str) -> Option<jiff::tz::Offset> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "00"));
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if h > 25 || m > 59 {
        return None;
    }
    jiff::tz::Offset::from_seconds(sign * (h * 3600 + m * 60)).ok()
}

/// Options of the IMSpector tree writer.
#[derive(Clone, Debug)]
pub struct ImspectorOptions {
    pub zone: DateZone,
    /// Most log files kept open at once (at least 1).
    pub max_open: usize,
    /// Bytes of lines (plus bookkeeping) kept in memory before writing; 0
    /// writes every line at once.
    pub buffer_bytes: usize,
}

impl Default for ImspectorOptions {
    fn default() -> Self {
        ImspectorOptions {
            zone: DateZone::Utc,
            max_open: DEFAULT_MAX_OPEN,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
        }
    }
}

/// Remembers the day of the last second asked, so a run of events on one
/// day computes its date once.
struct DayCache {
    zone: DateZone,
    /// Seconds `[lo, hi)` known to fall on `date`.
    lo: i64,
    hi: i64,
    date: String,
}

impl DayCache {
    fn new(zone: DateZone) -> Self {
        DayCache {
            zone,
            lo: 0,
            hi: 0,
            date: String::new(),
        }
    }

    fn date(&mut self, secs: i64) -> &str {
        if !(self.lo..self.hi).contains(&secs) {
            self.date = self.zone.date(secs);
            (self.lo, self.hi) = match &self.zone {
                DateZone::Utc => {
                    let lo = secs - secs.rem_euclid(86_400);
                    (lo, lo.saturating_add(86_400))
                }
                DateZone::Zone(tz) => zone_day(tz, secs).unwrap_or((secs, secs.saturating_add(1))),
            };
        }
        &self.date
    }
}

/// The seconds `[lo, hi)` of the local day that `secs` falls on in `tz`
/// (days are 23 or 25 hours long around DST changes).
fn zone_day(tz: &jiff::tz::TimeZone, secs: i64) -> Option<(i64, i64)> {
    let z = jiff::Timestamp::from_second(secs)
        .ok()?
        .to_zoned(tz.clone());
    let start = z.start_of_day().ok()?;
    let next = z.tomorrow().ok()?.start_of_day().ok()?;
    let (lo, hi) = (start.timestamp().as_second(), next.timestamp().as_second());
    (lo <= secs && secs < hi).then_some((lo, hi))
}

/// The writer's two bounds: bytes waiting in memory, files held open.
struct OpenLog {
    file: File,
    last_use: u64,
}

/// The IMSpector tree writer. Lines wait in a per-file buffer until the
/// buffers together exceed `buffer_bytes`; then every waiting buffer is
/// appended to its file (in file-name order) through a cache of at most
/// `max_open` open files, least recently used closed first. So a capture
/// with thousands of interleaved conversations costs a few opens per file
/// per budget, not one per line, and never more than `max_open` descriptors.
pub struct ImspectorSink {
    base: PathBuf,
    days: DayCache,
    max_open: usize,
    buffer_bytes: usize,
    pending: HashMap<String, Vec<u8>>,
    pending_bytes: usize,
    open: HashMap<String, OpenLog>,
    made_dirs: HashSet<PathBuf>,
    tick: u64,
    files_opened: u64,
    closed_early: u64,
    budget_flushes: u64,
    key: String,
}

/// Directories remembered as created (bounds the memo's memory).
const MADE_DIRS_MEMO: usize = 65_536;

/// Bookkeeping bytes charged per waiting file on top of its key and lines,
/// so many tiny conversations cannot grow memory past the budget either.
const PENDING_OVERHEAD: usize = 64;

impl ImspectorSink {
    pub fn new(dir: &Path, opts: ImspectorOptions) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(ImspectorSink {
            base: dir.to_path_buf(),
            days: DayCache::new(opts.zone),
            max_open: opts.max_open.max(1),
            buffer_bytes: opts.buffer_bytes,
            pending: HashMap::new(),
            pending_bytes: 0,
            open: HashMap::new(),
            made_dirs: HashSet::new(),
            tick: 0,
            files_opened: 0,
            closed_early: 0,
            budget_flushes: 0,
            key: String::new(),
        })
    }

    /// Appends `bytes` to the log file `rel`, through the open-file cache.
    /// On an error, how many bytes were written before it.
    fn append(&mut self, rel: &str, bytes: &[u8]) -> Result<(), (usize, io::Error)> {
        self.tick += 1;
        if let Some(log) = self.open.get_mut(rel) {
            log.last_use = self.tick;
            let written = write_counted(&mut log.file, bytes);
            if written.is_err() {
                // Opened afresh at the retry (appending: no byte repeated).
                self.open.remove(rel);
            }
            return written;
        }
        if self.open.len() >= self.max_open {
            let oldest = self
                .open
                .iter()
                .min_by_key(|(_, l)| l.last_use)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.open.remove(&k);
                self.closed_early += 1;
            }
        }
        let path = self.base.join(rel);
        if let Some(parent) = path.parent() {
            if !self.made_dirs.contains(parent) {
                fs::create_dir_all(parent).map_err(|e| (0, e))?;
                // A memo, not state: forgetting it only costs a mkdir.
                if self.made_dirs.len() >= MADE_DIRS_MEMO {
                    self.made_dirs.clear();
                }
                self.made_dirs.insert(parent.to_path_buf());
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| (0, e))?;
        self.files_opened += 1;
        // A file that failed is not kept open: the retry opens it afresh.
        write_counted(&mut file, bytes)?;
        self.open.insert(
            rel.to_string(),
            OpenLog {
                file,
                last_use: self.tick,
            },
        );
        Ok(())
    }

    /// Writes every waiting buffer to its file. On an error (a full disk)
    /// what was not written keeps waiting, from the exact byte where the
    /// write stopped, so a later flush that works completes the line
    /// instead of losing or repeating it.
    fn flush_pending(&mut self) -> io::Result<()> {
        let mut waiting: Vec<(String, Vec<u8>)> = self.pending.drain().collect();
        waiting.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.pending_bytes = 0;
        let mut waiting = waiting.into_iter();
        while let Some((rel, bytes)) = waiting.next() {
            if let Err((done, e)) = self.append(&rel, &bytes) {
                self.keep_waiting(rel, bytes[done..].to_vec());
                for (rel, bytes) in waiting {
                    self.keep_waiting(rel, bytes);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn keep_waiting(&mut self, rel: String, bytes: Vec<u8>) {
        self.pending_bytes += rel.len() + PENDING_OVERHEAD + bytes.len();
        self.pending.insert(rel, bytes);
    }
}

/// `write_all` that says how far it got when it fails.
fn write_counted(file: &mut File, bytes: &[u8]) -> Result<(), (usize, io::Error)> {
    let mut done = 0;
    while done < bytes.len() {
        match file.write(&bytes[done..]) {
            Ok(0) => return Err((done, io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}

/// Appends eventdata bytes with IMSpector's rules: cut at the first NUL,
/// every LF written as backslash + `n`, nothing else touched.
fn push_eventdata(line: &mut Vec<u8>, data: &[u8]) -> bool {
    let end = memchr::memchr(0, data);
    let data = &data[..end.unwrap_or(data.len())];
    let mut rest = data;
    while let Some(i) = memchr::memchr(b'\n', rest) {
        line.extend_from_slice(&rest[..i]);
        line.extend_from_slice(b"\\n");
        rest = &rest[i + 1..];
    }
    line.extend_from_slice(rest);
    end.is_some()
}

/// The message bytes IMSpector logged: the text as carried by the protocol,
/// unconverted (imspector-format.md §9). That is `Event::raw` when the
/// decoder kept it (a legacy or guessed charset, invalid UTF-8, Yahoo
/// formatting codes), except for UTF-16 text, which IMSpector itself
/// converted to UTF-8, and for XMPP, whose `raw` is the whole stanza while
/// IMSpector logged the extracted text; otherwise the UTF-8 text.
pub fn imspector_text(ev: &Event) -> &[u8] {
    let utf16 = ev.text_encoding.is_some_and(|e| e.starts_with("utf-16"));
    let raw_is_text = !utf16 && ev.protocol != Protocol::Xmpp;
    match (&ev.raw, &ev.text) {
        (Some(raw), _) if raw_is_text => raw,
        (_, Some(text)) => text.as_bytes(),
        (_, None) => b"",
    }
}

/// One IMSpector log line for `ev`, with its final LF, appended to `line`.
pub fn render_line(line: &mut Vec<u8>, ev: &Event) {
    push_addr(line, ev.client);
    line.push(b',');
    let secs = Timestamp::secs(ev.time);
    if secs < 0 {
        line.push(b'-');
    }
    push_u64(line, secs.unsigned_abs());
    line.extend_from_slice(&[
        b',',
        b'0' + u8::from(ev.outgoing),
        b',',
        b'0' + ev.kind.imspector_type(),
        b',',
        b'0' + u8::from(ev.filtered),
        b',',
    ]);
    let hits = ev.policy.badword_hits();
    if hits > 0 {
        push_u64(line, hits as u64);
        line.extend_from_slice(b" badwords;");
    }
    line.push(b',');
    match ev.kind {
        Kind::Message => {
            let data = imspector_text(ev);
            let prefixed = ev.group
                && !ev.outgoing
                && matches!(ev.protocol, Protocol::Msn | Protocol::Yahoo | Protocol::Irc);
            match (&ev.sender, prefixed) {
                (Some(sender), true) => {
                    let mut full = Vec::with_capacity(sender.len() + 2 + data.len());
                    full.extend_from_slice(sender.as_bytes());
                    full.extend_from_slice(b": ");
                    full.extend_from_slice(data);
                    push_eventdata(line, &full);
                }
                _ => {
                    push_eventdata(line, data);
                }
            }
        }
        Kind::File => {
            let size = ev.file_size.map(|n| n.to_string()).unwrap_or_default();
            let data = format!("{} {} bytes", ev.file_name.as_deref().unwrap_or(""), size);
            push_eventdata(line, data.as_bytes());
        }
        Kind::Typing | Kind::Webcam => {}
    }
    line.push(b'\n');
}

impl Sink for ImspectorSink {
    fn write(&mut self, ev: &Event) -> io::Result<()> {
        let local = ev.imspector_local_id();
        let remote = ev.imspector_remote_id();
        let date = self.days.date(ev.time.secs());
        self.key.clear();
        self.key.push_str(ev.protocol.imspector_name());
        self.key.push('/');
        self.key.push_str(&path_component(&local));
        self.key.push('/');
        self.key.push_str(&path_component(&remote));
        self.key.push('/');
        self.key.push_str(date);
        let before;
        let buf = match self.pending.get_mut(self.key.as_str()) {
            Some(buf) => {
                before = buf.len();
                buf
            }
            None => {
                before = 0;
                self.pending_bytes += self.key.len() + PENDING_OVERHEAD;
                self.pending.entry(self.key.clone()).or_default()
            }
        };
        render_line(buf, ev);
        self.pending_bytes += buf.len() - before;
        if self.pending_bytes > self.buffer_bytes {
            self.budget_flushes += 1;
            self.flush_pending()?;
        }
        Ok(())
    }

    /// Writes every waiting line but keeps the files open (a live run's
    /// periodic flush; `finish` also closes them).
    fn flush(&mut self) -> io::Result<()> {
        self.flush_pending()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.flush_pending()?;
        // Close in a fixed order; File has no user-space buffer to lose.
        self.open.clear();
        Ok(())
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("imspector_files_opened", self.files_opened),
            ("imspector_files_closed_early", self.closed_early),
            ("imspector_buffer_flushes", self.budget_flushes),
        ]
    }
}

impl Drop for ImspectorSink {
    /// Best effort when `finish` was not called (an error elsewhere): the
    /// waiting lines are still written.
    fn drop(&mut self) {
        let _ = self.flush_pending();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_ids_are_kept_byte_for_byte() {
        for id in [
            "alice@hotmail.com",
            "#rust",
            ".hidden",
            "a b,c",
            "żółw@gg",
            "x.y.z",
            "12345",
        ] {
            assert_eq!(path_component(id), id);
        }
    }

    #[test]
    fn unsafe_ids_are_percent_encoded() {
        assert_eq!(path_component("."), "%2E");
        assert_eq!(path_component(".."), "%2E%2E");
        assert_eq!(path_component("a..b@x.com"), "a%2E%2Eb@x%2Ecom");
        assert_eq!(path_component("../../etc"), "%2E%2E%2F%2E%2E%2Fetc");
        assert_eq!(path_component("a/b"), "a%2Fb");
        assert_eq!(path_component("a\\b"), "a%5Cb");
        assert_eq!(path_component("a\0b"), "a%00b");
        assert_eq!(path_component("a\nb\u{7f}"), "a%0Ab%7F");
        assert_eq!(path_component("100%"), "100%25");
        assert_eq!(path_component("\u{202E}gpj.exe"), "%E2%80%AEgpj.exe");
        assert_eq!(path_component("\u{85}"), "%C2%85");
        assert_eq!(path_component(""), "%");
    }

    #[test]
    fn long_ids_are_cut_with_a_hash_and_stay_distinct() {
        let a = "a".repeat(300);
        let b = format!("{}b", "a".repeat(299));
        let ea = path_component(&a);
        let eb = path_component(&b);
        assert!(ea.len() <= MAX_COMPONENT && eb.len() <= MAX_COMPONENT);
        assert_ne!(ea, eb);
        assert!(ea.starts_with(&"a".repeat(LONG_PREFIX)));
        assert_eq!(&ea[LONG_PREFIX..LONG_PREFIX + 2], "%%");
        // Exactly 255 bytes is still kept.
        let c = "c".repeat(255);
        assert_eq!(path_component(&c), c);
        // The cut never splits an escape or a character.
        let d = "é/".repeat(100);
        let ed = path_component(&d);
        assert!(ed.len() <= MAX_COMPONENT);
        let kept = ed.split("%%").next().unwrap();
        assert!(kept.ends_with("%2F") || kept.ends_with('é'), "{kept}");
    }

    #[test]
    fn eventdata_escapes_only_lf_and_cuts_at_nul() {
        let mut l = Vec::new();
        push_eventdata(&mut l, b"line one\r\nline two, a\\b");
        assert_eq!(l, b"line one\r\\nline two, a\\b");
        let mut l = Vec::new();
        assert!(push_eventdata(&mut l, b"keep\0drop\n"));
        assert_eq!(l, b"keep");
    }

    #[test]
    fn dates_follow_the_zone() {
        // 2009-07-20T23:30:00Z
        let secs = 1_248_132_600;
        assert_eq!(DateZone::Utc.date(secs), "2009-07-20");
        assert_eq!(DateZone::parse("+02:00").unwrap().date(secs), "2009-07-21");
        assert_eq!(DateZone::parse("-08:00").unwrap().date(secs), "2009-07-20");
        assert!(DateZone::parse("Not/AZone").is_err());
        assert!(DateZone::parse("+99:99").is_err());
        let mut days = DayCache::new(DateZone::Utc);
        assert_eq!(days.date(secs), "2009-07-20");
        assert_eq!(days.date(secs + 1800), "2009-07-21");
        assert_eq!(days.date(secs), "2009-07-20");
        assert_eq!(days.date(-1), "1969-12-31");
        // The cached day range of a zone agrees with the zone second by
        // second around its midnight (22:00:00Z at +02:00 is secs - 5400).
        let zone = DateZone::parse("+02:00").unwrap();
        let mut days = DayCache::new(zone.clone());
        let midnight = secs - 5400;
        for s in [
            midnight - 7200,
            midnight - 1,
            midnight,
            midnight + 1,
            secs,
            midnight - 1,
        ] {
            assert_eq!(days.date(s), zone.date(s), "{s}");
        }
        assert_eq!(days.date(midnight - 1), "2009-07-20");
        assert_eq!(days.date(midnight), "2009-07-21");
    }

    #[test]
    fn a_failed_write_keeps_the_lines_for_the_next_flush() {
        // /dev/full refuses every write (ENOSPC): a day file that is a link
        // to it fails like a full disk.
        if !Path::new("/dev/full").exists() {
            eprintln!("skipping: no /dev/full");
            return;
        }
        let line = |secs: i64, text: &str| {
            let mut e = Event::new(
                Timestamp::from_secs_nanos(secs, 0),
                Protocol::Irc,
                Kind::Message,
                true,
                "10.0.0.7:1".parse().unwrap(),
                "10.0.0.1:6667".parse().unwrap(),
            );
            e.local_id = crate::event::LocalId::Known("eve".into());
            e.remote_id = "bob".into();
            e.text = Some(text.into());
            e
        };
        let tmp = tempfile::tempdir().unwrap();
        let opts = ImspectorOptions {
            buffer_bytes: 0,
            ..ImspectorOptions::default()
        };
        let mut sink = ImspectorSink::new(tmp.path(), opts).unwrap();
        let day = tmp.path().join("IRC/eve/bob/2009-07-20");
        fs::create_dir_all(day.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink("/dev/full", &day).unwrap();
        // 2009-07-20 and 2009-07-21 (UTC): the second file works.
        let err = sink.write(&line(1_248_125_400, "one")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28), "{err}"); // ENOSPC
        assert!(sink.write(&line(1_248_125_401, "two")).is_err());
        assert!(sink.write(&line(1_248_215_400, "next day")).is_err());
        assert!(sink.flush().is_err());
        // Room again: every line is written once, in order.
        fs::remove_file(&day).unwrap();
        sink.flush().unwrap();
        sink.finish().unwrap();
        assert_eq!(
            fs::read_to_string(&day).unwrap(),
            "10.0.0.7:1,1248125400,1,1,0,,one\n10.0.0.7:1,1248125401,1,1,0,,two\n"
        );
        assert_eq!(
            fs::read_to_string(tmp.path().join("IRC/eve/bob/2009-07-21")).unwrap(),
            "10.0.0.7:1,1248215400,1,1,0,,next day\n"
        );
    }

    #[test]
    fn cached_days_follow_dst_changes() {
        // Central European time without a tz database: the 25-hour day of
        // 2009-10-25 and the 23-hour day of 2009-03-29.
        let tz = jiff::tz::TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        let zone = DateZone::Zone(tz.clone());
        let mut days = DayCache::new(zone.clone());
        // 2009-10-24T22:00:00Z is local midnight (CEST); the next local
        // midnight is 2009-10-25T23:00:00Z (CET).
        let day_start = 1_256_421_600;
        for s in (day_start - 3600..day_start + 26 * 3600).step_by(1799) {
            assert_eq!(days.date(s), zone.date(s), "{s}");
        }
        assert_eq!(
            zone_day(&tz, day_start + 10),
            Some((day_start, day_start + 25 * 3600))
        );
        let spring = 1_238_281_200; // 2009-03-28T23:00:00Z, local midnight (CET)
        for s in (spring - 3600..spring + 25 * 3600).step_by(1799) {
            assert_eq!(days.date(s), zone.date(s), "{s}");
        }
    }
}
