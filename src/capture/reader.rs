//! The front door of the capture stage: opens an input (regular file, gzip,
//! standard input or any `Read`), recognises the container by its magic bytes,
//! and drives the container parser over a memory map (zero copy) or a bounded
//! stream buffer, handing out batches of frames. It owns the input's SHA-256,
//! its counters and its summary; it never interprets frame contents.

use std::fs::File;
use std::io::{self, Chain, Cursor, Read};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::container::{CaptureStats, Ledger, Step, MAX_BLOCK_LEN};
use super::damage::{CaptureError, CaptureWarning, Damage, Recovery};
use super::pcap::{is_pcap_magic, PcapParser};
use super::pcapng::{PcapNgParser, SHB};
use super::{source, Batch, BatchData, FrameMeta, SourceId};
use crate::time::Timestamp;

/// A stream window's starting size; it grows (up to the largest block) only
/// as needed.
const STREAM_CHUNK: usize = 256 << 10;
/// The most a stream window ever holds: the largest block plus slack for the
/// parsers' look-ahead (the header after it).
const STREAM_WINDOW_MAX: usize = MAX_BLOCK_LEN as usize + 64;

/// Options for reading one input.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOptions {
    /// Compute the SHA-256 of the input as given (compressed bytes for gzip)
    /// while reading it, for the run manifest.
    pub hash: bool,
}

/// What one input was, once read: for the run manifest and `--stats`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct InputSummary {
    /// The path as the user gave it (`-` for standard input).
    pub path: String,
    /// `pcap` or `pcapng`.
    pub format: String,
    /// The input was gzip-compressed.
    pub gzip: bool,
    /// Bytes of the input as given: the file size, or the bytes read from a
    /// stream.
    pub size: Option<u64>,
    /// Lower-case hex SHA-256 of the input as given, when hashing was asked for
    /// (what `sha256sum` prints).
    pub sha256: Option<String>,
    /// LINKTYPE_* values of the delivered frames, ascending.
    pub link_types: Vec<u32>,
    /// Earliest and latest frame time, nanoseconds since the epoch (as
    /// capinfos reports first and last packet time).
    pub first_time_ns: Option<i64>,
    pub last_time_ns: Option<i64>,
    /// Frames and damage counters.
    pub stats: CaptureStats,
}

/// Counts (and optionally hashes) every byte read from the raw input.
struct Counted {
    inner: Box<dyn Read + Send>,
    hasher: Option<Sha256>,
    count: u64,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let got = buf.get(..n).unwrap_or(&[]);
        if let Some(h) = self.hasher.as_mut() {
            h.update(got);
        }
        self.count += got.len() as u64;
        Ok(n)
    }
}

/// A sequential input: the raw bytes, or their gzip decompression (the bytes
/// already read to find the magic are replayed first).
enum Stream {
    Plain(Counted),
    Gzip(Box<MultiGzDecoder<Chain<Cursor<Vec<u8>>, Counted>>>),
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(c) => c.read(buf),
            Stream::Gzip(g) => g.read(buf),
        }
    }

    fn counted(&self) -> &Counted {
        match self {
            Stream::Plain(c) => c,
            Stream::Gzip(g) => g.get_ref().get_ref().1,
        }
    }

    fn into_counted(self) -> Counted {
        match self {
            Stream::Plain(c) => c,
            Stream::Gzip(g) => g.into_inner().into_inner().1,
        }
    }
}

/// A bounded window over a stream: `buf[start..end]` begins at stream
/// offset `base`.
struct StreamWindow {
    stream: Stream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    base: u64,
    eof: bool,
}

impl StreamWindow {
    fn new(stream: Stream) -> Self {
        StreamWindow {
            stream,
            buf: vec![0; STREAM_CHUNK],
            start: 0,
            end: 0,
            base: 0,
            eof: false,
        }
    }

    fn window(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or(&[])
    }

    fn advance(&mut self, n: usize) {
        let n = n.min(self.end - self.start);
        self.start += n;
        self.base += n as u64;
    }

    /// Reads until the window holds `need` bytes or the stream ends. `need` is
    /// bounded by the parsers (a maximum block plus a header).
    fn fill(&mut self, need: usize) -> io::Result<()> {
        if self.end - self.start >= need || self.eof {
            return Ok(());
        }
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        while self.end < need {
            if self.end == self.buf.len() {
                // Grow only as bytes actually arrive: a hostile length asks
                // for up to the largest block, a short stream never gets it.
                let grown = (self.buf.len() * 2).clamp(self.end + 1, need.max(self.end + 1));
                self.buf.resize(grown, 0);
            }
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.eof = true;
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

enum Input {
    Mapped {
        map: Arc<memmap2::Mmap>,
        pos: usize,
        hashed: usize,
        hasher: Option<Sha256>,
        /// The map is warmed (each cache line touched) up to here.
        warmed: usize,
        /// Pages before this offset were released from the resident set.
        released: usize,
        /// Where the last two batches began, the older first.
        recent_starts: [usize; 2],
    },
    Stream(Box<StreamWindow>),
}

/// How far ahead of the parser the map is warmed, and in what steps.
const WARM_AHEAD: usize = 512 << 10;
const WARM_STEP: usize = 128 << 10;

/// Mapped pages are released once no batch in flight can still read them:
/// a caller asking for the next batch holds at most the two before it (the
/// engine: one being processed, one queued), so every page before the start
/// of the batch two back is done with. Releasing one still in use would only
/// cost a page fault that reads it back; keeping pages a lagging batch
/// faulted back in would let a long input's pages pile up (about a fifth of
/// a 1 GiB capture at two threads when they were kept a fixed 32 MiB behind
/// the reader, while three ~12 MB batches were in flight). They go in steps
/// of at least this much, one `madvise` each.
const RELEASE_STEP: usize = 8 << 20;

/// Touches one byte per cache line of `map[from..to]` and returns where it
/// stopped. Record headers sit at unpredictable strides, so the CPU cannot
/// prefetch them and each one would be a full memory stall; independent loads
/// running ahead let the memory system fetch many lines at once (a safe
/// stand-in for prefetch instructions, which would need `unsafe`).
fn warm(map: &[u8], from: usize, to: usize) -> usize {
    let to = to.min(map.len());
    let mut acc = 0u8;
    if let Some(range) = map.get(from..to) {
        for line in range.chunks(64) {
            acc ^= line[0];
        }
    }
    std::hint::black_box(acc);
    to.max(from)
}

enum Container {
    Pcap(PcapParser),
    PcapNg(PcapNgParser),
}

impl Container {
    /// Recognises the container by its first bytes.
    fn detect(first: &[u8]) -> Option<(Container, &'static str)> {
        let magic = u32::from_le_bytes(first.get(..4)?.try_into().ok()?);
        if is_pcap_magic(magic) {
            Some((Container::Pcap(PcapParser::new()), "pcap"))
        } else if magic == SHB {
            Some((Container::PcapNg(PcapNgParser::new()), "pcapng"))
        } else {
            None
        }
    }

    fn step(&mut self, win: &[u8], base: u64, eof: bool, ledger: &mut Ledger) -> Step {
        match self {
            Container::Pcap(p) => p.step(win, base, eof, ledger),
            Container::PcapNg(p) => p.step(win, base, eof, ledger),
        }
    }
}

fn is_gzip(first: &[u8]) -> bool {
    first.starts_with(&[0x1f, 0x8b])
}

/// Reads the frames of one input, batch by batch.
pub struct CaptureReader {
    path: String,
    source: SourceId,
    input: Input,
    container: Container,
    format: &'static str,
    gzip: bool,
    size: Option<u64>,
    ledger: Ledger,
    done: bool,
    link_types: Vec<u32>,
    last_link: Option<u32>,
    first_ts: Option<Timestamp>,
    last_ts: Option<Timestamp>,
}

impl CaptureReader {
    /// Opens `path` as the user gave it; `-` is standard input. Regular files
    /// are memory-mapped unless gzip-compressed; everything else is read as a
    /// stream.
    pub fn open(
        path: &str,
        source: SourceId,
        opts: ReadOptions,
    ) -> Result<CaptureReader, CaptureError> {
        if path == "-" {
            return Self::open_reader(io::stdin(), path, source, opts);
        }
        let open_err = |err| CaptureError::Open {
            file: path.to_owned(),
            err,
        };
        let file = File::open(path).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        if !meta.is_file() {
            if meta.is_dir() {
                return Err(open_err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "is a directory",
                )));
            }
            return Self::open_reader(file, path, source, opts);
        }
        let size = meta.len();
        if size == 0 {
            return Err(CaptureError::Empty {
                file: path.to_owned(),
                gzip: false,
            });
        }
        let map = source::map_file(&file).map_err(open_err)?;
        if is_gzip(&map) {
            drop(map);
            let mut reader = Self::open_reader(file, path, source, opts)?;
            reader.size = Some(size);
            reader.ledger.stats.total_bytes = Some(size);
            return Ok(reader);
        }
        let Some((container, format)) = Container::detect(&map) else {
            return Err(CaptureError::NotCapture {
                file: path.to_owned(),
                first: map.iter().take(4).copied().collect(),
                gzip: false,
            });
        };
        let mut reader = Self::new(
            path,
            source,
            Input::Mapped {
                map: Arc::new(map),
                pos: 0,
                hashed: 0,
                hasher: opts.hash.then(Sha256::new),
                warmed: 0,
                released: 0,
                recent_starts: [0; 2],
            },
            container,
            format,
        );
        reader.size = Some(size);
        reader.ledger.stats.total_bytes = Some(size);
        Ok(reader)
    }

    /// Reads a capture from any byte stream (standard input, a pipe, a
    /// socket, a test buffer) named `name` in messages. Gzip is recognised by
    /// its magic. Memory use is bounded by the largest record, not the stream.
    pub fn open_reader<R: Read + Send + 'static>(
        reader: R,
        name: &str,
        source: SourceId,
        opts: ReadOptions,
    ) -> Result<CaptureReader, CaptureError> {
        let read_err = |err| CaptureError::Read {
            file: name.to_owned(),
            err,
        };
        let counted = Counted {
            inner: Box::new(reader),
            hasher: opts.hash.then(Sha256::new),
            count: 0,
        };
        let mut window = StreamWindow::new(Stream::Plain(counted));
        window.fill(4).map_err(read_err)?;
        let mut gzip = false;
        if is_gzip(window.window()) {
            gzip = true;
            let prefix = window.window().to_vec();
            let StreamWindow { stream, .. } = window;
            let counted = stream.into_counted();
            let decoder = MultiGzDecoder::new(Cursor::new(prefix).chain(counted));
            window = StreamWindow::new(Stream::Gzip(Box::new(decoder)));
            window.fill(4).map_err(read_err)?;
        }
        let first = window.window();
        if first.is_empty() {
            return Err(CaptureError::Empty {
                file: name.to_owned(),
                gzip,
            });
        }
        let Some((container, format)) = Container::detect(first) else {
            return Err(CaptureError::NotCapture {
                file: name.to_owned(),
                first: first.iter().take(4).copied().collect(),
                gzip,
            });
        };
        let mut r = Self::new(
            name,
            source,
            Input::Stream(Box::new(window)),
            container,
            format,
        );
        r.gzip = gzip;
        r.refresh_bytes_read();
        Ok(r)
    }

    fn new(
        path: &str,
        source: SourceId,
        input: Input,
        container: Container,
        format: &'static str,
    ) -> Self {
        let display: Arc<str> = if path == "-" {
            Arc::from("<stdin>")
        } else {
            Arc::from(path)
        };
        CaptureReader {
            path: path.to_owned(),
            source,
            input,
            container,
            format,
            gzip: false,
            size: None,
            ledger: Ledger::new(display),
            done: false,
            link_types: Vec::new(),
            last_link: None,
            first_ts: None,
            last_ts: None,
        }
    }

    /// The input's name as used in messages (`<stdin>` for `-`).
    pub fn name(&self) -> &str {
        &self.ledger.file
    }

    pub fn source(&self) -> SourceId {
        self.source
    }

    /// `pcap` or `pcapng`.
    pub fn format(&self) -> &'static str {
        self.format
    }

    fn refresh_bytes_read(&mut self) {
        self.ledger.stats.bytes_read = match &self.input {
            Input::Mapped { pos, .. } => *pos as u64,
            Input::Stream(w) => w.stream.counted().count,
        };
    }

    fn note_frame(&mut self, meta: &FrameMeta) {
        let link = meta.link_type.0;
        if self.last_link != Some(link) {
            self.last_link = Some(link);
            if !self.link_types.contains(&link) {
                self.link_types.push(link);
            }
        }
        if self.first_ts.map_or(true, |t| meta.ts < t) {
            self.first_ts = Some(meta.ts);
        }
        if self.last_ts.map_or(true, |t| meta.ts > t) {
            self.last_ts = Some(meta.ts);
        }
        self.ledger.stats.frames += 1;
        self.ledger.stats.captured_bytes += u64::from(meta.len);
    }

    /// The next run of frames: at most `max_frames` frames, and stopping once
    /// their captured bytes reach `max_bytes`. `None` at the end of the input.
    /// A mapped file's pages before the batch returned two calls ago are
    /// released from memory: a caller that keeps older batches still reads
    /// them correctly, at the cost of page faults.
    pub fn next_batch(&mut self, max_frames: usize, max_bytes: usize) -> Option<Batch> {
        if self.done {
            return None;
        }
        let max_frames = max_frames.max(1);
        let max_bytes = max_bytes.max(1);
        let mut frames: Vec<FrameMeta> = Vec::with_capacity(max_frames.min(8192));
        let mut bytes = 0usize;
        let data = match &mut self.input {
            Input::Mapped {
                map,
                pos,
                hashed,
                hasher,
                warmed,
                released,
                recent_starts,
            } => {
                let done_with = recent_starts[0];
                if done_with >= *released + RELEASE_STEP {
                    *released = source::release(map, *released, done_with);
                }
                *recent_starts = [recent_starts[1], *pos];
                let all: &[u8] = map;
                while frames.len() < max_frames && bytes < max_bytes {
                    if *pos + WARM_AHEAD > *warmed {
                        *warmed = warm(all, *warmed, *pos + WARM_AHEAD + WARM_STEP);
                    }
                    let win = all.get(*pos..).unwrap_or(&[]);
                    match self
                        .container
                        .step(win, *pos as u64, true, &mut self.ledger)
                    {
                        Step::Frame { mut meta, consumed } => {
                            meta.offset += *pos;
                            bytes += meta.len as usize;
                            *pos += consumed;
                            frames.push(meta);
                        }
                        Step::Skip(n) => *pos += n.max(1),
                        Step::NeedMore(_) | Step::End => {
                            self.done = true;
                            break;
                        }
                    }
                }
                *pos = (*pos).min(all.len());
                if let Some(h) = hasher.as_mut() {
                    h.update(&all[*hashed..*pos]);
                    *hashed = *pos;
                }
                BatchData::Mapped(map.clone())
            }
            Input::Stream(w) => {
                let mut out: Vec<u8> = Vec::new();
                while frames.len() < max_frames && bytes < max_bytes {
                    let step = self
                        .container
                        .step(w.window(), w.base, w.eof, &mut self.ledger);
                    match step {
                        Step::Frame { mut meta, consumed } => {
                            let from = meta.offset;
                            let len = meta.len as usize;
                            let Some(src) = w.window().get(from..from + len) else {
                                // A parser bug would land here; never index out of bounds.
                                w.advance(consumed.max(1));
                                continue;
                            };
                            meta.offset = out.len();
                            out.extend_from_slice(src);
                            bytes += len;
                            w.advance(consumed);
                            frames.push(meta);
                        }
                        Step::Skip(n) => w.advance(n.max(1)),
                        Step::NeedMore(n) => {
                            if w.eof {
                                self.done = true;
                                break;
                            }
                            // Always ask for more than the window holds (so a
                            // parser cannot stall the loop) and never more than
                            // the largest block (so it cannot exhaust memory).
                            let held = w.end - w.start;
                            let want = n.max(held + 1).min(STREAM_WINDOW_MAX);
                            if want <= held {
                                // Unreachable by the parsers' bounds; stop
                                // rather than spin.
                                self.done = true;
                                break;
                            }
                            if let Err(e) = w.fill(want) {
                                let offset = w.base + (w.end - w.start) as u64;
                                self.ledger.damage(
                                    offset,
                                    None,
                                    Damage::ReadFailed {
                                        reason: e.to_string(),
                                    },
                                    Recovery::SkippedToEnd { skipped: 0 },
                                );
                            }
                        }
                        Step::End => {
                            self.done = true;
                            break;
                        }
                    }
                }
                BatchData::Owned(Arc::new(out))
            }
        };
        for meta in &frames {
            self.note_frame(meta);
        }
        self.refresh_bytes_read();
        if frames.is_empty() {
            return None;
        }
        Some(Batch {
            source: self.source,
            data,
            frames,
            clock: None,
        })
    }

    /// Damage found since the last call, in input order.
    pub fn take_warnings(&mut self) -> Vec<CaptureWarning> {
        std::mem::take(&mut self.ledger.warnings)
    }

    /// Counters so far (bytes read and total size drive a progress bar).
    pub fn stats(&self) -> &CaptureStats {
        &self.ledger.stats
    }

    /// Ends reading and summarises the input. With hashing on, the bytes not
    /// yet read (after the last frame, or all of them if reading stopped
    /// early) are read now so the hash covers the whole input.
    pub fn finish(mut self) -> InputSummary {
        self.refresh_bytes_read();
        let (sha256, size) = match self.input {
            Input::Mapped {
                map,
                hashed,
                hasher,
                ..
            } => {
                let sha = hasher.map(|mut h| {
                    h.update(map.get(hashed..).unwrap_or(&[]));
                    hex::encode(h.finalize())
                });
                (sha, self.size)
            }
            Input::Stream(w) => {
                let mut counted = w.stream.into_counted();
                if counted.hasher.is_some() {
                    // Drain what the decoder or the parser did not need.
                    let _ = io::copy(&mut counted, &mut io::sink());
                }
                let sha = counted.hasher.take().map(|h| hex::encode(h.finalize()));
                (sha, self.size.or(Some(counted.count)))
            }
        };
        let mut link_types = self.link_types;
        link_types.sort_unstable();
        InputSummary {
            path: self.path,
            format: self.format.to_owned(),
            gzip: self.gzip,
            size,
            sha256,
            link_types,
            first_time_ns: self.first_ts.map(|t| t.0),
            last_time_ns: self.last_ts.map(|t| t.0),
            stats: self.ledger.stats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<CaptureReader>();
        assert_send::<Batch>();
    }

    #[test]
    fn warm_stops_at_the_end_of_the_map() {
        let map = vec![1u8; 1000];
        assert_eq!(warm(&map, 0, 640), 640);
        assert_eq!(warm(&map, 640, 5000), 1000);
        assert_eq!(warm(&map, 1000, 5000), 1000);
    }

    #[test]
    fn zero_limits_still_make_progress() {
        let mut bytes = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&65535u32.to_le_bytes());
        bytes.extend_from_slice(&1u32.to_le_bytes());
        for secs in 0..3u32 {
            bytes.extend_from_slice(&secs.to_le_bytes());
            bytes.extend_from_slice(&0u32.to_le_bytes());
            bytes.extend_from_slice(&2u32.to_le_bytes());
            bytes.extend_from_slice(&2u32.to_le_bytes());
            bytes.extend_from_slice(b"ab");
        }
        let mut r =
            CaptureReader::open_reader(io::Cursor::new(bytes), "t", 0, ReadOptions::default())
                .unwrap();
        let mut n = 0;
        while let Some(b) = r.next_batch(0, 0) {
            assert_eq!(b.len(), 1);
            n += 1;
        }
        assert_eq!(n, 3);
        assert_eq!(r.finish().stats.frames, 3);
    }
}
