//! OSCAR File Transfer (OFT2) connections: the peer-to-peer (or proxied)
//! TCP flow that carries a file after an ICBM rendezvous. It owns the OFT2
//! header parser (pure), the per-direction transfer state, the SHA-256 of the
//! bytes seen, and carving them to `--carve DIR` under a safe name. It emits
//! one `file` event per transfer with the name, the announced size, the
//! bytes actually seen and their SHA-256. It never reads another flow.
//!
//! Header layout (all big-endian, libpurple `peer.h` `OftFrame`): `OFT2` |
//! header length u16 (192 + name bytes, 256 usually) | type u16 | cookie 8 |
//! encrypt u16 | compress u16 | total files u16 | files left u16 | total parts
//! u16 | parts left u16 | total size u32 | size u32 | mod time u32 | checksum
//! u32 | 5 × u32 (resource fork, creation time, received bytes at 60,
//! received checksum) | id string 32 | flags u8 | 2 offsets | 69 dummy | mac
//! info 16 | name encoding u16 (at 188; 0 ASCII, 2 UCS-2BE, 3 ISO-8859-1) |
//! language u16 | name (NUL-padded) at 192.
//! Types: 0x0101 prompt (the sender; file bytes follow in its direction),
//! 0x0202 ack, 0x0204 done, 0x0205 resume, 0x0106 resume accept (bytes from
//! the received offset follow), 0x0207 resume ack.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::event::{FlowId, Kind, LocalId};
use crate::proto::{CarvedFile, Emitter, EventDraft, ProtoConfig, Resync, ResyncCause, Side, Step};

use super::parser::{decode_8bit, decode_charset, Reader};

pub const OFT_MAGIC: &[u8; 4] = b"OFT2";
/// The fixed part of a header; the name follows.
pub const OFT_FIXED_LEN: usize = 192;
/// Longest header accepted (name up to a few KiB).
pub const OFT_MAX_HEADER: usize = 4096;

pub const TYPE_PROMPT: u16 = 0x0101;
pub const TYPE_RESUME_ACCEPT: u16 = 0x0106;

/// One parsed OFT2 header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OftHeader {
    pub kind: u16,
    pub cookie: [u8; 8],
    pub total_files: u16,
    pub size: u32,
    /// Bytes the receiver already has (resume).
    pub received: u32,
    pub name: String,
    /// The name bytes did not decode exactly.
    pub name_lossy: bool,
}

/// Header length announced at the start of `buf`, if `buf` starts a
/// plausible OFT2 header.
pub fn header_len(buf: &[u8]) -> Option<usize> {
    if buf.get(..4)? != OFT_MAGIC {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*buf.get(4)?, *buf.get(5)?]));
    (OFT_FIXED_LEN..=OFT_MAX_HEADER)
        .contains(&len)
        .then_some(len)
}

/// Parse one whole header (as long as [`header_len`] says).
pub fn parse_header(h: &[u8]) -> Option<OftHeader> {
    let len = header_len(h)?;
    let h = h.get(..len)?;
    let mut r = Reader::new(&h[6..]);
    let kind = r.u16()?;
    let cookie: [u8; 8] = r.take(8)?.try_into().ok()?;
    r.take(4)?; // encrypt, compress
    let total_files = r.u16()?;
    r.take(6)?; // files left, total parts, parts left
    let _total_size = r.u32()?;
    let size = r.u32()?;
    let received = u32::from_be_bytes(h.get(60..64)?.try_into().ok()?);
    let encoding = u16::from_be_bytes(h.get(188..190)?.try_into().ok()?);
    let raw_name = &h[OFT_FIXED_LEN..];
    let (name, lossy) = if encoding == 2 {
        // UCS-2BE: cut at the first NUL code unit.
        let units = raw_name
            .chunks_exact(2)
            .take_while(|u| u != &[0, 0])
            .count();
        let t = decode_charset(2, &raw_name[..units * 2]);
        (t.text.into_owned(), t.lossy)
    } else {
        let end = memchr::memchr(0, raw_name).unwrap_or(raw_name.len());
        let t = decode_8bit(&raw_name[..end]);
        (t.text.into_owned(), t.lossy)
    };
    Some(OftHeader {
        kind,
        cookie,
        total_files,
        size,
        received,
        name,
        name_lossy: lossy,
    })
}

/// Does `buf` start with an AIM rendezvous proxy frame (the proxy a
/// transfer goes through when the peers cannot connect directly): length u16,
/// version 0x044A, command 1..=5 (libpurple `peer_proxy.c`)?
pub fn is_proxy_frame(buf: &[u8]) -> bool {
    match buf.get(..6) {
        Some(&[l0, l1, 0x04, 0x4A, 0x00, cmd]) => {
            let len = usize::from(u16::from_be_bytes([l0, l1]));
            (1..=5).contains(&cmd) && (10..=1024).contains(&len)
        }
        _ => false,
    }
}

/// Does `buf` look like the start of an OFT connection? Looks for a header
/// (or a rendezvous proxy frame) at the start, or for a header anywhere in a
/// mid-stream window.
pub fn probe(buf: &[u8], midstream: bool) -> Option<bool> {
    if is_proxy_frame(buf) {
        return Some(true);
    }
    if buf.len() < 6 {
        return if OFT_MAGIC.starts_with(&buf[..buf.len().min(4)]) || midstream {
            None
        } else {
            Some(false)
        };
    }
    if header_len(buf).is_some() {
        return Some(true);
    }
    if midstream {
        let found =
            memchr::memmem::find_iter(buf, OFT_MAGIC).any(|i| header_len(&buf[i..]).is_some());
        return if found { Some(true) } else { None };
    }
    Some(false)
}

/// A safe file name: ASCII letters, digits, `.`, `-`, `_` kept, anything
/// else `_`, no leading dot, at most 100 bytes, never empty.
pub fn safe_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    while s.starts_with('.') {
        s.replace_range(..1, "_");
    }
    if s.is_empty() {
        s.push_str("unnamed");
    }
    s
}

/// One file of a transfer, from its prompt to its last byte.
struct Transfer {
    header: OftHeader,
    sender: Side,
    /// Bytes of the file seen on the wire (from `offset`).
    seen: u64,
    offset: u64,
    expected: u64,
    sha: Sha256,
    carve: Option<(PathBuf, BufWriter<File>)>,
    carve_error: Option<String>,
    damaged: bool,
}

#[derive(Default)]
enum DirState {
    #[default]
    Header,
    Data {
        remaining: u64,
    },
}

/// State of one OFT connection.
#[derive(Default)]
pub struct OftSession {
    carve_dir: Option<PathBuf>,
    flow: FlowId,
    dirs: [DirState; 2],
    /// The transfer whose bytes are flowing (or were cut by a gap).
    current: [Option<Transfer>; 2],
    /// Transfers ended by damage, waiting for an emitter.
    finished: Vec<Transfer>,
    files: u64,
}

impl OftSession {
    pub fn configure(&mut self, config: &ProtoConfig, flow: FlowId) {
        self.carve_dir = config.carve_dir.clone();
        self.flow = flow;
    }

    pub fn unit_cap(&self) -> usize {
        OFT_MAX_HEADER
    }

    pub fn next_unit(&mut self, side: Side, buf: &[u8]) -> Step {
        match self.dirs[side.index()] {
            DirState::Data { remaining } => {
                let n = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                if n == 0 {
                    Step::NeedMore
                } else {
                    Step::Unit(n)
                }
            }
            DirState::Header => {
                if buf.len() < 6 {
                    return Step::NeedMore;
                }
                match header_len(buf) {
                    Some(len) if buf.len() >= len => Step::Unit(len),
                    Some(_) => Step::NeedMore,
                    // The flow was recognised by its `OFT2` header: bytes that
                    // are not a plausible header here are damage.
                    None => Step::Invalid(skip_to_magic(buf).max(1)),
                }
            }
        }
    }

    pub fn resync(&mut self, side: Side, buf: &[u8], cause: ResyncCause) -> Resync {
        let s = side.index();
        if matches!(self.dirs[s], DirState::Data { .. }) || cause == ResyncCause::Gap {
            if let Some(mut t) = self.current[s].take() {
                t.damaged = true;
                self.finished.push(t);
            }
        }
        self.dirs[s] = DirState::Header;
        match memchr::memmem::find_iter(buf, OFT_MAGIC)
            .find(|&i| header_len(&buf[i..]).is_some() || buf.len() - i < 6)
        {
            Some(i) => Resync::At(i),
            None => Resync::Skip(buf.len().saturating_sub(5)),
        }
    }

    pub fn on_unit(&mut self, side: Side, unit: &[u8], out: &mut Emitter<'_>) {
        self.flush_finished(out);
        let s = side.index();
        if let DirState::Data { remaining } = self.dirs[s] {
            let n = unit.len() as u64;
            let left = remaining.saturating_sub(n);
            if let Some(t) = self.current[s].as_mut() {
                t.sha.update(unit);
                t.seen += n;
                if let Some((_, w)) = t.carve.as_mut() {
                    if let Err(e) = w.write_all(unit) {
                        t.carve_error = Some(e.to_string());
                        t.carve = None;
                    }
                }
            }
            if left == 0 {
                self.dirs[s] = DirState::Header;
                if let Some(t) = self.current[s].take() {
                    self.emit(t, out);
                }
            } else {
                self.dirs[s] = DirState::Data { remaining: left };
            }
            return;
        }
        let Some(h) = parse_header(unit) else {
            out.count_decode_error();
            return;
        };
        let (offset, expected) = match h.kind {
            TYPE_PROMPT => (0, u64::from(h.size)),
            TYPE_RESUME_ACCEPT => {
                let off = u64::from(h.received.min(h.size));
                (off, u64::from(h.size) - off)
            }
            _ => return,
        };
        if let Some(mut old) = self.current[s].take() {
            old.damaged = true;
            self.emit(old, out);
        }
        self.files += 1;
        let carve = self.open_carve(&h);
        let mut t = Transfer {
            sender: side,
            seen: 0,
            offset,
            expected,
            sha: Sha256::new(),
            carve_error: carve.as_ref().err().cloned(),
            carve: carve.ok().flatten(),
            damaged: false,
            header: h,
        };
        if expected == 0 {
            t.carve = t
                .carve
                .take()
                .and_then(|(p, mut w)| w.flush().ok().map(|_| (p, w)));
            self.emit(t, out);
        } else {
            self.current[s] = Some(t);
            self.dirs[s] = DirState::Data {
                remaining: expected,
            };
        }
    }

    pub fn on_close(&mut self, out: &mut Emitter<'_>) {
        self.flush_finished(out);
        for s in 0..2 {
            if let Some(mut t) = self.current[s].take() {
                t.damaged = true;
                self.emit(t, out);
            }
        }
    }

    fn flush_finished(&mut self, out: &mut Emitter<'_>) {
        for t in std::mem::take(&mut self.finished) {
            self.emit(t, out);
        }
    }

    fn open_carve(&self, h: &OftHeader) -> Result<Option<(PathBuf, BufWriter<File>)>, String> {
        let Some(dir) = &self.carve_dir else {
            return Ok(None);
        };
        let flow = self.flow.to_string().replace(':', "_");
        let name = format!("oft-{flow}-{}-{}", self.files, safe_name(&h.name));
        let path = Path::new(dir).join(name);
        File::create(&path)
            .map(|f| Some((path.clone(), BufWriter::with_capacity(64 * 1024, f))))
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    fn emit(&mut self, mut t: Transfer, out: &mut Emitter<'_>) {
        let mut carved = None;
        if let Some((path, mut w)) = t.carve.take() {
            match w.flush() {
                Ok(()) => carved = Some(path),
                Err(e) => t.carve_error = Some(format!("{}: {e}", path.display())),
            }
        }
        let sha = hex::encode(t.sha.finalize_reset());
        let complete = !t.damaged && t.seen == t.expected && t.offset == 0;
        let mut note = format!("{} of {} bytes seen, sha256 {sha}", t.seen, t.header.size);
        if t.offset > 0 {
            note.push_str(&format!(", resumed at byte {}", t.offset));
        }
        if !complete {
            note.push_str(", incomplete");
        }
        if let Some(p) = carved {
            note.push_str(&format!(", carved to {}", p.display()));
            out.carved(CarvedFile {
                path: p.display().to_string(),
                name: t.header.name.clone(),
                announced_size: u64::from(t.header.size),
                bytes_seen: t.seen,
                sha256: sha.clone(),
                flow: out.flow().to_string(),
                complete,
            });
        }
        if let Some(e) = &t.carve_error {
            note.push_str(&format!(", carve failed: {e}"));
            out.count_decode_error();
        }
        let remote = format!("oft-cookie:{}", hex::encode(t.header.cookie));
        let mut d = EventDraft::new(
            Kind::File,
            t.sender == Side::Client,
            LocalId::Unknown,
            remote.into(),
        );
        d.file_name = Some(t.header.name.clone());
        d.file_size = Some(u64::from(t.header.size));
        d.text = Some(note);
        d.text_encoding = Some("utf-8");
        d.decode_error = t.header.name_lossy || !complete;
        out.emit(d);
    }
}

/// Bytes before the next `OFT2` (or before a possible prefix of it at the end).
fn skip_to_magic(buf: &[u8]) -> usize {
    match memchr::memmem::find(&buf[1.min(buf.len())..], OFT_MAGIC) {
        Some(i) => i + 1,
        None => buf.len().saturating_sub(3),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An OFT2 header as libpurple writes it (256 bytes, ASCII name).
    pub fn header(kind: u16, cookie: [u8; 8], size: u32, name: &str) -> Vec<u8> {
        let mut h = vec![0u8; 256];
        h[..4].copy_from_slice(OFT_MAGIC);
        h[4..6].copy_from_slice(&256u16.to_be_bytes());
        h[6..8].copy_from_slice(&kind.to_be_bytes());
        h[8..16].copy_from_slice(&cookie);
        h[20..22].copy_from_slice(&1u16.to_be_bytes());
        h[22..24].copy_from_slice(&1u16.to_be_bytes());
        h[28..32].copy_from_slice(&size.to_be_bytes());
        h[32..36].copy_from_slice(&size.to_be_bytes());
        h[68..81].copy_from_slice(b"Cool FileXfer");
        h[192..192 + name.len()].copy_from_slice(name.as_bytes());
        h
    }

    #[test]
    fn parses_prompt_header() {
        let h = header(TYPE_PROMPT, [1; 8], 1234, "notes.txt");
        let p = parse_header(&h).unwrap();
        assert_eq!(p.kind, TYPE_PROMPT);
        assert_eq!(p.size, 1234);
        assert_eq!(p.name, "notes.txt");
        assert_eq!(p.cookie, [1; 8]);
        for n in 0..h.len() {
            assert_eq!(parse_header(&h[..n]), None);
        }
    }

    #[test]
    fn ucs2_name() {
        let mut h = header(TYPE_PROMPT, [1; 8], 1, "");
        h[188..190].copy_from_slice(&2u16.to_be_bytes());
        let name: Vec<u8> = "żółw.txt"
            .encode_utf16()
            .flat_map(|u| u.to_be_bytes())
            .collect();
        h[192..192 + name.len()].copy_from_slice(&name);
        assert_eq!(parse_header(&h).unwrap().name, "żółw.txt");
    }

    #[test]
    fn safe_names() {
        assert_eq!(safe_name("../../etc/passwd"), "_._.._etc_passwd");
        assert_eq!(safe_name(".hidden"), "_hidden");
        assert_eq!(safe_name(""), "unnamed");
        assert_eq!(safe_name("a b/ć.txt"), "a_b__.txt");
        assert!(safe_name(&"x".repeat(500)).len() <= 100);
    }

    #[test]
    fn probe_start_and_midstream() {
        let h = header(TYPE_PROMPT, [1; 8], 1, "a");
        assert_eq!(probe(&h, false), Some(true));
        assert_eq!(probe(b"OF", false), None);
        assert_eq!(probe(b"GET / HTTP/1.1", false), Some(false));
        let mut m = vec![0x55; 40];
        m.extend_from_slice(&h);
        assert_eq!(probe(&m, true), Some(true));
        assert_eq!(probe(&m, false), Some(false));
        // Through the AIM proxy: an init-receive frame first.
        let proxy = [0x00, 0x2C, 0x04, 0x4A, 0x00, 0x04, 0, 0, 0, 0, 0, 0];
        assert_eq!(probe(&proxy, false), Some(true));
    }
}
