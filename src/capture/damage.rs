//! What can go wrong reading a capture: fatal errors that stop an input
//! ([`CaptureError`], exit code 2) and damage that is reported, counted and
//! stepped over ([`CaptureWarning`]). It owns the wording users see; it does not
//! decide what is damaged (the container parsers do).

use std::fmt;
use std::io;
use std::sync::Arc;

use serde::Serialize;

/// An input that cannot be read at all. Display is one line naming the file.
#[derive(Debug)]
pub enum CaptureError {
    /// The file could not be opened, inspected or mapped.
    Open { file: String, err: io::Error },
    /// Reading the first bytes failed (I/O or gzip error).
    Read { file: String, err: io::Error },
    /// The input (or the content of a gzip input) has no bytes at all.
    Empty { file: String, gzip: bool },
    /// The first bytes are no pcap, pcapng or gzip magic.
    NotCapture {
        file: String,
        first: Vec<u8>,
        /// The bytes were the decompressed content of a gzip file.
        gzip: bool,
    },
}

impl CaptureError {
    pub fn file(&self) -> &str {
        match self {
            CaptureError::Open { file, .. }
            | CaptureError::Read { file, .. }
            | CaptureError::Empty { file, .. }
            | CaptureError::NotCapture { file, .. } => file,
        }
    }
}

/// `io::Error` without the ` (os error 2)` suffix: users need the reason, not
/// the errno.
fn io_reason(err: &io::Error) -> String {
    let text = err.to_string();
    match err.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .map(str::to_owned)
            .unwrap_or(text),
        None => text,
    }
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::Open { file, err } => write!(f, "{file}: {}", io_reason(err)),
            CaptureError::Read { file, err } => {
                write!(f, "{file}: cannot read: {}", io_reason(err))
            }
            CaptureError::Empty { file, gzip: false } => {
                write!(f, "{file}: empty file (0 bytes), not a pcap or pcapng file")
            }
            CaptureError::Empty { file, gzip: true } => {
                write!(
                    f,
                    "{file}: gzip content is empty, not a pcap or pcapng file"
                )
            }
            CaptureError::NotCapture { file, first, gzip } => write!(
                f,
                "{file}: {}not a pcap or pcapng file (first bytes {})",
                if *gzip { "gzip content is " } else { "" },
                hex_bytes(first)
            ),
        }
    }
}

impl std::error::Error for CaptureError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CaptureError::Open { err, .. } | CaptureError::Read { err, .. } => Some(err),
            _ => None,
        }
    }
}

/// What was wrong at one place in a capture.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Damage {
    /// The file ends inside its pcap file header or first block header.
    TruncatedFileHeader { have: u64, need: u64 },
    /// pcap file header snaplen is 0 or 2^32-1; records are checked against
    /// the built-in maximum instead.
    BadSnaplen { snaplen: u32 },
    /// Fewer bytes than a record or block header are left at the end.
    TruncatedHeader { left: u64 },
    /// A pcap record claims more bytes than the file has left.
    RecordOverrun { len: u64, left: u64 },
    /// A pcap record claims more than any frame imscan accepts.
    RecordTooLong { len: u64, max: u64 },
    /// A record longer than the file header's snaplen, with intact framing:
    /// the header snaplen is wrong and is ignored from here on.
    SnaplenExceeded { snaplen: u32, caplen: u32 },
    /// A pcap record header that cannot be real (lengths or sub-second field).
    ImplausibleRecord {
        caplen: u32,
        origlen: u32,
        snaplen: u32,
        fraction: u32,
    },
    /// A pcapng block length below the block's minimum size.
    BlockTooShort { block_type: u32, len: u32, min: u32 },
    /// A pcapng block length that is not a multiple of 4.
    BlockLenUnaligned { block_type: u32, len: u32 },
    /// A pcapng block claims more bytes than the file has left.
    BlockOverrun {
        block_type: u32,
        len: u64,
        left: u64,
    },
    /// A pcapng block claims more than any block imscan accepts.
    BlockTooLong { block_type: u32, len: u64, max: u64 },
    /// The trailing copy of a pcapng block length differs from the leading one.
    BlockTrailerMismatch {
        block_type: u32,
        len: u32,
        trailer: u32,
    },
    /// A section header whose byte-order magic is neither order.
    BadByteOrderMagic { magic: u32 },
    /// A packet block whose captured length does not fit in the block.
    PacketOverrunsBlock {
        block_type: u32,
        caplen: u32,
        room: u32,
    },
    /// A packet block naming an interface the section never described.
    UnknownInterface { interface: u32, known: u32 },
    /// A packet whose captured length exceeds its original length.
    CaplenOverOrigLen { caplen: u32, origlen: u32 },
    /// An interface with an if_tsresol value no timestamp can use.
    BadTsresol { tsresol: u8 },
    /// A pcapng section of a major version this reader does not know.
    UnsupportedVersion { major: u16, minor: u16 },
    /// A pcapng block with intact framing whose body could not be parsed.
    CorruptBlock { block_type: u32 },
    /// The gzip stream or the underlying read failed mid-way.
    ReadFailed { reason: String },
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::TruncatedFileHeader { have, need } => {
                write!(f, "file header cut short ({have} of {need} bytes)")
            }
            Damage::BadSnaplen { snaplen } => write!(
                f,
                "file header snaplen {snaplen} is not usable; record lengths checked against the built-in maximum"
            ),
            Damage::TruncatedHeader { left } => {
                write!(f, "header cut short ({left} bytes left)")
            }
            Damage::RecordOverrun { len, left } => {
                write!(f, "record length {len} overruns the file ({left} bytes left)")
            }
            Damage::RecordTooLong { len, max } => {
                write!(f, "record length {len} exceeds the maximum frame size {max}")
            }
            Damage::SnaplenExceeded { snaplen, caplen } => write!(
                f,
                "record length {caplen} exceeds the file header snaplen {snaplen}; snaplen ignored from here on"
            ),
            Damage::ImplausibleRecord {
                caplen,
                origlen,
                snaplen,
                fraction,
            } => write!(
                f,
                "implausible record header (caplen {caplen}, origlen {origlen}, snaplen {snaplen}, sub-second {fraction})"
            ),
            Damage::BlockTooShort {
                block_type,
                len,
                min,
            } => write!(
                f,
                "block type 0x{block_type:08x} length {len} is shorter than its minimum {min}"
            ),
            Damage::BlockLenUnaligned { block_type, len } => write!(
                f,
                "block type 0x{block_type:08x} length {len} is not a multiple of 4"
            ),
            Damage::BlockOverrun {
                block_type,
                len,
                left,
            } => write!(
                f,
                "block type 0x{block_type:08x} length {len} overruns the file ({left} bytes left)"
            ),
            Damage::BlockTooLong {
                block_type,
                len,
                max,
            } => write!(
                f,
                "block type 0x{block_type:08x} length {len} exceeds the maximum block size {max}"
            ),
            Damage::BlockTrailerMismatch {
                block_type,
                len,
                trailer,
            } => write!(
                f,
                "block type 0x{block_type:08x} length {len} does not match its trailing copy {trailer}"
            ),
            Damage::BadByteOrderMagic { magic } => {
                write!(f, "section header byte-order magic 0x{magic:08x} is not valid")
            }
            Damage::PacketOverrunsBlock {
                block_type,
                caplen,
                room,
            } => write!(
                f,
                "packet block type {block_type} captured length {caplen} exceeds the {room} bytes of the block"
            ),
            Damage::UnknownInterface { interface, known } => write!(
                f,
                "packet names interface {interface} but the section describes {known}"
            ),
            Damage::CaplenOverOrigLen { caplen, origlen } => write!(
                f,
                "captured length {caplen} exceeds original length {origlen}"
            ),
            Damage::BadTsresol { tsresol } => write!(
                f,
                "interface if_tsresol 0x{tsresol:02x} is not usable; microseconds assumed"
            ),
            Damage::UnsupportedVersion { major, minor } => {
                write!(f, "pcapng section version {major}.{minor} is not 1.x")
            }
            Damage::CorruptBlock { block_type } => {
                write!(f, "block type 0x{block_type:08x} has a corrupt body")
            }
            Damage::ReadFailed { reason } => write!(f, "read failed: {reason}"),
        }
    }
}

/// What the reader did about a [`Damage`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Recovery {
    /// Nothing to skip (a header field was replaced by a default).
    Continued,
    /// The frame was still delivered (its framing is intact).
    Delivered,
    /// The record or block was skipped whole (its framing is intact).
    Skipped { bytes: u64 },
    /// Bytes were skipped up to the next plausible record or block.
    Resynced { at: u64, skipped: u64 },
    /// No plausible record or block followed; the rest of the input was skipped.
    SkippedToEnd { skipped: u64 },
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recovery::Continued => f.write_str("continued"),
            Recovery::Delivered => f.write_str("frame delivered as recorded"),
            Recovery::Skipped { bytes } => write!(f, "skipped ({bytes} bytes)"),
            Recovery::Resynced { at, skipped } => {
                write!(f, "resynchronised at byte {at} (skipped {skipped} bytes)")
            }
            Recovery::SkippedToEnd { skipped } => {
                write!(f, "skipped to the end ({skipped} bytes)")
            }
        }
    }
}

/// One place where an input was damaged, for stderr and the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CaptureWarning {
    /// The input as the user named it.
    #[serde(serialize_with = "serialize_name")]
    pub file: Arc<str>,
    /// Byte offset in the input (in the decompressed stream for gzip).
    pub offset: u64,
    /// Frame number of the damaged packet record or block, when it had one.
    pub frame: Option<u64>,
    pub what: Damage,
    pub recovery: Recovery,
}

fn serialize_name<S: serde::Serializer>(name: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(name)
}

impl fmt::Display for CaptureWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: byte {}: ", self.file, self.offset)?;
        if let Some(frame) = self.frame {
            write!(f, "frame {frame}: ")?;
        }
        write!(f, "{}; {}", self.what, self.recovery)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_name_the_file() {
        let e = CaptureError::NotCapture {
            file: "capture.pcap".into(),
            first: vec![0x7f, 0x45, 0x4c, 0x46],
            gzip: false,
        };
        assert_eq!(
            e.to_string(),
            "capture.pcap: not a pcap or pcapng file (first bytes 7f 45 4c 46)"
        );
        let e = CaptureError::Open {
            file: "missing.pcap".into(),
            err: io::Error::from_raw_os_error(2),
        };
        assert_eq!(e.to_string(), "missing.pcap: No such file or directory");
    }

    #[test]
    fn warning_line_has_file_offset_what_and_recovery() {
        let w = CaptureWarning {
            file: Arc::from("capture.pcap"),
            offset: 1234,
            frame: None,
            what: Damage::RecordOverrun {
                len: 4_294_967_295,
                left: 1024,
            },
            recovery: Recovery::SkippedToEnd { skipped: 1040 },
        };
        assert_eq!(
            w.to_string(),
            "capture.pcap: byte 1234: record length 4294967295 overruns the file (1024 bytes left); skipped to the end (1040 bytes)"
        );
    }
}
