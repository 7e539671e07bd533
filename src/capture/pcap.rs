//! The classic libpcap container: file header, then records of a 16-byte
//! header (24 in the "modified" Kuznetzov format) and captured bytes. Both byte
//! orders, microsecond and nanosecond magic. It owns record framing, frame
//! numbering and the damage rules for pcap; it does no I/O and knows nothing of
//! link layers.
//!
//! The file header is parsed with `pcap-parser`. Records are read by hand: the
//! header is four `u32`s, and the damage rules need the raw fields before the
//! captured length is trusted (pcap-parser only says "incomplete").
//!
//! Damage rules: a record whose header is implausible (caplen above snaplen or
//! origlen, sub-second field out of range) is still delivered, with a warning,
//! when the next record header is plausible (the framing holds). When only the
//! header snaplen is exceeded, that is said once and the snaplen is ignored
//! from then on: some writers store frames longer than the snaplen they
//! declare. Otherwise the reader resynchronises by scanning forward for a
//! plausible header whose timestamp is within a day of the last good frame and
//! whose successor is plausible too (at the very end of the input a lone
//! record is accepted only when an earlier good frame's time vouches for it).
//! Frame numbers count records read; records lost inside a resynchronised
//! range are unknowable and get no number.

use pcap_parser::pcap::parse_pcap_header;

use super::container::{resync_scan, u32_at, Candidate, Ledger, Resync, Step, MAX_FRAME_LEN};
use super::damage::{Damage, Recovery};
use super::{FrameMeta, LinkType};
use crate::time::Timestamp;

const FILE_HEADER_LEN: usize = 24;
/// How far from the last good frame a resync candidate's timestamp may be.
const RESYNC_TIME_WINDOW_NS: i64 = 86_400 * Timestamp::NANOS_PER_SEC;

/// Magic numbers as read little-endian from the first 4 bytes.
const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;
const MAGIC_MODIFIED: u32 = 0xa1b2_cd34;

/// True when `first4` (little-endian) is a pcap magic in either byte order.
pub(crate) fn is_pcap_magic(first4: u32) -> bool {
    [MAGIC_US, MAGIC_NS, MAGIC_MODIFIED]
        .iter()
        .any(|&m| first4 == m || first4 == m.swap_bytes())
}

/// One record header, fields already in host order.
#[derive(Clone, Copy, Debug)]
struct RecordHeader {
    secs: u32,
    fraction: u32,
    caplen: u32,
    origlen: u32,
}

#[derive(Debug)]
pub(crate) struct PcapParser {
    header_done: bool,
    big_endian: bool,
    nanos: bool,
    record_header_len: usize,
    link_type: LinkType,
    snaplen: u32,
    /// The snaplen records are checked against: the header's, unless unusable.
    snap_limit: u32,
    next_index: u64,
    last_ts: Option<Timestamp>,
    resync: Option<Resync>,
}

impl PcapParser {
    pub fn new() -> Self {
        PcapParser {
            header_done: false,
            big_endian: false,
            nanos: false,
            record_header_len: 16,
            link_type: LinkType::ETHERNET,
            snaplen: 0,
            snap_limit: MAX_FRAME_LEN,
            next_index: 1,
            last_ts: None,
            resync: None,
        }
    }

    fn header_at(&self, b: &[u8]) -> Option<RecordHeader> {
        let be = self.big_endian;
        Some(RecordHeader {
            secs: u32_at(b, 0, be)?,
            fraction: u32_at(b, 4, be)?,
            caplen: u32_at(b, 8, be)?,
            origlen: u32_at(b, 12, be)?,
        })
    }

    fn ts(&self, h: &RecordHeader) -> Timestamp {
        let nanos = if self.nanos {
            i64::from(h.fraction)
        } else {
            i64::from(h.fraction) * 1000
        };
        Timestamp::from_secs_nanos(i64::from(h.secs), 0).saturating_add_nanos(nanos)
    }

    fn plausible(&self, h: &RecordHeader) -> bool {
        h.caplen <= self.snap_limit && self.plausible_but_snaplen(h)
    }

    /// Plausible when the header snaplen may be the thing that is wrong.
    fn plausible_but_snaplen(&self, h: &RecordHeader) -> bool {
        let frac_limit = if self.nanos { 1_000_000_000 } else { 1_000_000 };
        h.caplen <= MAX_FRAME_LEN && h.caplen <= h.origlen && h.fraction < frac_limit
    }

    /// Is there a plausible record at the start of `w`, followed by a plausible
    /// header (or the exact end)? Used when resynchronising.
    fn candidate(&self, w: &[u8], eof: bool) -> Candidate {
        let hl = self.record_header_len;
        let Some(h) = self.header_at(w).filter(|_| w.len() >= hl) else {
            return if eof {
                Candidate::No
            } else {
                Candidate::NeedMore(hl)
            };
        };
        if !self.plausible(&h) || h.origlen == 0 || h.origlen > MAX_FRAME_LEN {
            return Candidate::No;
        }
        let ts = self.ts(&h);
        if let Some(last) = self.last_ts {
            if ts.nanos_since(last).abs() > RESYNC_TIME_WINDOW_NS {
                return Candidate::No;
            }
        }
        let next = hl + h.caplen as usize;
        if w.len() < next + hl {
            if !eof {
                return Candidate::NeedMore(next + hl);
            }
            // The exact end, or a cut-short header the normal path reports.
            // Without an earlier frame to compare times with, one header is
            // too weak a proof: random bytes pass it too often.
            return if w.len() >= next && self.last_ts.is_some() {
                Candidate::Yes
            } else {
                Candidate::No
            };
        }
        match self.header_at(&w[next..]) {
            Some(n)
                if self.plausible(&n)
                    && self.ts(&n).nanos_since(ts).abs() <= RESYNC_TIME_WINDOW_NS =>
            {
                Candidate::Yes
            }
            _ => Candidate::No,
        }
    }

    /// Does a plausible record header (or the exact end) follow a record of
    /// `caplen` bytes at the start of `win`?
    fn framing_holds(&self, win: &[u8], caplen: usize, eof: bool) -> Option<bool> {
        let next = self.record_header_len + caplen;
        if win.len() == next && eof {
            return Some(true);
        }
        if win.len() < next + self.record_header_len {
            return if eof { Some(false) } else { None };
        }
        Some(
            self.header_at(&win[next..])
                .is_some_and(|n| self.plausible_but_snaplen(&n)),
        )
    }

    fn begin_resync(&mut self, base: u64, what: Damage) -> Step {
        self.resync = Some(Resync {
            start: base,
            frame: None,
            what,
        });
        Step::Skip(1)
    }

    fn file_header(&mut self, win: &[u8], eof: bool, ledger: &mut Ledger) -> Step {
        if win.len() < FILE_HEADER_LEN {
            if !eof {
                return Step::NeedMore(FILE_HEADER_LEN);
            }
            ledger.damage(
                0,
                None,
                Damage::TruncatedFileHeader {
                    have: win.len() as u64,
                    need: FILE_HEADER_LEN as u64,
                },
                Recovery::SkippedToEnd {
                    skipped: win.len() as u64,
                },
            );
            self.header_done = true;
            return if win.is_empty() {
                Step::End
            } else {
                Step::Skip(win.len())
            };
        }
        let magic = u32_at(win, 0, false).unwrap_or(0);
        // The modified format's magic comes in both orders; pcap-parser knows
        // only the little-endian one, so it is recognised here.
        let modified = magic == MAGIC_MODIFIED || magic == MAGIC_MODIFIED.swap_bytes();
        self.big_endian = matches!(
            magic,
            m if m == MAGIC_US.swap_bytes() || m == MAGIC_NS.swap_bytes() || m == MAGIC_MODIFIED.swap_bytes()
        );
        self.nanos = magic == MAGIC_NS || magic == MAGIC_NS.swap_bytes();
        self.record_header_len = if modified { 24 } else { 16 };
        let (network, snaplen) = match parse_pcap_header(&win[..FILE_HEADER_LEN]) {
            Ok((_, h)) => (h.network.0 as u32, h.snaplen),
            Err(_) => {
                let be = self.big_endian;
                (
                    u32_at(win, 20, be).unwrap_or(1),
                    u32_at(win, 16, be).unwrap_or(0),
                )
            }
        };
        // The upper bits of the field carry FCS information (pcap spec,
        // LinkType and additional information); the link type is the low 16.
        self.link_type = LinkType(network & 0xffff);
        self.snaplen = snaplen;
        if snaplen == 0 || snaplen == u32::MAX {
            ledger.damage(
                16,
                None,
                Damage::BadSnaplen { snaplen },
                Recovery::Continued,
            );
            self.snap_limit = MAX_FRAME_LEN;
        } else {
            self.snap_limit = snaplen.min(MAX_FRAME_LEN);
        }
        self.header_done = true;
        Step::Skip(FILE_HEADER_LEN)
    }

    /// The next step for the window `win`, which starts at input offset `base`.
    pub fn step(&mut self, win: &[u8], base: u64, eof: bool, ledger: &mut Ledger) -> Step {
        if !self.header_done {
            return self.file_header(win, eof, ledger);
        }
        if self.resync.is_some() {
            let mut pending = self.resync.take();
            let this = &*self;
            let found = resync_scan(win, base, eof, &mut pending, ledger, |w| {
                this.candidate(w, eof)
            });
            self.resync = pending;
            if let Some(step) = found {
                return step;
            }
        }
        let hl = self.record_header_len;
        if win.len() < hl {
            if !eof {
                return Step::NeedMore(hl);
            }
            if win.is_empty() {
                return Step::End;
            }
            ledger.damage(
                base,
                None,
                Damage::TruncatedHeader {
                    left: win.len() as u64,
                },
                Recovery::SkippedToEnd {
                    skipped: win.len() as u64,
                },
            );
            return Step::Skip(win.len());
        }
        let Some(h) = self.header_at(win) else {
            return Step::Skip(win.len());
        };
        let left = (win.len() - hl) as u64;
        if h.caplen > MAX_FRAME_LEN {
            // Say "overruns" only when the input's end is in sight, so a map
            // and a stream of the same bytes report the same damage.
            let horizon = hl + MAX_FRAME_LEN as usize + 1;
            if !eof && win.len() < horizon {
                return Step::NeedMore(horizon);
            }
            let what = if eof && win.len() < horizon && u64::from(h.caplen) > left {
                Damage::RecordOverrun {
                    len: h.caplen.into(),
                    left,
                }
            } else {
                Damage::RecordTooLong {
                    len: h.caplen.into(),
                    max: MAX_FRAME_LEN.into(),
                }
            };
            return self.begin_resync(base, what);
        }
        let caplen = h.caplen as usize;
        if win.len() < hl + caplen {
            if !eof {
                return Step::NeedMore(hl + caplen);
            }
            return self.begin_resync(
                base,
                Damage::RecordOverrun {
                    len: h.caplen.into(),
                    left,
                },
            );
        }
        if !self.plausible(&h) {
            match self.framing_holds(win, caplen, eof) {
                None => return Step::NeedMore(2 * hl + caplen),
                Some(false) => {
                    return self.begin_resync(
                        base,
                        Damage::ImplausibleRecord {
                            caplen: h.caplen,
                            origlen: h.origlen,
                            snaplen: self.snaplen,
                            fraction: h.fraction,
                        },
                    )
                }
                Some(true) => {
                    let what = if h.caplen > h.origlen {
                        Damage::CaplenOverOrigLen {
                            caplen: h.caplen,
                            origlen: h.origlen,
                        }
                    } else if self.plausible_but_snaplen(&h) {
                        // Only the header snaplen is wrong (some writers put
                        // 65535 and then store jumbo frames): say it once and
                        // stop checking records against it.
                        self.snap_limit = MAX_FRAME_LEN;
                        Damage::SnaplenExceeded {
                            snaplen: self.snaplen,
                            caplen: h.caplen,
                        }
                    } else {
                        Damage::ImplausibleRecord {
                            caplen: h.caplen,
                            origlen: h.origlen,
                            snaplen: self.snaplen,
                            fraction: h.fraction,
                        }
                    };
                    ledger.damage(base, Some(self.next_index), what, Recovery::Delivered);
                }
            }
        }
        if h.caplen < h.origlen {
            ledger.stats.snaplen_truncated += 1;
        }
        let ts = self.ts(&h);
        self.last_ts = Some(ts);
        let index = self.next_index;
        self.next_index += 1;
        Step::Frame {
            meta: FrameMeta {
                index,
                ts,
                link_type: self.link_type,
                orig_len: h.origlen,
                offset: hl,
                len: h.caplen,
            },
            consumed: hl + caplen,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn file(be: bool, magic: u32, snaplen: u32, records: &[(u32, u32, &[u8], u32)]) -> Vec<u8> {
        let w32 = |v: &mut Vec<u8>, x: u32| {
            v.extend_from_slice(&if be { x.to_be_bytes() } else { x.to_le_bytes() })
        };
        let mut v = Vec::new();
        w32(&mut v, magic);
        let (maj, min) = if be {
            ([0, 2], [0, 4])
        } else {
            ([2, 0], [4, 0])
        };
        v.extend_from_slice(&maj);
        v.extend_from_slice(&min);
        w32(&mut v, 0);
        w32(&mut v, 0);
        w32(&mut v, snaplen);
        w32(&mut v, 1);
        for &(s, f, data, orig) in records {
            w32(&mut v, s);
            w32(&mut v, f);
            w32(&mut v, data.len() as u32);
            w32(&mut v, orig);
            v.extend_from_slice(data);
        }
        v
    }

    /// Runs the parser over a whole buffer, as the memory-map path does.
    fn run(bytes: &[u8]) -> (Vec<FrameMeta>, Ledger) {
        let mut p = PcapParser::new();
        let mut ledger = Ledger::new(Arc::from("t.pcap"));
        let mut pos = 0;
        let mut frames = Vec::new();
        for _ in 0..100_000 {
            match p.step(&bytes[pos..], pos as u64, true, &mut ledger) {
                Step::Frame { mut meta, consumed } => {
                    meta.offset += pos;
                    frames.push(meta);
                    pos += consumed;
                }
                Step::Skip(n) => pos += n,
                Step::NeedMore(_) => panic!("NeedMore at eof"),
                Step::End => break,
            }
        }
        (frames, ledger)
    }

    #[test]
    fn reads_big_endian_nanosecond_records() {
        let f = file(true, MAGIC_NS, 65535, &[(10, 999_999_999, b"abcd", 60)]);
        let (frames, ledger) = run(&f);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].ts, Timestamp::from_secs_nanos(10, 999_999_999));
        assert_eq!(&f[frames[0].offset..frames[0].offset + 4], b"abcd");
        assert_eq!(ledger.stats.snaplen_truncated, 1);
        assert!(ledger.warnings.is_empty());
    }

    #[test]
    fn implausible_but_framed_record_is_delivered_with_warning() {
        let f = file(
            false,
            MAGIC_US,
            65535,
            &[(10, 0, b"abcdef", 4), (10, 1, b"xy", 2)],
        );
        let (frames, ledger) = run(&f);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].index, 2);
        assert_eq!(
            ledger.warnings[0].what,
            Damage::CaplenOverOrigLen {
                caplen: 6,
                origlen: 4
            }
        );
        assert_eq!(ledger.warnings[0].recovery, Recovery::Delivered);
    }

    #[test]
    fn header_snaplen_below_real_records_is_reported_once() {
        let big = [7u8; 100];
        let f = file(
            false,
            MAGIC_US,
            64,
            &[(1, 0, &big, 100), (2, 0, &big, 100), (3, 0, &big[..10], 10)],
        );
        let (frames, ledger) = run(&f);
        assert_eq!(frames.len(), 3);
        assert_eq!(ledger.warnings.len(), 1);
        assert_eq!(
            ledger.warnings[0].what,
            Damage::SnaplenExceeded {
                snaplen: 64,
                caplen: 100
            }
        );
        assert_eq!(ledger.stats.damaged, 1);
    }

    #[test]
    fn garbage_between_records_is_resynchronised() {
        let mut f = file(false, MAGIC_US, 65535, &[(10, 0, b"aaaa", 4)]);
        f.extend_from_slice(&[0xff; 37]);
        let tail = file(
            false,
            MAGIC_US,
            65535,
            &[(11, 0, b"bbbb", 4), (12, 0, b"cc", 2)],
        );
        f.extend_from_slice(&tail[24..]);
        let (frames, ledger) = run(&f);
        assert_eq!(frames.len(), 3);
        assert_eq!(&f[frames[1].offset..frames[1].offset + 4], b"bbbb");
        assert_eq!(ledger.stats.resyncs, 1);
        assert_eq!(
            ledger.warnings[0].recovery,
            Recovery::Resynced {
                at: 24 + 20 + 37,
                skipped: 37
            }
        );
    }

    #[test]
    fn header_only_and_short_header() {
        let f = file(false, MAGIC_US, 65535, &[]);
        let (frames, ledger) = run(&f);
        assert!(frames.is_empty());
        assert!(ledger.warnings.is_empty());
        let (frames, ledger) = run(&f[..10]);
        assert!(frames.is_empty());
        assert_eq!(
            ledger.warnings[0].what,
            Damage::TruncatedFileHeader { have: 10, need: 24 }
        );
    }

    #[test]
    fn modified_format_has_24_byte_record_headers() {
        let mut f = file(false, MAGIC_MODIFIED, 65535, &[]);
        for (secs, data) in [(1u32, b"abc".as_slice()), (2, b"de")] {
            f.extend_from_slice(&secs.to_le_bytes());
            f.extend_from_slice(&0u32.to_le_bytes());
            f.extend_from_slice(&(data.len() as u32).to_le_bytes());
            f.extend_from_slice(&(data.len() as u32).to_le_bytes());
            f.extend_from_slice(&[0; 8]); // ifindex, protocol, pkt_type, pad
            f.extend_from_slice(data);
        }
        let (frames, ledger) = run(&f);
        assert_eq!(frames.len(), 2);
        assert_eq!(&f[frames[1].offset..frames[1].offset + 2], b"de");
        assert!(ledger.warnings.is_empty());
    }

    #[test]
    fn magic_detection() {
        assert!(is_pcap_magic(0xa1b2_c3d4));
        assert!(is_pcap_magic(0xd4c3_b2a1));
        assert!(is_pcap_magic(0x4d3c_b2a1));
        assert!(is_pcap_magic(0x34cd_b2a1));
        assert!(!is_pcap_magic(0x0a0d_0d0a));
    }
}
