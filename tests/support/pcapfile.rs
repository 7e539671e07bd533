//! pcap and pcapng writers for generated fixtures: pure Rust, into a
//! `Vec<u8>` or a file. They write what they are told, including lengths that
//! lie, so tests can build damaged captures on purpose; the plain helpers
//! ([`pcap`], [`pcapng`]) write well-formed files that tshark reads without
//! complaint.

use std::io;
use std::path::Path;

use imscan::time::Timestamp;

/// LINKTYPE_ETHERNET.
pub const ETHERNET: u32 = 1;
/// LINKTYPE_RAW (raw IPv4/IPv6).
pub const RAW: u32 = 101;
/// LINKTYPE_LINUX_SLL.
pub const LINUX_SLL: u32 = 113;

fn put_u16(v: &mut Vec<u8>, x: u16, be: bool) {
    v.extend_from_slice(&if be { x.to_be_bytes() } else { x.to_le_bytes() });
}

fn put_u32(v: &mut Vec<u8>, x: u32, be: bool) {
    v.extend_from_slice(&if be { x.to_be_bytes() } else { x.to_le_bytes() });
}

fn pad4(v: &mut Vec<u8>) {
    while v.len() % 4 != 0 {
        v.push(0);
    }
}

/// A classic pcap file being written.
#[derive(Clone, Debug)]
pub struct PcapFile {
    big_endian: bool,
    nanos: bool,
    buf: Vec<u8>,
}

impl PcapFile {
    /// A file header: byte order, µs or ns magic, link type and snaplen.
    pub fn new(big_endian: bool, nanos: bool, link_type: u32, snaplen: u32) -> Self {
        let be = big_endian;
        let mut buf = Vec::new();
        put_u32(&mut buf, if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }, be);
        put_u16(&mut buf, 2, be);
        put_u16(&mut buf, 4, be);
        put_u32(&mut buf, 0, be); // thiszone
        put_u32(&mut buf, 0, be); // sigfigs
        put_u32(&mut buf, snaplen, be);
        put_u32(&mut buf, link_type, be);
        PcapFile {
            big_endian,
            nanos,
            buf,
        }
    }

    /// A record with captured bytes `data` (caplen = data.len()) and `orig_len`.
    pub fn record(&mut self, ts: Timestamp, data: &[u8], orig_len: u32) -> &mut Self {
        let frac = if self.nanos {
            ts.subsec_nanos()
        } else {
            ts.subsec_micros()
        };
        self.raw_record(ts.secs() as u32, frac, data.len() as u32, orig_len, data)
    }

    /// A record header with any field values (they may lie) followed by `data`.
    pub fn raw_record(
        &mut self,
        secs: u32,
        fraction: u32,
        caplen: u32,
        orig_len: u32,
        data: &[u8],
    ) -> &mut Self {
        let be = self.big_endian;
        put_u32(&mut self.buf, secs, be);
        put_u32(&mut self.buf, fraction, be);
        put_u32(&mut self.buf, caplen, be);
        put_u32(&mut self.buf, orig_len, be);
        self.buf.extend_from_slice(data);
        self
    }

    /// Raw bytes appended as they are (garbage, a cut-short record).
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// Bytes held so far (the offset the next record will start at, unless
    /// [`PcapFile::take`] was used).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.buf.clone()
    }

    /// Hands over the bytes held so far and keeps writing into an empty
    /// buffer: for generating large files piece by piece.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    pub fn write_to(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, &self.buf)
    }
}

/// A well-formed little-endian microsecond pcap of `records`
/// `(timestamp, captured bytes, original length)`.
pub fn pcap(link_type: u32, records: &[(Timestamp, &[u8], u32)]) -> Vec<u8> {
    let mut f = PcapFile::new(false, false, link_type, 262_144);
    for &(ts, data, orig) in records {
        f.record(ts, data, orig);
    }
    f.bytes()
}

/// An interface description for a pcapng section.
#[derive(Clone, Copy, Debug)]
pub struct Interface {
    pub link_type: u16,
    pub snaplen: u32,
    /// if_tsresol as stored: high bit clear → 10^-n s, set → 2^-n s. Written
    /// as an option only when not 6 (the default).
    pub tsresol: u8,
    /// if_tsoffset in seconds; written only when not 0.
    pub tsoffset: i64,
}

impl Interface {
    pub fn new(link_type: u32) -> Self {
        Interface {
            link_type: link_type as u16,
            snaplen: 262_144,
            tsresol: 6,
            tsoffset: 0,
        }
    }

    pub fn tsresol(self, tsresol: u8) -> Self {
        Interface { tsresol, ..self }
    }

    pub fn tsoffset(self, tsoffset: i64) -> Self {
        Interface { tsoffset, ..self }
    }

    pub fn snaplen(self, snaplen: u32) -> Self {
        Interface { snaplen, ..self }
    }

    fn units_per_sec(&self) -> u128 {
        let n = u32::from(self.tsresol & 0x7f);
        if self.tsresol & 0x80 == 0 {
            10u128.pow(n)
        } else {
            1u128 << n
        }
    }

    /// The 64-bit timestamp of `ts` in this interface's units, after removing
    /// if_tsoffset.
    pub fn units(&self, ts: Timestamp) -> u64 {
        let per_sec = self.units_per_sec();
        let since_offset = i128::from(ts.0) - i128::from(self.tsoffset) * 1_000_000_000;
        let secs = since_offset.div_euclid(1_000_000_000) as u128;
        let nanos = since_offset.rem_euclid(1_000_000_000) as u128;
        (secs * per_sec + nanos * per_sec / 1_000_000_000) as u64
    }
}

/// A pcapng file being written: sections, interfaces and blocks in order.
#[derive(Clone, Debug)]
pub struct PcapNgFile {
    big_endian: bool,
    interfaces: Vec<Interface>,
    buf: Vec<u8>,
}

impl PcapNgFile {
    /// A file starting with a section header of the given byte order.
    pub fn new(big_endian: bool) -> Self {
        let mut f = PcapNgFile {
            big_endian,
            interfaces: Vec::new(),
            buf: Vec::new(),
        };
        f.section(big_endian);
        f
    }

    /// A new section (its own byte order; interface ids restart at 0).
    pub fn section(&mut self, big_endian: bool) -> &mut Self {
        self.big_endian = big_endian;
        self.interfaces.clear();
        let be = big_endian;
        let mut body = Vec::new();
        put_u32(&mut body, 0x1a2b_3c4d, be);
        put_u16(&mut body, 1, be);
        put_u16(&mut body, 0, be);
        body.extend_from_slice(&[0xff; 8]); // section length unknown (-1)
        self.block(0x0a0d_0d0a, &body)
    }

    /// An interface description block; returns the interface id.
    pub fn interface(&mut self, iface: Interface) -> usize {
        let be = self.big_endian;
        let mut body = Vec::new();
        put_u16(&mut body, iface.link_type, be);
        put_u16(&mut body, 0, be);
        put_u32(&mut body, iface.snaplen, be);
        if iface.tsresol != 6 {
            put_u16(&mut body, 9, be);
            put_u16(&mut body, 1, be);
            body.push(iface.tsresol);
            pad4(&mut body);
        }
        if iface.tsoffset != 0 {
            put_u16(&mut body, 14, be);
            put_u16(&mut body, 8, be);
            body.extend_from_slice(&if be {
                iface.tsoffset.to_be_bytes()
            } else {
                iface.tsoffset.to_le_bytes()
            });
        }
        if iface.tsresol != 6 || iface.tsoffset != 0 {
            put_u32(&mut body, 0, be); // opt_endofopt
        }
        self.block(1, &body);
        self.interfaces.push(iface);
        self.interfaces.len() - 1
    }

    /// An Enhanced Packet Block on interface `interface` (which must exist
    /// unless you want a damaged file: then its timestamp is written in µs).
    pub fn epb(
        &mut self,
        interface: usize,
        ts: Timestamp,
        data: &[u8],
        orig_len: u32,
    ) -> &mut Self {
        let units = self.units(interface, ts);
        self.raw_epb(interface as u32, units, data.len() as u32, orig_len, data)
    }

    fn units(&self, interface: usize, ts: Timestamp) -> u64 {
        self.interfaces
            .get(interface)
            .copied()
            .unwrap_or(Interface::new(ETHERNET))
            .units(ts)
    }

    /// An EPB with any field values (caplen may lie); `data` is padded to 4.
    pub fn raw_epb(
        &mut self,
        interface: u32,
        units: u64,
        caplen: u32,
        orig_len: u32,
        data: &[u8],
    ) -> &mut Self {
        let be = self.big_endian;
        let mut body = Vec::new();
        put_u32(&mut body, interface, be);
        put_u32(&mut body, (units >> 32) as u32, be);
        put_u32(&mut body, units as u32, be);
        put_u32(&mut body, caplen, be);
        put_u32(&mut body, orig_len, be);
        body.extend_from_slice(data);
        pad4(&mut body);
        self.block(6, &body)
    }

    /// A Simple Packet Block (interface 0, no timestamp).
    pub fn spb(&mut self, data: &[u8], orig_len: u32) -> &mut Self {
        let be = self.big_endian;
        let mut body = Vec::new();
        put_u32(&mut body, orig_len, be);
        body.extend_from_slice(data);
        pad4(&mut body);
        self.block(3, &body)
    }

    /// An obsolete Packet Block (type 2).
    pub fn obsolete_packet(
        &mut self,
        interface: usize,
        ts: Timestamp,
        data: &[u8],
        orig_len: u32,
    ) -> &mut Self {
        let units = self.units(interface, ts);
        let be = self.big_endian;
        let mut body = Vec::new();
        put_u16(&mut body, interface as u16, be);
        put_u16(&mut body, 0, be); // drops count
        put_u32(&mut body, (units >> 32) as u32, be);
        put_u32(&mut body, units as u32, be);
        put_u32(&mut body, data.len() as u32, be);
        put_u32(&mut body, orig_len, be);
        body.extend_from_slice(data);
        pad4(&mut body);
        self.block(2, &body)
    }

    /// Any block: type, body (padded to 4), both length fields.
    pub fn block(&mut self, block_type: u32, body: &[u8]) -> &mut Self {
        let be = self.big_endian;
        let padded = (body.len() + 3) & !3;
        let len = (12 + padded) as u32;
        put_u32(&mut self.buf, block_type, be);
        put_u32(&mut self.buf, len, be);
        self.buf.extend_from_slice(body);
        pad4(&mut self.buf);
        put_u32(&mut self.buf, len, be);
        self
    }

    /// Raw bytes appended as they are.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    pub fn is_big_endian(&self) -> bool {
        self.big_endian
    }

    /// Bytes held so far (the offset the next block will start at, unless
    /// [`PcapNgFile::take`] was used).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.buf.clone()
    }

    /// Hands over the bytes held so far and keeps writing into an empty
    /// buffer: for generating large files piece by piece.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    pub fn write_to(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, &self.buf)
    }
}

/// A well-formed little-endian pcapng: one section with `interfaces`, then an
/// EPB per packet `(interface, timestamp, captured bytes, original length)`.
pub fn pcapng(interfaces: &[Interface], packets: &[(usize, Timestamp, &[u8], u32)]) -> Vec<u8> {
    let mut f = PcapNgFile::new(false);
    for &iface in interfaces {
        f.interface(iface);
    }
    for &(interface, ts, data, orig) in packets {
        f.epb(interface, ts, data, orig);
    }
    f.bytes()
}
