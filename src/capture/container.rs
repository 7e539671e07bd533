//! The contract between the reader (which owns the bytes: a memory map or a
//! bounded stream buffer) and the container parsers (pcap, pcapng), which see
//! only a window of bytes starting at their current position and say what
//! the next step is. Also the ledger both sides write damage into. Nothing here
//! does I/O.

use std::sync::Arc;

use serde::Serialize;

use super::damage::{CaptureWarning, Damage, Recovery};
use super::FrameMeta;

/// Largest captured frame accepted (16 MiB). Wireshark's own per-link-type
/// limits are 256 KiB for Ethernet and up to 128 MiB for exotic link types;
/// IM traffic never comes near this, and it bounds what a hostile length can
/// make a stream reader buffer.
pub const MAX_FRAME_LEN: u32 = 16 << 20;

/// Largest pcapng block accepted: a maximum frame plus room for options.
pub const MAX_BLOCK_LEN: u32 = MAX_FRAME_LEN + (1 << 20);

/// What a container parser found at the start of its window.
#[derive(Debug)]
pub(crate) enum Step {
    /// A frame; `meta.offset` is relative to the window start. Consume `consumed`.
    Frame { meta: FrameMeta, consumed: usize },
    /// Consume this many bytes that carry no frame (headers, other blocks,
    /// damaged ranges). Never 0.
    Skip(usize),
    /// The window must hold at least this many bytes before the parser can
    /// decide (only when the input is not at its end). Bounded by
    /// [`MAX_BLOCK_LEN`] plus a header.
    NeedMore(usize),
    /// Nothing left.
    End,
}

/// Counters of one input, for `--stats` and the run manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CaptureStats {
    /// Frames delivered.
    pub frames: u64,
    /// Captured bytes of the delivered frames.
    pub captured_bytes: u64,
    /// Damaged records, blocks or headers (each warning counts once).
    pub damaged: u64,
    /// Delivered frames shorter than on the wire (caplen < origlen).
    pub snaplen_truncated: u64,
    /// Times the reader scanned forward to the next plausible record or block.
    pub resyncs: u64,
    /// Bytes stepped over because they were damaged.
    pub skipped_bytes: u64,
    /// pcapng blocks of a type this reader does not know, skipped (not damage).
    pub unknown_blocks: u64,
    /// Input bytes consumed so far (compressed bytes for gzip), for progress.
    pub bytes_read: u64,
    /// Total input size, when known (regular files).
    pub total_bytes: Option<u64>,
}

/// Where parsers record damage: warnings waiting for `take_warnings` and the
/// counters.
#[derive(Debug)]
pub(crate) struct Ledger {
    pub file: Arc<str>,
    pub warnings: Vec<CaptureWarning>,
    pub stats: CaptureStats,
}

impl CaptureStats {
    /// Add another input's counters (sizes add up; progress fields too).
    pub fn merge(&mut self, o: &CaptureStats) {
        self.frames += o.frames;
        self.captured_bytes += o.captured_bytes;
        self.damaged += o.damaged;
        self.snaplen_truncated += o.snaplen_truncated;
        self.resyncs += o.resyncs;
        self.skipped_bytes += o.skipped_bytes;
        self.unknown_blocks += o.unknown_blocks;
        self.bytes_read += o.bytes_read;
        self.total_bytes = match (self.total_bytes, o.total_bytes) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }
}

impl Ledger {
    pub fn new(file: Arc<str>) -> Self {
        Ledger {
            file,
            warnings: Vec::new(),
            stats: CaptureStats::default(),
        }
    }

    pub fn damage(&mut self, offset: u64, frame: Option<u64>, what: Damage, recovery: Recovery) {
        self.stats.damaged += 1;
        match recovery {
            Recovery::Skipped { bytes } => self.stats.skipped_bytes += bytes,
            Recovery::Resynced { skipped, .. } => {
                self.stats.resyncs += 1;
                self.stats.skipped_bytes += skipped;
            }
            Recovery::SkippedToEnd { skipped } => self.stats.skipped_bytes += skipped,
            Recovery::Continued | Recovery::Delivered => {}
        }
        // A hostile file can be damaged everywhere; keep the pending list
        // bounded even if the caller never drains it (the counters stay exact).
        if self.warnings.len() < 10_000 {
            self.warnings.push(CaptureWarning {
                file: self.file.clone(),
                offset,
                frame,
                what,
                recovery,
            });
        }
    }
}

/// A damaged place being stepped over: the reader scans forward for the next
/// plausible record or block, then reports the damage once with the outcome.
#[derive(Debug)]
pub(crate) struct Resync {
    pub start: u64,
    pub frame: Option<u64>,
    pub what: Damage,
}

/// Answer of a resync candidate check.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Candidate {
    Yes,
    No,
    /// Decidable once the window holds this many bytes from the candidate.
    NeedMore(usize),
}

/// Scans `win` (which starts at absolute offset `base`) for the first position
/// `check` accepts, finishing `pending` with the outcome. Shared by pcap and
/// pcapng so both step over damage the same way.
pub(crate) fn resync_scan(
    win: &[u8],
    base: u64,
    eof: bool,
    pending: &mut Option<Resync>,
    ledger: &mut Ledger,
    mut check: impl FnMut(&[u8]) -> Candidate,
) -> Option<Step> {
    for p in 0..win.len() {
        match check(&win[p..]) {
            Candidate::No => continue,
            Candidate::Yes => {
                if let Some(r) = pending.take() {
                    let at = base + p as u64;
                    ledger.damage(
                        r.start,
                        r.frame,
                        r.what,
                        Recovery::Resynced {
                            at,
                            skipped: at - r.start,
                        },
                    );
                }
                // p == 0: the caller parses normally from here.
                return if p == 0 { None } else { Some(Step::Skip(p)) };
            }
            Candidate::NeedMore(n) => {
                // Commit what is already rejected so the window can slide.
                return Some(if p > 0 {
                    Step::Skip(p)
                } else {
                    Step::NeedMore(n)
                });
            }
        }
    }
    if !eof {
        return Some(if win.is_empty() {
            Step::NeedMore(1)
        } else {
            Step::Skip(win.len())
        });
    }
    if let Some(r) = pending.take() {
        let end = base + win.len() as u64;
        ledger.damage(
            r.start,
            r.frame,
            r.what,
            Recovery::SkippedToEnd {
                skipped: end - r.start,
            },
        );
    }
    Some(if win.is_empty() {
        Step::End
    } else {
        Step::Skip(win.len())
    })
}

/// Reads a `u32` at `off` in the given byte order; `None` past the end.
#[inline]
pub(crate) fn u32_at(b: &[u8], off: usize, big_endian: bool) -> Option<u32> {
    let bytes: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(bytes)
    } else {
        u32::from_le_bytes(bytes)
    })
}

/// Reads a `u16` at `off` in the given byte order; `None` past the end.
#[inline]
pub(crate) fn u16_at(b: &[u8], off: usize, big_endian: bool) -> Option<u16> {
    let bytes: [u8; 2] = b.get(off..off.checked_add(2)?)?.try_into().ok()?;
    Some(if big_endian {
        u16::from_be_bytes(bytes)
    } else {
        u16::from_le_bytes(bytes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_orders_and_refuses_past_end() {
        let b = [1, 2, 3, 4, 5];
        assert_eq!(u32_at(&b, 0, false), Some(0x0403_0201));
        assert_eq!(u32_at(&b, 1, true), Some(0x0203_0405));
        assert_eq!(u32_at(&b, 2, true), None);
        assert_eq!(u32_at(&b, usize::MAX, true), None);
        assert_eq!(u16_at(&b, 3, true), Some(0x0405));
        assert_eq!(u16_at(&b, 4, true), None);
    }

    #[test]
    fn scan_reports_resync_once_with_offsets() {
        let mut ledger = Ledger::new(Arc::from("f"));
        let mut pending = Some(Resync {
            start: 100,
            frame: None,
            what: Damage::TruncatedHeader { left: 3 },
        });
        let win = [0u8, 0, 7, 0];
        let step = resync_scan(&win, 101, true, &mut pending, &mut ledger, |w| {
            if w[0] == 7 {
                Candidate::Yes
            } else {
                Candidate::No
            }
        });
        assert!(matches!(step, Some(Step::Skip(2))));
        assert!(pending.is_none());
        assert_eq!(ledger.stats.resyncs, 1);
        assert_eq!(ledger.stats.skipped_bytes, 3);
        assert_eq!(
            ledger.warnings[0].recovery,
            Recovery::Resynced {
                at: 103,
                skipped: 3
            }
        );
    }

    #[test]
    fn scan_without_candidate_skips_to_end() {
        let mut ledger = Ledger::new(Arc::from("f"));
        let mut pending = Some(Resync {
            start: 10,
            frame: None,
            what: Damage::TruncatedHeader { left: 3 },
        });
        let step = resync_scan(&[1, 2, 3], 11, true, &mut pending, &mut ledger, |_| {
            Candidate::No
        });
        assert!(matches!(step, Some(Step::Skip(3))));
        assert_eq!(
            ledger.warnings[0].recovery,
            Recovery::SkippedToEnd { skipped: 4 }
        );
        assert_eq!(ledger.stats.resyncs, 0);
    }
}
