//! `--streams DIR`: writes each TCP flow's reassembled bytes, one file per
//! direction, `DIR/<client-ip>.<port>-<server-ip>.<port>` (client → server)
//! and `DIR/<server-ip>.<port>-<client-ip>.<port>` (server → client), and one
//! [`StreamRecord`] per flow for `DIR/streams.jsonl`. Only bytes that exist
//! are written: a gap is not filled, the file just continues, and the record
//! lists the gap with its stream offset, file offset and length.
//!
//! File names are built from IP addresses and ports only, never from wire
//! strings, so nothing can be written outside DIR. IPv6 addresses are written
//! in their compressed form with `:` replaced by `_` (portable file names).
//! When a 4-tuple is reused, the later flow's names get the suffix
//! `_<source>-<frame>` of its flow id (deterministic). This module writes
//! files; it decodes nothing.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::Serialize;

use crate::capture::FrameRef;
use crate::event::FlowId;
use crate::net::{Dir, Endpoint};
use crate::time::Timestamp;

use super::{Chunk, ChunkInfo, CloseReason, NewFlow, StreamConsumer};

/// The export directory, shared by every flow of a run (all shards).
#[derive(Debug)]
pub struct StreamExport {
    root: PathBuf,
    /// Files held open across chunks; past `max_open`, a direction's file is
    /// opened for each write and closed again (bounded descriptors).
    open_files: AtomicUsize,
    max_open: usize,
}

/// Default number of stream files held open at once.
pub const DEFAULT_MAX_OPEN_FILES: usize = 256;

impl StreamExport {
    /// Create `dir` (and its parents) if needed.
    pub fn create(dir: &Path, max_open: usize) -> io::Result<Arc<StreamExport>> {
        std::fs::create_dir_all(dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("streams directory {}: {e}", dir.display()),
            )
        })?;
        Ok(Arc::new(StreamExport {
            root: dir.to_path_buf(),
            open_files: AtomicUsize::new(0),
            max_open,
        }))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The exporter of a new flow.
    pub fn flow(self: &Arc<Self>, new: &NewFlow) -> FlowExport {
        let client_dir = new.client_dir_or_guess();
        let client = new.key.src(client_dir);
        let server = new.key.dst(client_dir);
        let flow = FlowId(new.frame);
        FlowExport {
            export: Arc::clone(self),
            client_dir,
            client,
            server,
            names: None,
            files: [DirFile::default(), DirFile::default()],
            record: StreamRecord {
                flow: flow.to_string(),
                client: client.socket_addr(),
                server: server.socket_addr(),
                first_frame: FlowId(new.frame).to_string(),
                last_frame: FlowId(new.frame).to_string(),
                first_time: new.ts.rfc3339_micros(),
                last_time: new.ts.rfc3339_micros(),
                client_to_server: DirRecord::default(),
                server_to_client: DirRecord::default(),
                close: String::new(),
                errors: Vec::new(),
                sort_key: (new.frame, client.socket_addr(), server.socket_addr()),
            },
            last: (new.frame, new.ts),
        }
    }

    /// Write `DIR/streams.jsonl`: one line per flow, sorted by first frame,
    /// then client and server address (deterministic whatever the order the
    /// shards closed flows in).
    pub fn write_index(&self, mut records: Vec<StreamRecord>) -> io::Result<PathBuf> {
        records.sort_by_key(|r| r.sort_key);
        let path = self.root.join("streams.jsonl");
        let err = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let mut out = BufWriter::new(File::create(&path).map_err(err)?);
        for r in &records {
            serde_json::to_writer(&mut out, r)
                .map_err(io::Error::from)
                .map_err(err)?;
            out.write_all(b"\n").map_err(err)?;
        }
        out.flush().map_err(err)?;
        Ok(path)
    }
}

/// One direction's line in a [`StreamRecord`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DirRecord {
    /// File name inside DIR; empty when the direction carried no bytes.
    pub file: String,
    /// Bytes written (gaps excluded).
    pub bytes: u64,
    pub gaps: Vec<GapRecord>,
    /// Chunks that carried the overlap-conflict flag.
    pub overlap_conflicts: u64,
    /// The direction was picked up without its SYN.
    pub midstream: bool,
}

/// Missing bytes: `len` bytes at stream offset `stream_offset`, which the
/// file does not contain; the bytes after them start at `file_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GapRecord {
    pub stream_offset: u64,
    pub file_offset: u64,
    pub len: u64,
}

/// One flow's line in `streams.jsonl`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StreamRecord {
    /// Flow id as events show it (`<source>:<frame>`).
    pub flow: String,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// First frame of the flow and the last frame that carried its bytes (or its FIN/RST).
    pub first_frame: String,
    pub last_frame: String,
    pub first_time: String,
    pub last_time: String,
    pub client_to_server: DirRecord,
    pub server_to_client: DirRecord,
    /// `fin`, `rst`, `idle`, `evicted`, `end_of_input`; empty if never closed.
    pub close: String,
    /// Write errors (the export of that direction stopped at the first).
    pub errors: Vec<String>,
    #[serde(skip)]
    sort_key: (FrameRef, SocketAddr, SocketAddr),
}

/// A file held open, counted in `StreamExport::open_files` while it lives.
#[derive(Debug)]
struct HeldFile {
    file: File,
    export: Arc<StreamExport>,
}

impl Drop for HeldFile {
    fn drop(&mut self) {
        self.export.open_files.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct DirFile {
    file: Option<HeldFile>,
    /// Bytes written so far (the next file offset).
    written: u64,
    created: bool,
    failed: bool,
}

/// The [`StreamConsumer`] that exports one flow.
#[derive(Debug)]
pub struct FlowExport {
    export: Arc<StreamExport>,
    client_dir: Dir,
    client: Endpoint,
    server: Endpoint,
    /// (client → server, server → client) file names, chosen at the first byte.
    names: Option<[String; 2]>,
    /// Indexed by `Dir::index()`.
    files: [DirFile; 2],
    record: StreamRecord,
    last: (FrameRef, Timestamp),
}

fn ip_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => a.to_string().replace(':', "_"),
    }
}

fn endpoint_name(e: Endpoint) -> String {
    format!("{}.{}", ip_name(e.ip), e.port)
}

impl FlowExport {
    /// The record for `streams.jsonl` (call after the flow closed).
    pub fn into_record(mut self) -> StreamRecord {
        self.release_files();
        self.record.last_frame = FlowId(self.last.0).to_string();
        self.record.last_time = self.last.1.rfc3339_micros();
        self.record
    }

    fn dir_record(&mut self, dir: Dir) -> &mut DirRecord {
        if dir == self.client_dir {
            &mut self.record.client_to_server
        } else {
            &mut self.record.server_to_client
        }
    }

    /// Pick the file names for this flow: the plain pair if neither exists,
    /// else with the flow id as suffix (and a counter if even that exists).
    fn choose_names(&mut self) -> [String; 2] {
        let c = endpoint_name(self.client);
        let s = endpoint_name(self.server);
        let id = self.record.flow.replace(':', "-");
        let root = &self.export.root;
        let free = |a: &str, b: &str| !root.join(a).exists() && !root.join(b).exists();
        let mut pair = [format!("{c}-{s}"), format!("{s}-{c}")];
        if !free(&pair[0], &pair[1]) {
            pair = [format!("{c}-{s}_{id}"), format!("{s}-{c}_{id}")];
            let mut n = 2;
            while !free(&pair[0], &pair[1]) && n < 1000 {
                pair = [format!("{c}-{s}_{id}_{n}"), format!("{s}-{c}_{id}_{n}")];
                n += 1;
            }
        }
        pair
    }

    fn write(&mut self, dir: Dir, bytes: &[u8]) {
        if bytes.is_empty() || self.files[dir.index()].failed {
            return;
        }
        let names = match &self.names {
            Some(n) => n.clone(),
            None => {
                let n = self.choose_names();
                self.names = Some(n.clone());
                n
            }
        };
        let name = if dir == self.client_dir {
            names[0].clone()
        } else {
            names[1].clone()
        };
        let path = self.export.root.join(&name);
        let result = self.write_to(dir, &path, bytes);
        let rec_file_set = !self.dir_record(dir).file.is_empty();
        match result {
            Ok(()) => {
                self.files[dir.index()].written += bytes.len() as u64;
                let rec = self.dir_record(dir);
                rec.bytes += bytes.len() as u64;
                if !rec_file_set {
                    rec.file = name;
                }
            }
            Err(e) => {
                self.files[dir.index()].failed = true;
                self.files[dir.index()].file = None;
                self.record.errors.push(format!("{}: {e}", path.display()));
            }
        }
    }

    fn write_to(&mut self, dir: Dir, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let export = Arc::clone(&self.export);
        let f = &mut self.files[dir.index()];
        if let Some(held) = f.file.as_mut() {
            return held.file.write_all(bytes);
        }
        let mut opts = OpenOptions::new();
        if f.created {
            opts.append(true);
        } else {
            // Never write through a file that was there before this flow.
            opts.write(true).create_new(true);
        }
        let mut file = opts.open(path)?;
        f.created = true;
        file.write_all(bytes)?;
        // Counted from here on; dropping `held` (at once when over the
        // limit) closes the file and gives the count back.
        let before = export.open_files.fetch_add(1, Ordering::Relaxed);
        let held = HeldFile { file, export };
        if before < held.export.max_open {
            f.file = Some(held);
        }
        Ok(())
    }

    fn release_files(&mut self) {
        for f in &mut self.files {
            f.file = None;
        }
    }
}

impl StreamConsumer for FlowExport {
    fn on_chunk(&mut self, chunk: Chunk<'_>, info: &ChunkInfo) {
        // Chunks flushed at close carry the closing frame, not one of this
        // flow: the last frame is the last that carried data of the flow.
        if let Chunk::Data(_) = chunk {
            self.last.0 = self.last.0.max(info.first_frame);
            if info.frame == info.first_frame {
                self.last.1 = self.last.1.max(info.ts);
            }
        }
        let written = self.files[info.dir.index()].written;
        let rec = self.dir_record(info.dir);
        rec.midstream |= info.flags.midstream;
        if info.flags.overlap_conflict {
            rec.overlap_conflicts += 1;
        }
        match chunk {
            Chunk::Data(b) => self.write(info.dir, b),
            Chunk::Gap(len) => rec.gaps.push(GapRecord {
                stream_offset: info.offset,
                file_offset: written,
                len,
            }),
        }
    }

    fn on_close(&mut self, reason: CloseReason, ts: Timestamp, frame: FrameRef) {
        self.record.close = match reason {
            CloseReason::Fin => "fin",
            CloseReason::Rst => "rst",
            CloseReason::Idle => "idle",
            CloseReason::Evicted => "evicted",
            CloseReason::EndOfInput => "end_of_input",
        }
        .to_string();
        // FIN and RST are frames of this flow; the others are not.
        if matches!(reason, CloseReason::Fin | CloseReason::Rst) {
            self.last = (self.last.0.max(frame), self.last.1.max(ts));
        }
        self.release_files();
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::net::{FlowKey, TcpFlags, TcpSegment, Transport};
    use crate::tcp::{FlowTable, TcpConfig};

    const SYN: u8 = TcpFlags::SYN;
    const ACK: u8 = TcpFlags::ACK;
    const FIN: u8 = TcpFlags::FIN;

    struct Rig {
        table: FlowTable<FlowExport>,
        export: Arc<StreamExport>,
        frame: u64,
        /// Acknowledgment number of the next segment.
        ack: u32,
    }

    impl Rig {
        fn new(dir: &Path, max_open: usize) -> Rig {
            Rig {
                table: FlowTable::new(TcpConfig::default()),
                export: StreamExport::create(dir, max_open).unwrap(),
                frame: 0,
                ack: 0,
            }
        }

        fn seg(
            &mut self,
            client: Endpoint,
            server: Endpoint,
            from_client: bool,
            seq: u32,
            flags: u8,
            data: &[u8],
        ) {
            self.frame += 1;
            let (src, dst) = if from_client {
                (client, server)
            } else {
                (server, client)
            };
            let (key, dir) = FlowKey::new(Transport::Tcp, src, dst);
            let seg = TcpSegment {
                key,
                dir,
                seq,
                ack: std::mem::take(&mut self.ack),
                flags: TcpFlags(flags),
                window: 0,
                payload: Cow::Owned(data.to_vec()),
                frame: FrameRef {
                    source: 0,
                    index: self.frame,
                },
                ts: Timestamp::from_secs_nanos(1_000 + self.frame as i64, 0),
            };
            let export = &self.export;
            self.table.segment(&seg, |n| export.flow(n));
        }

        fn records(&mut self) -> Vec<StreamRecord> {
            self.table.finish(FrameRef {
                source: 0,
                index: 999,
            });
            self.table
                .take_closed()
                .into_iter()
                .map(FlowExport::into_record)
                .collect()
        }
    }

    fn v4(last: u8, port: u16) -> Endpoint {
        Endpoint {
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
            port,
        }
    }

    #[test]
    fn writes_both_directions_and_lists_gaps_without_filling_them() {
        let tmp = tempfile::tempdir().unwrap();
        let mut rig = Rig::new(tmp.path(), DEFAULT_MAX_OPEN_FILES);
        // The client has the higher address: its bytes travel HiToLo.
        let (c, s) = (v4(9, 40000), v4(2, 1863));
        rig.seg(c, s, true, 100, SYN, b"");
        rig.seg(c, s, false, 500, SYN | ACK, b"");
        rig.seg(c, s, true, 101, ACK, b"USR 1 ");
        rig.seg(c, s, false, 501, ACK, b"OK\r\n");
        rig.seg(c, s, true, 111, ACK, b"tail"); // bytes 6..10 were lost
        rig.seg(c, s, true, 115, ACK | FIN, b"");
        rig.ack = 116; // the server acknowledges the FIN: the lost bytes will not come
        rig.seg(c, s, false, 505, ACK | FIN, b"");
        let recs: Vec<StreamRecord> = rig
            .table
            .take_closed()
            .into_iter()
            .map(FlowExport::into_record)
            .collect();
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(r.client_to_server.file, "10.0.0.9.40000-10.0.0.2.1863");
        assert_eq!(r.server_to_client.file, "10.0.0.2.1863-10.0.0.9.40000");
        let c2s = std::fs::read(tmp.path().join(&r.client_to_server.file)).unwrap();
        let s2c = std::fs::read(tmp.path().join(&r.server_to_client.file)).unwrap();
        assert_eq!(c2s, b"USR 1 tail");
        assert_eq!(s2c, b"OK\r\n");
        assert_eq!(
            r.client_to_server.gaps,
            vec![GapRecord {
                stream_offset: 6,
                file_offset: 6,
                len: 4
            }]
        );
        assert_eq!(
            (r.client_to_server.bytes, r.server_to_client.bytes),
            (10, 4)
        );
        assert_eq!((r.flow.as_str(), r.first_frame.as_str()), ("1:1", "1:1"));
        assert_eq!(r.last_frame, "1:7");
        assert_eq!(r.close, "fin");
        assert_eq!(r.client.to_string(), "10.0.0.9:40000");
        assert!(!r.client_to_server.midstream);
        assert!(r.errors.is_empty());
    }

    #[test]
    fn reused_four_tuple_gets_a_flow_id_suffix_and_index_is_sorted() {
        let tmp = tempfile::tempdir().unwrap();
        let mut rig = Rig::new(tmp.path(), 0); // reopen for every write
        let (c, s) = (v4(1, 40000), v4(2, 5222));
        rig.seg(c, s, true, 1, SYN, b"");
        rig.seg(c, s, true, 2, ACK | FIN, b"first");
        rig.seg(c, s, false, 9, FIN, b"");
        rig.seg(c, s, true, 70, SYN, b""); // frame 4: same 4-tuple, new connection
        rig.seg(c, s, true, 71, ACK, b"sec");
        rig.seg(c, s, true, 74, ACK, b"ond");
        let mut recs = rig
            .table
            .take_closed()
            .into_iter()
            .map(FlowExport::into_record)
            .collect::<Vec<_>>();
        recs.extend(rig.records());
        recs.reverse();
        let path = rig.export.write_index(recs).unwrap();
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["flow"], "1:1");
        assert_eq!(lines[1]["flow"], "1:4");
        assert_eq!(
            lines[1]["client_to_server"]["file"],
            "10.0.0.1.40000-10.0.0.2.5222_1-4"
        );
        assert_eq!(lines[1]["server_to_client"]["file"], "");
        assert_eq!(lines[1]["close"], "end_of_input");
        let second = std::fs::read(tmp.path().join("10.0.0.1.40000-10.0.0.2.5222_1-4")).unwrap();
        assert_eq!(second, b"second");
        let first = std::fs::read(tmp.path().join("10.0.0.1.40000-10.0.0.2.5222")).unwrap();
        assert_eq!(first, b"first");
        assert_eq!(rig.export.open_files.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn midstream_ipv6_flow_has_portable_names_inside_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let mut rig = Rig::new(tmp.path(), DEFAULT_MAX_OPEN_FILES);
        let c = Endpoint {
            ip: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            port: 50000,
        };
        let s = Endpoint {
            ip: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
            port: 6667,
        };
        rig.seg(c, s, false, 1000, ACK, b":irc PRIVMSG\r\n");
        let recs = rig.records();
        let r = &recs[0];
        assert_eq!(
            r.server_to_client.file,
            "2001_db8__2.6667-2001_db8__1.50000"
        );
        assert!(r.server_to_client.midstream);
        assert_eq!(r.close, "end_of_input");
        let entries: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            std::fs::read(tmp.path().join(&r.server_to_client.file)).unwrap(),
            b":irc PRIVMSG\r\n"
        );
    }

    #[test]
    fn a_file_that_already_exists_is_never_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("10.0.0.1.40000-10.0.0.2.5222"), b"keep me").unwrap();
        let mut rig = Rig::new(tmp.path(), DEFAULT_MAX_OPEN_FILES);
        let (c, s) = (v4(1, 40000), v4(2, 5222));
        rig.seg(c, s, true, 1, SYN, b"");
        rig.seg(c, s, true, 2, ACK, b"new");
        let recs = rig.records();
        assert_eq!(
            recs[0].client_to_server.file,
            "10.0.0.1.40000-10.0.0.2.5222_1-1"
        );
        assert_eq!(
            std::fs::read(tmp.path().join("10.0.0.1.40000-10.0.0.2.5222")).unwrap(),
            b"keep me"
        );
    }

    #[test]
    fn a_write_error_is_recorded_not_raised() {
        let tmp = tempfile::tempdir().unwrap();
        let sub = tmp.path().join("gone");
        let mut rig = Rig::new(&sub, DEFAULT_MAX_OPEN_FILES);
        std::fs::remove_dir(&sub).unwrap();
        let (c, s) = (v4(1, 40000), v4(2, 5222));
        rig.seg(c, s, true, 1, SYN, b"");
        rig.seg(c, s, true, 2, ACK, b"lost");
        rig.seg(c, s, true, 6, ACK, b"more");
        let recs = rig.records();
        assert_eq!(recs[0].errors.len(), 1, "{:?}", recs[0].errors);
        assert_eq!(recs[0].client_to_server.bytes, 0);
    }
}
