//! The pcapng container: sections (each with its own byte order and its own
//! interface list), interface description blocks (link type, snaplen,
//! if_tsresol, if_tsoffset), and the packet blocks: Enhanced (EPB), Simple
//! (SPB) and the obsolete Packet Block (type 2). Other blocks are skipped. It
//! owns block framing, frame numbering and the damage rules for pcapng; it does
//! no I/O and knows nothing of link layers.
//!
//! Section and interface description blocks are parsed with `pcap-parser`.
//! if_tsresol and if_tsoffset are decoded here: pcap-parser 0.16 rejects every
//! power-of-2 resolution and reads if_tsoffset little-endian in big-endian
//! sections. Packet blocks are read by hand: they are the hot path, and
//! pcap-parser's EPB parser allocates for options and rejects the whole packet
//! when an option is malformed, losing decodable bytes.
//!
//! Simple Packet Blocks carry no timestamp: their frames reuse the timestamp
//! of the previous packet in the file (the epoch if there was none), so time
//! never runs backwards because of them.
//!
//! Every block's framing is checked before anything in it is trusted: length at
//! least 12 and the block's minimum, a multiple of 4, present in the input, and
//! equal to its trailing copy. A block that fails is damage: the reader scans
//! forward for the next block of a known type whose trailing length matches.
//! A packet block with intact framing but unusable content (unknown interface,
//! captured length beyond the block) is skipped and still consumes its frame
//! number, so later frames keep the numbers Wireshark would give them.

use pcap_parser::pcapng::{
    parse_interfacedescriptionblock_be, parse_interfacedescriptionblock_le,
    parse_sectionheaderblock,
};
use pcap_parser::OptionCode;

use super::container::{
    resync_scan, u16_at, u32_at, Candidate, Ledger, Resync, Step, MAX_BLOCK_LEN, MAX_FRAME_LEN,
};
use super::damage::{Damage, Recovery};
use super::{FrameMeta, LinkType};
use crate::time::Timestamp;

pub(crate) const SHB: u32 = 0x0a0d_0d0a;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const IDB: u32 = 1;
const PB_OBSOLETE: u32 = 2;
const SPB: u32 = 3;
const NRB: u32 = 4;
const ISB: u32 = 5;
const EPB: u32 = 6;
const SJE: u32 = 9;
const DSB: u32 = 10;
const CB: u32 = 0x0000_0bad;
const DCB: u32 = 0x4000_0bad;

/// Smallest legal total length of each known block type (pcapng spec,
/// draft-ietf-opsawg-pcapng section 4 and appendix A).
fn min_len(block_type: u32) -> Option<u32> {
    Some(match block_type {
        SHB => 28,
        IDB => 20,
        PB_OBSOLETE | EPB => 32,
        SPB => 16,
        NRB | SJE | DSB => 12,
        ISB => 24,
        CB | DCB => 16,
        _ => return None,
    })
}

/// One interface of the current section.
#[derive(Clone, Copy, Debug)]
struct Interface {
    link_type: LinkType,
    snaplen: u32,
    /// Timestamp units per second (10^n or 2^n).
    units_per_sec: u64,
    /// Seconds added to every timestamp (if_tsoffset).
    offset_secs: i64,
}

/// Decodes if_tsresol: high bit clear → 10^-n s, set → 2^-n s. `None` when
/// the unit does not fit in 64 bits.
fn units_per_sec(tsresol: u8) -> Option<u64> {
    let n = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(n)
    } else {
        1u64.checked_shl(n).filter(|_| n < 64)
    }
}

#[derive(Debug)]
pub(crate) struct PcapNgParser {
    big_endian: bool,
    interfaces: Vec<Interface>,
    next_index: u64,
    /// Timestamp of the last packet, reused by Simple Packet Blocks.
    last_ts: Timestamp,
    resync: Option<Resync>,
}

impl PcapNgParser {
    pub fn new() -> Self {
        PcapNgParser {
            big_endian: false,
            interfaces: Vec::new(),
            next_index: 1,
            last_ts: Timestamp::default(),
            resync: None,
        }
    }

    /// Block type and byte order of the block at the start of `w` (a section
    /// header decides its own byte order), or the bad byte-order magic.
    fn block_type(&self, w: &[u8]) -> Option<Result<(u32, bool), u32>> {
        let raw = u32_at(w, 0, false)?;
        if raw == SHB {
            let bom = u32_at(w, 8, false)?;
            return Some(if bom == BYTE_ORDER_MAGIC {
                Ok((SHB, false))
            } else if bom == BYTE_ORDER_MAGIC.swap_bytes() {
                Ok((SHB, true))
            } else {
                Err(bom)
            });
        }
        Some(Ok((u32_at(w, 0, self.big_endian)?, self.big_endian)))
    }

    /// Checks the framing of the block at the start of `win`: Ok(length) or the
    /// damage. `None`: more bytes are needed (only when not at the end).
    fn framing(&self, win: &[u8], eof: bool) -> Result<(u32, bool, u32), Option<Damage>> {
        if win.len() < 12 {
            return if eof {
                Err(Some(Damage::TruncatedHeader {
                    left: win.len() as u64,
                }))
            } else {
                Err(None)
            };
        }
        let (block_type, be) = match self.block_type(win) {
            Some(Ok(t)) => t,
            Some(Err(magic)) => return Err(Some(Damage::BadByteOrderMagic { magic })),
            None => return Err(None),
        };
        let len = u32_at(win, 4, be).unwrap_or(0);
        let min = min_len(block_type).unwrap_or(12);
        if len < min {
            return Err(Some(Damage::BlockTooShort {
                block_type,
                len,
                min,
            }));
        }
        if len % 4 != 0 {
            return Err(Some(Damage::BlockLenUnaligned { block_type, len }));
        }
        if len > MAX_BLOCK_LEN {
            // Say "overruns" only when the input's end is in sight, so a map
            // and a stream of the same bytes report the same damage.
            let horizon = MAX_BLOCK_LEN as usize + 1;
            if !eof && win.len() < horizon {
                return Err(None);
            }
            let what = if eof && win.len() < horizon && len as usize > win.len() {
                Damage::BlockOverrun {
                    block_type,
                    len: len.into(),
                    left: win.len() as u64,
                }
            } else {
                Damage::BlockTooLong {
                    block_type,
                    len: len.into(),
                    max: MAX_BLOCK_LEN.into(),
                }
            };
            return Err(Some(what));
        }
        let ulen = len as usize;
        if win.len() < ulen {
            return if eof {
                Err(Some(Damage::BlockOverrun {
                    block_type,
                    len: len.into(),
                    left: win.len() as u64,
                }))
            } else {
                Err(None)
            };
        }
        let trailer = u32_at(win, ulen - 4, be).unwrap_or(!len);
        if trailer != len {
            return Err(Some(Damage::BlockTrailerMismatch {
                block_type,
                len,
                trailer,
            }));
        }
        Ok((block_type, be, len))
    }

    /// A resync candidate: a block of a known type with intact framing; a
    /// packet block must also name an existing interface.
    fn candidate(&self, w: &[u8], eof: bool) -> Candidate {
        if w.len() < 12 {
            return if eof {
                Candidate::No
            } else {
                Candidate::NeedMore(12)
            };
        }
        let Some(Ok((block_type, be))) = self.block_type(w) else {
            return Candidate::No;
        };
        let Some(min) = min_len(block_type) else {
            return Candidate::No;
        };
        let Some(len) = u32_at(w, 4, be) else {
            return Candidate::No;
        };
        if len < min || len % 4 != 0 || len > MAX_BLOCK_LEN {
            return Candidate::No;
        }
        let ulen = len as usize;
        if w.len() < ulen {
            return if eof {
                Candidate::No
            } else {
                Candidate::NeedMore(ulen)
            };
        }
        if u32_at(w, ulen - 4, be) != Some(len) {
            return Candidate::No;
        }
        let iface_ok = match block_type {
            EPB => u32_at(w, 8, be).is_some_and(|i| (i as usize) < self.interfaces.len()),
            PB_OBSOLETE => u16_at(w, 8, be).is_some_and(|i| (i as usize) < self.interfaces.len()),
            SPB => !self.interfaces.is_empty(),
            _ => true,
        };
        if iface_ok {
            Candidate::Yes
        } else {
            Candidate::No
        }
    }

    fn section_header(&mut self, block: &[u8], be: bool, base: u64, ledger: &mut Ledger) {
        self.big_endian = be;
        // Interface ids are per section (pcapng spec 4.2).
        self.interfaces.clear();
        match parse_sectionheaderblock(block) {
            Ok((_, shb)) if shb.major_version != 1 => ledger.damage(
                base,
                None,
                Damage::UnsupportedVersion {
                    major: shb.major_version,
                    minor: shb.minor_version,
                },
                Recovery::Continued,
            ),
            Ok(_) => {}
            Err(_) => ledger.damage(
                base,
                None,
                Damage::CorruptBlock { block_type: SHB },
                Recovery::Continued,
            ),
        }
    }

    fn interface_description(&mut self, block: &[u8], be: bool, base: u64, ledger: &mut Ledger) {
        let parsed = if be {
            parse_interfacedescriptionblock_be(block)
        } else {
            parse_interfacedescriptionblock_le(block)
        };
        let mut iface = Interface {
            link_type: LinkType(u32::from(u16_at(block, 8, be).unwrap_or(1))),
            snaplen: u32_at(block, 12, be).unwrap_or(0),
            units_per_sec: 1_000_000,
            offset_secs: 0,
        };
        match parsed {
            Ok((_, idb)) => {
                for opt in &idb.options {
                    let Some(value) = opt.as_bytes() else {
                        continue;
                    };
                    if opt.code == OptionCode::IfTsresol {
                        if let Some(&r) = value.first() {
                            match units_per_sec(r) {
                                Some(u) => iface.units_per_sec = u,
                                None => ledger.damage(
                                    base,
                                    None,
                                    Damage::BadTsresol { tsresol: r },
                                    Recovery::Continued,
                                ),
                            }
                        }
                    } else if opt.code == OptionCode::IfTsoffset {
                        if let Ok(bytes) = <[u8; 8]>::try_from(value) {
                            iface.offset_secs = if be {
                                i64::from_be_bytes(bytes)
                            } else {
                                i64::from_le_bytes(bytes)
                            };
                        }
                    }
                }
            }
            Err(_) => ledger.damage(
                base,
                None,
                Damage::CorruptBlock { block_type: IDB },
                Recovery::Continued,
            ),
        }
        self.interfaces.push(iface);
    }

    fn timestamp(iface: &Interface, high: u32, low: u32) -> Timestamp {
        let units = (u64::from(high) << 32) | u64::from(low);
        let per_sec = iface.units_per_sec.max(1);
        let secs = i64::try_from(units / per_sec).unwrap_or(i64::MAX);
        let frac = units % per_sec;
        // Truncates below a nanosecond, as Wireshark does.
        let nanos = (u128::from(frac) * 1_000_000_000 / u128::from(per_sec)) as u32;
        Timestamp::from_secs_nanos(secs.saturating_add(iface.offset_secs), nanos)
    }

    /// A packet block with intact framing: deliver it, or skip it with a
    /// warning (its frame number is consumed either way).
    fn packet(
        &mut self,
        block: &[u8],
        block_type: u32,
        be: bool,
        base: u64,
        ledger: &mut Ledger,
    ) -> Step {
        let index = self.next_index;
        self.next_index += 1;
        let len = block.len();
        let skip = |ledger: &mut Ledger, what: Damage| {
            ledger.damage(
                base,
                Some(index),
                what,
                Recovery::Skipped { bytes: len as u64 },
            );
            Step::Skip(len)
        };
        // (interface, timestamp high/low, caplen, origlen, data offset)
        let fields = match block_type {
            EPB => (
                u32_at(block, 8, be),
                u32_at(block, 12, be),
                u32_at(block, 16, be),
                u32_at(block, 20, be),
                u32_at(block, 24, be),
                28usize,
            ),
            PB_OBSOLETE => (
                u16_at(block, 8, be).map(u32::from),
                u32_at(block, 12, be),
                u32_at(block, 16, be),
                u32_at(block, 20, be),
                u32_at(block, 24, be),
                28usize,
            ),
            _ => {
                // Simple Packet Block: interface 0, no timestamp, and the
                // captured length is implied by origlen, the block and the
                // interface's snaplen (pcapng spec 4.4).
                let origlen = u32_at(block, 8, be).unwrap_or(0);
                let Some(iface) = self.interfaces.first().copied() else {
                    return skip(
                        ledger,
                        Damage::UnknownInterface {
                            interface: 0,
                            known: 0,
                        },
                    );
                };
                let room = (len - 16) as u32;
                let mut caplen = origlen.min(room);
                if iface.snaplen != 0 {
                    caplen = caplen.min(iface.snaplen);
                }
                if caplen < origlen {
                    ledger.stats.snaplen_truncated += 1;
                }
                return Step::Frame {
                    meta: FrameMeta {
                        index,
                        ts: self.last_ts,
                        link_type: iface.link_type,
                        orig_len: origlen,
                        offset: 12,
                        len: caplen,
                    },
                    consumed: len,
                };
            }
        };
        let (Some(if_id), Some(high), Some(low), Some(caplen), Some(origlen), data_at) = fields
        else {
            return skip(ledger, Damage::CorruptBlock { block_type });
        };
        let Some(iface) = self.interfaces.get(if_id as usize).copied() else {
            return skip(
                ledger,
                Damage::UnknownInterface {
                    interface: if_id,
                    known: self.interfaces.len() as u32,
                },
            );
        };
        let room = (len - data_at - 4) as u32;
        if caplen > room || caplen > MAX_FRAME_LEN {
            return skip(
                ledger,
                Damage::PacketOverrunsBlock {
                    block_type,
                    caplen,
                    room,
                },
            );
        }
        if caplen > origlen {
            ledger.damage(
                base,
                Some(index),
                Damage::CaplenOverOrigLen { caplen, origlen },
                Recovery::Delivered,
            );
        } else if caplen < origlen {
            ledger.stats.snaplen_truncated += 1;
        }
        let ts = Self::timestamp(&iface, high, low);
        self.last_ts = ts;
        Step::Frame {
            meta: FrameMeta {
                index,
                ts,
                link_type: iface.link_type,
                orig_len: origlen,
                offset: data_at,
                len: caplen,
            },
            consumed: len,
        }
    }

    /// The next step for the window `win`, which starts at input offset `base`.
    pub fn step(&mut self, win: &[u8], base: u64, eof: bool, ledger: &mut Ledger) -> Step {
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
        if win.is_empty() {
            return if eof { Step::End } else { Step::NeedMore(12) };
        }
        let (block_type, be, len) = match self.framing(win, eof) {
            Ok(f) => f,
            Err(None) => {
                let be = self
                    .block_type(win)
                    .and_then(|r| r.ok())
                    .is_some_and(|(_, be)| be);
                let want = u32_at(win, 4, be)
                    .unwrap_or(12)
                    .clamp(12, MAX_BLOCK_LEN + 1);
                return Step::NeedMore(want as usize);
            }
            Err(Some(what)) => {
                if base == 0 {
                    // The first block is the section header that told us this
                    // is pcapng; without it nothing is trustworthy.
                    ledger.damage(
                        0,
                        None,
                        what,
                        Recovery::SkippedToEnd {
                            skipped: win.len() as u64,
                        },
                    );
                    return Step::Skip(win.len());
                }
                self.resync = Some(Resync {
                    start: base,
                    frame: None,
                    what,
                });
                return Step::Skip(1);
            }
        };
        let block = &win[..len as usize];
        match block_type {
            SHB => self.section_header(block, be, base, ledger),
            IDB => self.interface_description(block, be, base, ledger),
            EPB | SPB | PB_OBSOLETE => return self.packet(block, block_type, be, base, ledger),
            t if min_len(t).is_none() => ledger.stats.unknown_blocks += 1,
            _ => {}
        }
        Step::Skip(len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsresol_both_forms() {
        assert_eq!(units_per_sec(6), Some(1_000_000));
        assert_eq!(units_per_sec(9), Some(1_000_000_000));
        assert_eq!(units_per_sec(19), Some(10_000_000_000_000_000_000));
        assert_eq!(units_per_sec(20), None);
        assert_eq!(units_per_sec(0x80 | 10), Some(1024));
        assert_eq!(units_per_sec(0x80 | 63), Some(1 << 63));
        assert_eq!(units_per_sec(0x80 | 64), None);
    }

    #[test]
    fn timestamp_with_offset_and_binary_fraction() {
        let iface = Interface {
            link_type: LinkType::ETHERNET,
            snaplen: 0,
            units_per_sec: 1024,
            offset_secs: -5,
        };
        // 100.5 s in 1/1024 s units.
        let ts = PcapNgParser::timestamp(&iface, 0, 100 * 1024 + 512);
        assert_eq!(ts, Timestamp::from_secs_nanos(95, 500_000_000));
        let huge = Interface {
            units_per_sec: 1,
            offset_secs: i64::MAX,
            ..iface
        };
        assert_eq!(
            PcapNgParser::timestamp(&huge, u32::MAX, u32::MAX).0,
            i64::MAX
        );
    }

    #[test]
    fn minimum_lengths_cover_packet_blocks() {
        assert_eq!(min_len(EPB), Some(32));
        assert_eq!(min_len(SPB), Some(16));
        assert_eq!(min_len(0x1234), None);
    }
}
