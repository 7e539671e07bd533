//! Drives a [`StreamConsumer`] with a scripted conversation, the way the flow
//! table would, so protocol decoders can be tested without packets: in one
//! chunk per part, byte by byte, cut at every position, or at random
//! positions, with gaps where the script says. [`check_split_invariance`]
//! runs them all and compares what the decoder made of each. [`Recorder`] is
//! a consumer that keeps what it was given. Test support only: it does no I/O
//! and is deterministic (seeded, no global randomness).

use std::net::{IpAddr, Ipv4Addr};

use crate::capture::FrameRef;
use crate::net::{Dir, Endpoint, FlowKey, Transport};
use crate::time::Timestamp;

use super::{Chunk, ChunkFlags, ChunkInfo, CloseReason, NewFlow, StreamConsumer};

/// Which end of the conversation speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    /// Direction of this side's bytes on [`harness_flow`]'s key (client is the lower endpoint).
    pub fn dir(self) -> Dir {
        match self {
            Side::Client => Dir::LoToHi,
            Side::Server => Dir::HiToLo,
        }
    }
}

/// One step of a scripted conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Data(Side, Vec<u8>),
    /// `len` bytes of this side are lost here.
    Gap(Side, u64),
}

/// Client and server bytes in the order they travel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conversation {
    pub parts: Vec<Part>,
}

impl Conversation {
    pub fn new() -> Self {
        Conversation::default()
    }

    pub fn client(mut self, bytes: impl AsRef<[u8]>) -> Self {
        self.parts
            .push(Part::Data(Side::Client, bytes.as_ref().to_vec()));
        self
    }

    pub fn server(mut self, bytes: impl AsRef<[u8]>) -> Self {
        self.parts
            .push(Part::Data(Side::Server, bytes.as_ref().to_vec()));
        self
    }

    pub fn gap(mut self, side: Side, len: u64) -> Self {
        self.parts.push(Part::Gap(side, len));
        self
    }

    /// Data bytes of all parts, both sides: the space cut positions index.
    pub fn data_len(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Data(_, b) => b.len(),
                Part::Gap(..) => 0,
            })
            .sum()
    }
}

/// The flow a harness run pretends to be: client 10.0.0.1:40000, server
/// 10.0.0.2:5222, SYN seen, first frame 1 of input 0.
pub fn harness_flow() -> NewFlow {
    let client = Endpoint {
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        port: 40000,
    };
    let server = Endpoint {
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        port: 5222,
    };
    let (key, dir) = FlowKey::new(Transport::Tcp, client, server);
    NewFlow {
        key,
        dir,
        frame: FrameRef {
            source: 0,
            index: 1,
        },
        ts: Timestamp::from_secs_nanos(1_200_000_000, 0),
        client_dir: Some(Side::Client.dir()),
    }
}

/// Feeds chunks with consistent offsets, frames and times.
struct Driver {
    offset: [u64; 2],
    frame: u64,
}

impl Driver {
    fn new() -> Self {
        Driver {
            offset: [0, 0],
            frame: 1,
        }
    }

    fn at(&mut self) -> (Timestamp, FrameRef) {
        self.frame += 1;
        let ts = harness_flow()
            .ts
            .saturating_add_nanos(self.frame as i64 * 1_000_000);
        (
            ts,
            FrameRef {
                source: 0,
                index: self.frame,
            },
        )
    }

    fn send<C: StreamConsumer>(&mut self, c: &mut C, side: Side, chunk: Chunk<'_>) {
        let (ts, frame) = self.at();
        let dir = side.dir();
        let info = ChunkInfo {
            dir,
            ts,
            frame,
            first_frame: frame,
            offset: self.offset[dir.index()],
            flags: ChunkFlags::default(),
        };
        self.offset[dir.index()] += match chunk {
            Chunk::Data(b) => b.len() as u64,
            Chunk::Gap(n) => n,
        };
        c.on_chunk(chunk, &info);
    }

    fn close<C: StreamConsumer>(&mut self, c: &mut C) {
        let (ts, frame) = self.at();
        c.on_close(CloseReason::EndOfInput, ts, frame);
    }
}

/// Deliver `conv` cut at `cuts` (positions into the data bytes of all parts,
/// see [`Conversation::data_len`]; parts are always cut at their own ends),
/// then close the flow (`EndOfInput`).
pub fn deliver_at<C: StreamConsumer>(c: &mut C, conv: &Conversation, cuts: &[usize]) {
    let mut cuts: Vec<usize> = cuts.to_vec();
    cuts.sort_unstable();
    cuts.dedup();
    let mut driver = Driver::new();
    let mut base = 0usize;
    let mut next_cut = cuts.iter().copied().peekable();
    for part in &conv.parts {
        match part {
            Part::Gap(side, len) => driver.send(c, *side, Chunk::Gap(*len)),
            Part::Data(side, bytes) => {
                let mut from = 0usize;
                while let Some(&cut) = next_cut.peek() {
                    if cut >= base + bytes.len() {
                        break;
                    }
                    next_cut.next();
                    if cut > base + from {
                        let to = cut - base;
                        driver.send(c, *side, Chunk::Data(&bytes[from..to]));
                        from = to;
                    }
                }
                if from < bytes.len() || bytes.is_empty() {
                    driver.send(c, *side, Chunk::Data(&bytes[from..]));
                }
                base += bytes.len();
            }
        }
    }
    driver.close(c);
}

/// Each part as one chunk.
pub fn deliver_whole<C: StreamConsumer>(c: &mut C, conv: &Conversation) {
    deliver_at(c, conv, &[]);
}

/// Every data byte as its own chunk.
pub fn deliver_bytewise<C: StreamConsumer>(c: &mut C, conv: &Conversation) {
    let cuts: Vec<usize> = (1..conv.data_len()).collect();
    deliver_at(c, conv, &cuts);
}

/// Cut at pseudo-random positions drawn from `seed` (about one cut per 8 bytes).
pub fn deliver_random<C: StreamConsumer>(c: &mut C, conv: &Conversation, seed: u64) {
    let cuts = random_cuts(conv.data_len(), seed);
    deliver_at(c, conv, &cuts);
}

/// Deterministic cut positions in `1..len` for `seed` (SplitMix64).
pub fn random_cuts(len: usize, seed: u64) -> Vec<usize> {
    if len < 2 {
        return Vec::new();
    }
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let count = next() as usize % (len / 8 + 2);
    (0..count)
        .map(|_| 1 + next() as usize % (len - 1))
        .collect()
}

/// Run `conv` through fresh consumers in one chunk per part, byte by byte,
/// cut once at every position (for conversations up to `4096` data bytes;
/// every 7th position beyond) and at random positions for `random_runs`
/// seeds, and check that `observe` sees the same result every time.
/// Returns that result, or a message naming the first delivery that differed.
pub fn check_split_invariance<C, T>(
    conv: &Conversation,
    mut make: impl FnMut() -> C,
    mut observe: impl FnMut(C) -> T,
    random_runs: u64,
) -> Result<T, String>
where
    C: StreamConsumer,
    T: PartialEq + std::fmt::Debug,
{
    let mut run = |cuts: &[usize]| {
        let mut c = make();
        deliver_at(&mut c, conv, cuts);
        observe(c)
    };
    let expected = run(&[]);
    let len = conv.data_len();
    let compare = |name: String, got: T| -> Result<(), String> {
        if got == expected {
            Ok(())
        } else {
            Err(format!(
                "{name}: got {got:?}, whole delivery gave {expected:?}"
            ))
        }
    };
    compare("byte by byte".into(), run(&(1..len).collect::<Vec<_>>()))?;
    let step = if len <= 4096 { 1 } else { 7 };
    for cut in (1..len).step_by(step) {
        compare(format!("cut at {cut}"), run(&[cut]))?;
    }
    for seed in 0..random_runs {
        let cuts = random_cuts(len, seed);
        compare(format!("random cuts {cuts:?} (seed {seed})"), run(&cuts))?;
    }
    Ok(expected)
}

/// A chunk as a [`Recorder`] kept it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    Data(Vec<u8>),
    Gap(u64),
}

/// A consumer that keeps every chunk and the close, for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorder {
    pub chunks: Vec<(Recorded, ChunkInfo)>,
    pub closed: Option<(CloseReason, Timestamp, FrameRef)>,
    /// Chunks delivered after `on_close` (a reassembler bug).
    pub after_close: usize,
}

impl Recorder {
    /// Data bytes of one direction, concatenated (gaps skipped).
    pub fn data(&self, dir: Dir) -> Vec<u8> {
        let mut out = Vec::new();
        for (c, info) in &self.chunks {
            if let (Recorded::Data(b), true) = (c, info.dir == dir) {
                out.extend_from_slice(b);
            }
        }
        out
    }

    /// One direction with adjacent data merged: what any split of the same
    /// stream must reproduce.
    pub fn stream(&self, dir: Dir) -> Vec<Recorded> {
        let mut out: Vec<Recorded> = Vec::new();
        for (c, info) in self.chunks.iter().filter(|(_, i)| i.dir == dir) {
            let _ = info;
            match (out.last_mut(), c) {
                (Some(Recorded::Data(prev)), Recorded::Data(b)) => prev.extend_from_slice(b),
                (Some(Recorded::Gap(prev)), Recorded::Gap(n)) => *prev += n,
                (_, Recorded::Data(b)) if b.is_empty() => {}
                (_, c) => out.push(c.clone()),
            }
        }
        out
    }

    /// Gaps of one direction as (stream offset, length).
    pub fn gaps(&self, dir: Dir) -> Vec<(u64, u64)> {
        self.chunks
            .iter()
            .filter_map(|(c, i)| match c {
                Recorded::Gap(n) if i.dir == dir => Some((i.offset, *n)),
                _ => None,
            })
            .collect()
    }

    /// True when any chunk of `dir` carried the overlap-conflict flag.
    pub fn any_conflict(&self, dir: Dir) -> bool {
        self.chunks
            .iter()
            .any(|(_, i)| i.dir == dir && i.flags.overlap_conflict)
    }
}

impl StreamConsumer for Recorder {
    fn on_chunk(&mut self, chunk: Chunk<'_>, info: &ChunkInfo) {
        if self.closed.is_some() {
            self.after_close += 1;
        }
        let c = match chunk {
            Chunk::Data(b) => Recorded::Data(b.to_vec()),
            Chunk::Gap(n) => Recorded::Gap(n),
        };
        self.chunks.push((c, *info));
    }

    fn on_close(&mut self, reason: CloseReason, ts: Timestamp, frame: FrameRef) {
        self.closed = Some((reason, ts, frame));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy line decoder: complete lines per direction, gaps drop the partial line.
    #[derive(Default)]
    struct Lines {
        partial: [Vec<u8>; 2],
        lines: Vec<(Dir, Vec<u8>)>,
    }

    impl StreamConsumer for Lines {
        fn on_chunk(&mut self, chunk: Chunk<'_>, info: &ChunkInfo) {
            let d = info.dir.index();
            match chunk {
                Chunk::Gap(_) => self.partial[d].clear(),
                Chunk::Data(b) => {
                    for &x in b {
                        if x == b'\n' {
                            let line = std::mem::take(&mut self.partial[d]);
                            self.lines.push((info.dir, line));
                        } else {
                            self.partial[d].push(x);
                        }
                    }
                }
            }
        }
        fn on_close(&mut self, _: CloseReason, _: Timestamp, _: FrameRef) {}
    }

    #[test]
    fn line_decoder_is_split_invariant_and_harness_delivers_all_bytes() {
        let conv = Conversation::new()
            .client("HELLO a\nMSG b\n")
            .server("OK\n")
            .gap(Side::Client, 5)
            .client("tail\nnext\n");
        let lines = check_split_invariance(&conv, Lines::default, |l| l.lines, 20).unwrap();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[4], (Dir::LoToHi, b"next".to_vec()));

        let mut r = Recorder::default();
        deliver_bytewise(&mut r, &conv);
        assert_eq!(r.data(Dir::LoToHi), b"HELLO a\nMSG b\ntail\nnext\n");
        assert_eq!(r.data(Dir::HiToLo), b"OK\n");
        assert_eq!(r.gaps(Dir::LoToHi), vec![(14, 5)]);
        assert_eq!(r.closed.map(|c| c.0), Some(CloseReason::EndOfInput));
        // Offsets are continuous per direction.
        let mut off = 0;
        for (c, i) in r.chunks.iter().filter(|(_, i)| i.dir == Dir::LoToHi) {
            assert_eq!(i.offset, off);
            off += match c {
                Recorded::Data(b) => b.len() as u64,
                Recorded::Gap(n) => *n,
            };
        }
    }

    #[test]
    fn split_dependent_consumer_is_caught() {
        // Counts chunks: differs between deliveries, so the check must fail.
        #[derive(Default)]
        struct Count(usize);
        impl StreamConsumer for Count {
            fn on_chunk(&mut self, _: Chunk<'_>, _: &ChunkInfo) {
                self.0 += 1;
            }
            fn on_close(&mut self, _: CloseReason, _: Timestamp, _: FrameRef) {}
        }
        let conv = Conversation::new().client("abc");
        let err = check_split_invariance(&conv, Count::default, |c| c.0, 2).unwrap_err();
        assert!(err.contains("byte by byte"), "{err}");
    }

    #[test]
    fn random_cuts_are_deterministic_and_in_range() {
        assert_eq!(random_cuts(100, 7), random_cuts(100, 7));
        assert!(random_cuts(100, 7).iter().all(|&c| (1..100).contains(&c)));
        assert!(random_cuts(1, 3).is_empty());
        let mut r = Recorder::default();
        deliver_random(
            &mut r,
            &Conversation::new().client("abcdefgh").server(""),
            3,
        );
        assert_eq!(
            r.stream(Dir::LoToHi),
            vec![Recorded::Data(b"abcdefgh".to_vec())]
        );
    }
}
