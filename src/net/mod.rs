//! Stage 2, net: turns a captured frame into a transport unit (a TCP segment
//! or a UDP datagram). It owns link-layer decoding, IPv4/IPv6 (with extension
//! headers) and IP fragment reassembly, and the canonical [`FlowKey`] that lets
//! both directions of a connection meet. It keeps no TCP state.

mod decoder;
mod frag;
mod selection;
mod stats;

pub use decoder::{NetConfig, NetDecoder};
pub use selection::{Cidr, Selection};
pub use stats::{Layer, MalformedStats, NetStats};

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::capture::FrameRef;
use crate::time::Timestamp;

/// One end of a transport connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
}

impl Endpoint {
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

impl Endpoint {
    /// `self <= other` in the derived order (IPv4 before IPv6, then address,
    /// then port), written out on integers because the derived comparison of
    /// `IpAddr` is a measurable share of decoding small packets.
    #[inline]
    fn precedes_or_equals(&self, other: &Endpoint) -> bool {
        match (self.ip, other.ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                (u32::from(a), self.port) <= (u32::from(b), other.port)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                (u128::from(a), self.port) <= (u128::from(b), other.port)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => true,
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

impl fmt::Display for Endpoint {
    /// `ip:port`, IPv6 as `[addr]:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.socket_addr())
    }
}

/// Direction of a unit relative to its canonical [`FlowKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dir {
    /// From `FlowKey::lo` to `FlowKey::hi`.
    LoToHi,
    /// From `FlowKey::hi` to `FlowKey::lo`.
    HiToLo,
}

impl Dir {
    pub fn reverse(self) -> Dir {
        match self {
            Dir::LoToHi => Dir::HiToLo,
            Dir::HiToLo => Dir::LoToHi,
        }
    }

    /// 0 for `LoToHi`, 1 for `HiToLo`: an index into per-direction arrays.
    pub fn index(self) -> usize {
        match self {
            Dir::LoToHi => 0,
            Dir::HiToLo => 1,
        }
    }
}

/// Transport protocol of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    Tcp,
    Udp,
}

/// A canonical flow key: the lower endpoint first, so both directions of a
/// connection produce the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowKey {
    pub transport: Transport,
    pub lo: Endpoint,
    pub hi: Endpoint,
}

impl FlowKey {
    /// The canonical key of a unit from `src` to `dst`, and that unit's direction.
    #[inline]
    pub fn new(transport: Transport, src: Endpoint, dst: Endpoint) -> (FlowKey, Dir) {
        if src.precedes_or_equals(&dst) {
            (
                FlowKey {
                    transport,
                    lo: src,
                    hi: dst,
                },
                Dir::LoToHi,
            )
        } else {
            (
                FlowKey {
                    transport,
                    lo: dst,
                    hi: src,
                },
                Dir::HiToLo,
            )
        }
    }

    /// Source endpoint of a unit travelling in `dir`.
    pub fn src(&self, dir: Dir) -> Endpoint {
        match dir {
            Dir::LoToHi => self.lo,
            Dir::HiToLo => self.hi,
        }
    }

    /// Destination endpoint of a unit travelling in `dir`.
    pub fn dst(&self, dir: Dir) -> Endpoint {
        self.src(dir.reverse())
    }

    /// A stable 64-bit hash (FNV-1a over the key's bytes), independent of the
    /// process, platform and thread count: used to pick a shard.
    pub fn stable_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        feed(&[self.transport as u8]);
        for ep in [self.lo, self.hi] {
            match ep.ip {
                IpAddr::V4(a) => feed(&a.octets()),
                IpAddr::V6(a) => feed(&a.octets()),
            }
            feed(&ep.port.to_be_bytes());
        }
        h
    }
}

/// TCP header flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;

    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

/// A TCP segment, ready for reassembly.
#[derive(Clone, Debug)]
pub struct TcpSegment<'a> {
    pub key: FlowKey,
    pub dir: Dir,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    /// Borrowed from the frame, or owned when IP fragments were reassembled.
    pub payload: Cow<'a, [u8]>,
    /// The frame that carried this segment (the last fragment's, if reassembled).
    pub frame: FrameRef,
    pub ts: Timestamp,
}

/// A UDP datagram.
#[derive(Clone, Debug)]
pub struct UdpDatagram<'a> {
    pub key: FlowKey,
    pub dir: Dir,
    pub payload: Cow<'a, [u8]>,
    pub frame: FrameRef,
    pub ts: Timestamp,
}

/// What the net stage makes of one frame.
#[derive(Clone, Debug)]
pub enum Packet<'a> {
    Tcp(TcpSegment<'a>),
    Udp(UdpDatagram<'a>),
}

impl Packet<'_> {
    pub fn key(&self) -> &FlowKey {
        match self {
            Packet::Tcp(s) => &s.key,
            Packet::Udp(d) => &d.key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_order_matches_the_derived_order() {
        let eps: Vec<Endpoint> = [
            "10.0.0.1:1",
            "10.0.0.1:2",
            "10.0.0.2:1",
            "9.255.255.255:65535",
            "255.0.0.0:0",
            "[::1]:5",
            "[::1]:4",
            "[2001:db8::1]:80",
            "[ff02::1]:0",
        ]
        .iter()
        .map(|s| {
            let a: SocketAddr = s.parse().expect("test address");
            Endpoint {
                ip: a.ip(),
                port: a.port(),
            }
        })
        .collect();
        for a in &eps {
            for b in &eps {
                assert_eq!(a.precedes_or_equals(b), a <= b, "{a} vs {b}");
                let (k, dir) = FlowKey::new(Transport::Tcp, *a, *b);
                assert!(k.lo <= k.hi);
                assert_eq!(k.src(dir), *a);
            }
        }
    }
}
