//! The frame decoder: link layer → IP (with IPv6 extension headers and
//! fragment reassembly) → TCP or UDP. It owns the per-decoder counters and
//! the open fragment reassemblies; it keeps no TCP state and never checks or
//! trusts checksums (offloaded, zeroed checksums are common in captures).
//!
//! Layers are sliced with `etherparse`; Linux SLL/SLL2 and the null/loop
//! headers are read here, because etherparse has no SLL2 and refuses SLL
//! hardware types that Linux "any"-interface captures contain (loopback 772,
//! none 0xfffe, PPP 512); the IPv6 fragment header is read here too (see
//! `Ipv6FragHeader`). The common case (Ethernet/IPv4/TCP, no fragment)
//! borrows the payload from the frame and allocates nothing.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    Ethernet2HeaderSlice, IpAuthHeaderSlice, Ipv4HeaderSlice, Ipv6HeaderSlice,
    Ipv6RawExtHeaderSlice, SingleVlanHeaderSlice, TcpHeaderSlice, UdpHeaderSlice,
};

use crate::capture::{Frame, LinkType};

use super::frag::{FragKey, FragLimits, Fragment, Reassembler};
use super::stats::{Layer, NetStats};
use super::{Endpoint, FlowKey, Packet, TcpFlags, TcpSegment, Transport, UdpDatagram};

/// Limits of the net stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// Fragments one datagram may have before its reassembly is dropped.
    pub max_fragments: usize,
    /// Largest reassembled datagram payload, in bytes.
    pub max_datagram: usize,
    /// A reassembly still incomplete this long (capture time, ns) after its
    /// first fragment is dropped.
    pub fragment_timeout_ns: i64,
    /// Open reassemblies at once; beyond it the oldest is evicted.
    pub max_reassemblies: usize,
}

impl Default for NetConfig {
    /// 64 fragments (a 64 KB datagram over a 1280-byte MTU needs 52), the
    /// largest IP payload, Linux's 30 s `ipfrag_time`, 1024 open datagrams.
    /// Worst case held for hostile fragments: 1024 × 64 KB = 64 MB.
    fn default() -> NetConfig {
        NetConfig {
            max_fragments: 64,
            max_datagram: 65_535,
            fragment_timeout_ns: 30 * crate::time::Timestamp::NANOS_PER_SEC,
            max_reassemblies: 1024,
        }
    }
}

// EtherTypes (IEEE registry) and VLAN tag protocol identifiers.
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;
const TPID_QINQ_OLD: u16 = 0x9100;
/// More tags than this on one frame is treated as damage, not walked.
const MAX_VLAN_TAGS: usize = 8;
/// IPv6 extension headers walked before giving up on a packet.
const MAX_IPV6_EXTS: usize = 16;

// Linux ARPHRD_* types whose SLL protocol field is not an EtherType
// (libpcap's pcap-linktype.7 and sll.h).
const ARPHRD_IPGRE: u16 = 778;
const ARPHRD_FRAD: u16 = 770;
const ARPHRD_IEEE80211_RADIOTAP: u16 = 803;
const ARPHRD_NETLINK: u16 = 824;

// IP protocol numbers (IANA).
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;
const IPPROTO_MOBILITY: u8 = 135;
const IPPROTO_HIP: u8 = 139;
const IPPROTO_SHIM6: u8 = 140;

/// What the link layer carries.
enum Network<'a> {
    V4(&'a [u8]),
    V6(&'a [u8]),
}

/// The outcome of a link-layer decode that did not find IP.
enum NotIp {
    /// Some other network protocol (ARP, LLDP, ...).
    Other,
    Malformed(Layer),
}

/// An IP packet's transport bytes and addresses, before TCP/UDP parsing.
struct IpPayload<'a> {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    bytes: &'a [u8],
    /// The header announced more bytes than the frame holds.
    cut: bool,
}

/// What the IP layer made of a packet.
enum Ip<'a> {
    /// An unfragmented packet: its payload borrows the frame.
    Whole(IpPayload<'a>),
    /// The last missing fragment arrived: the datagram's payload, owned.
    Reassembled {
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        datagram: Vec<u8>,
    },
    /// A fragment stored while its datagram waits for the rest.
    Waiting,
}

/// The result of walking IPv6 extension headers.
struct Ipv6Walk {
    /// Protocol after the last extension header walked.
    proto: u8,
    /// Offset of that protocol's bytes from the start of the walked bytes.
    offset: usize,
    fragment: Option<Ipv6FragHeader>,
}

/// The IPv6 fragment header (RFC 8200 §4.5): next header (1), reserved (1),
/// offset in 8-byte units (13 bits) + reserved (2) + M (1), identification (4).
/// Read here because etherparse 0.16 reads the offset and M bits in the
/// wrong positions (etherparse issue #150, fixed in 0.20).
struct Ipv6FragHeader {
    /// Protocol after the fragment header.
    next: u8,
    /// Offset in bytes.
    offset: usize,
    more: bool,
    id: u32,
}

impl Ipv6FragHeader {
    const LEN: usize = 8;

    fn parse(bytes: &[u8]) -> Option<Ipv6FragHeader> {
        let h = bytes.get(..Self::LEN)?;
        let word = u16::from_be_bytes([h[2], h[3]]);
        Some(Ipv6FragHeader {
            next: h[0],
            offset: usize::from(word >> 3) * 8,
            more: word & 1 == 1,
            id: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        })
    }
}

/// A TCP or UDP header, read, with the payload range in the bytes it was read from.
enum TransportHeader {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        start: usize,
        end: usize,
    },
    Udp {
        sport: u16,
        dport: u16,
        start: usize,
        end: usize,
        cut: bool,
    },
}

/// Decodes frames into TCP segments and UDP datagrams, counting everything else.
pub struct NetDecoder {
    stats: NetStats,
    frags: Reassembler,
}

impl NetDecoder {
    pub fn new(cfg: NetConfig) -> NetDecoder {
        NetDecoder {
            stats: NetStats::default(),
            frags: Reassembler::new(FragLimits {
                max_fragments: cfg.max_fragments,
                max_datagram: cfg.max_datagram,
                timeout_ns: cfg.fragment_timeout_ns,
                max_reassemblies: cfg.max_reassemblies,
            }),
        }
    }

    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// Reassemblies waiting for more fragments.
    pub fn open_reassemblies(&self) -> usize {
        self.frags.open_count()
    }

    /// End of input: count the reassemblies still open as unfinished and drop them.
    pub fn finish(&mut self) {
        self.frags.finish(&mut self.stats);
    }

    /// Decode one frame down to TCP/UDP; None when it is not TCP/UDP (counted)
    /// or is a fragment still waiting.
    pub fn decode<'a>(&mut self, frame: &Frame<'a>) -> Option<Packet<'a>> {
        self.stats.frames += 1;
        self.stats.bytes += frame.data.len() as u64;
        *self.stats.link_types.entry(frame.link_type.0).or_insert(0) += 1;
        if self.frags.open_count() > 0 {
            self.frags.expire(frame.ts, &mut self.stats);
        }
        let net = match link(frame.link_type, frame.data) {
            Some(Ok(net)) => net,
            Some(Err(NotIp::Other)) => {
                self.stats.non_ip += 1;
                return None;
            }
            Some(Err(NotIp::Malformed(layer))) => {
                self.stats.malformed.count(layer);
                return None;
            }
            None => {
                *self
                    .stats
                    .unsupported_link_types
                    .entry(frame.link_type.0)
                    .or_insert(0) += 1;
                return None;
            }
        };
        let ip = match net {
            Network::V4(bytes) => self.ipv4(frame, bytes),
            Network::V6(bytes) => self.ipv6(frame, bytes),
        };
        match ip {
            Err(layer) => {
                self.stats.malformed.count(layer);
                None
            }
            Ok(ip) => self.transport(frame, ip),
        }
    }

    /// IPv4 header → payload, or a fragment handed to reassembly.
    fn ipv4<'a>(&mut self, frame: &Frame<'a>, bytes: &'a [u8]) -> Result<Ip<'a>, Layer> {
        let h = Ipv4HeaderSlice::from_slice(bytes).map_err(|_| Layer::Ipv4)?;
        self.stats.ipv4 += 1;
        let header_len = h.slice().len();
        let total = usize::from(h.total_len());
        // A zero total length is what TCP segmentation offload leaves in
        // captures taken on the sender: the packet runs to the frame's end.
        let total = if total == 0 { bytes.len() } else { total };
        if total < header_len {
            return Err(Layer::Ipv4);
        }
        let end = total.min(bytes.len());
        let payload = bytes.get(header_len..end).ok_or(Layer::Ipv4)?;
        let src = IpAddr::V4(Ipv4Addr::from(h.source()));
        let dst = IpAddr::V4(Ipv4Addr::from(h.destination()));
        let proto = h.protocol().0;
        let offset = usize::from(h.fragments_offset().byte_offset());
        let more = h.more_fragments();
        if !more && offset == 0 {
            return Ok(Ip::Whole(IpPayload {
                src,
                dst,
                proto,
                bytes: payload,
                cut: total > bytes.len(),
            }));
        }
        self.stats.fragments += 1;
        let key = FragKey {
            src,
            dst,
            proto,
            id: u32::from(h.identification()),
        };
        let frag = Fragment {
            offset,
            more,
            data: payload,
            claimed_len: total - header_len,
            proto,
        };
        Ok(
            match self.frags.add(key, &frag, frame.ts, &mut self.stats) {
                Some((proto, datagram)) => Ip::Reassembled {
                    src,
                    dst,
                    proto,
                    datagram,
                },
                None => Ip::Waiting,
            },
        )
    }

    /// IPv6 header and extension headers → payload, or a fragment handed to
    /// reassembly.
    fn ipv6<'a>(&mut self, frame: &Frame<'a>, bytes: &'a [u8]) -> Result<Ip<'a>, Layer> {
        let h = Ipv6HeaderSlice::from_slice(bytes).map_err(|_| Layer::Ipv6)?;
        self.stats.ipv6 += 1;
        let header_len = h.slice().len();
        let plen = usize::from(h.payload_length());
        // Payload length 0 is a jumbogram (RFC 2675) or offload: run to the end.
        let total = if plen == 0 {
            bytes.len()
        } else {
            header_len + plen
        };
        let end = total.min(bytes.len());
        let rest = bytes.get(header_len..end).ok_or(Layer::Ipv6)?;
        let src = IpAddr::V6(Ipv6Addr::from(h.source()));
        let dst = IpAddr::V6(Ipv6Addr::from(h.destination()));
        let walk = walk_ipv6_exts(h.next_header().0, rest)?;
        let after = rest.get(walk.offset..).ok_or(Layer::Ipv6Ext)?;
        let Some(fr) = walk.fragment else {
            return Ok(Ip::Whole(IpPayload {
                src,
                dst,
                proto: walk.proto,
                bytes: after,
                cut: total > bytes.len(),
            }));
        };
        self.stats.fragments += 1;
        let key = FragKey {
            src,
            dst,
            proto: 0,
            id: fr.id,
        };
        let claimed_len = (total - header_len).saturating_sub(walk.offset);
        let frag = Fragment {
            offset: fr.offset,
            more: fr.more,
            data: after,
            claimed_len,
            proto: fr.next,
        };
        let Some((next, mut datagram)) = self.frags.add(key, &frag, frame.ts, &mut self.stats)
        else {
            return Ok(Ip::Waiting);
        };
        // The fragmentable part may start with more extension headers; a
        // second fragment header inside it is damage.
        match walk_ipv6_exts(next, &datagram) {
            Ok(w) if w.fragment.is_none() && w.offset <= datagram.len() => {
                datagram.drain(..w.offset);
                Ok(Ip::Reassembled {
                    src,
                    dst,
                    proto: w.proto,
                    datagram,
                })
            }
            Ok(_) | Err(_) => Err(Layer::Ipv6Ext),
        }
    }

    /// TCP or UDP header → a packet; other protocols are counted.
    fn transport<'a>(&mut self, frame: &Frame<'a>, ip: Ip<'a>) -> Option<Packet<'a>> {
        let (src, dst, proto) = match &ip {
            Ip::Whole(p) => (p.src, p.dst, p.proto),
            Ip::Reassembled {
                src, dst, proto, ..
            } => (*src, *dst, *proto),
            Ip::Waiting => return None,
        };
        let bytes: &[u8] = match &ip {
            Ip::Whole(p) => p.bytes,
            Ip::Reassembled { datagram, .. } => datagram,
            Ip::Waiting => return None,
        };
        let header = match proto {
            IPPROTO_TCP => tcp_header(bytes),
            IPPROTO_UDP => udp_header(bytes),
            _ => {
                self.stats.other_ip_protocols += 1;
                return None;
            }
        };
        let header = match header {
            Ok(h) => h,
            Err(layer) => {
                self.stats.malformed.count(layer);
                return None;
            }
        };
        let ip_cut = matches!(&ip, Ip::Whole(p) if p.cut);
        let (start, end) = match header {
            TransportHeader::Tcp { start, end, .. } => (start, end),
            TransportHeader::Udp { start, end, .. } => (start, end),
        };
        let payload: Cow<'a, [u8]> = match ip {
            Ip::Whole(p) => Cow::Borrowed(p.bytes.get(start..end)?),
            Ip::Reassembled { mut datagram, .. } => {
                datagram.truncate(end);
                datagram.drain(..start.min(datagram.len()));
                Cow::Owned(datagram)
            }
            Ip::Waiting => return None,
        };
        let ts = frame.ts;
        let frame_ref = frame.frame_ref();
        match header {
            TransportHeader::Tcp {
                sport,
                dport,
                seq,
                ack,
                flags,
                window,
                ..
            } => {
                self.stats.tcp_segments += 1;
                if ip_cut {
                    self.stats.truncated += 1;
                }
                let (key, dir) = FlowKey::new(
                    Transport::Tcp,
                    Endpoint {
                        ip: src,
                        port: sport,
                    },
                    Endpoint {
                        ip: dst,
                        port: dport,
                    },
                );
                Some(Packet::Tcp(TcpSegment {
                    key,
                    dir,
                    seq,
                    ack,
                    flags: TcpFlags(flags),
                    window,
                    payload,
                    frame: frame_ref,
                    ts,
                }))
            }
            TransportHeader::Udp {
                sport, dport, cut, ..
            } => {
                self.stats.udp_datagrams += 1;
                if ip_cut || cut {
                    self.stats.truncated += 1;
                }
                let (key, dir) = FlowKey::new(
                    Transport::Udp,
                    Endpoint {
                        ip: src,
                        port: sport,
                    },
                    Endpoint {
                        ip: dst,
                        port: dport,
                    },
                );
                Some(Packet::Udp(UdpDatagram {
                    key,
                    dir,
                    payload,
                    frame: frame_ref,
                    ts,
                }))
            }
        }
    }
}

/// Read a TCP header; the payload is the rest of the IP payload.
fn tcp_header(bytes: &[u8]) -> Result<TransportHeader, Layer> {
    let h = TcpHeaderSlice::from_slice(bytes).map_err(|_| Layer::Tcp)?;
    let raw = h.slice();
    let flags = raw.get(13).copied().unwrap_or(0);
    Ok(TransportHeader::Tcp {
        sport: h.source_port(),
        dport: h.destination_port(),
        seq: h.sequence_number(),
        ack: h.acknowledgment_number(),
        flags,
        window: h.window_size(),
        start: raw.len(),
        end: bytes.len(),
    })
}

/// Read a UDP header; its length field bounds the payload (a length below 8,
/// as in jumbograms, means "to the end of the IP payload").
fn udp_header(bytes: &[u8]) -> Result<TransportHeader, Layer> {
    let h = UdpHeaderSlice::from_slice(bytes).map_err(|_| Layer::Udp)?;
    let start = h.slice().len();
    let claimed = usize::from(h.length());
    let (end, cut) = if claimed < start {
        (bytes.len(), false)
    } else {
        (claimed.min(bytes.len()), claimed > bytes.len())
    };
    Ok(TransportHeader::Udp {
        sport: h.source_port(),
        dport: h.destination_port(),
        start,
        end,
        cut,
    })
}

/// Walk IPv6 extension headers from `next` over `bytes` (the bytes after the
/// fixed header, or a reassembled fragmentable part). Stops at the first
/// fragment header (whose payload belongs to reassembly) or at a protocol
/// that is not an extension header.
fn walk_ipv6_exts(mut next: u8, bytes: &[u8]) -> Result<Ipv6Walk, Layer> {
    let mut offset = 0usize;
    for _ in 0..MAX_IPV6_EXTS {
        let rest = bytes.get(offset..).ok_or(Layer::Ipv6Ext)?;
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_MOBILITY
            | IPPROTO_HIP | IPPROTO_SHIM6 => {
                let e = Ipv6RawExtHeaderSlice::from_slice(rest).map_err(|_| Layer::Ipv6Ext)?;
                next = e.next_header().0;
                offset += e.slice().len();
            }
            IPPROTO_AH => {
                let e = IpAuthHeaderSlice::from_slice(rest).map_err(|_| Layer::Ipv6Ext)?;
                next = e.next_header().0;
                offset += e.slice().len();
            }
            IPPROTO_FRAGMENT => {
                let f = Ipv6FragHeader::parse(rest).ok_or(Layer::Ipv6Ext)?;
                offset += Ipv6FragHeader::LEN;
                let (frag_offset, more) = (f.offset, f.more);
                if frag_offset == 0 && !more {
                    // An atomic fragment (RFC 6946): nothing to reassemble.
                    next = f.next;
                    continue;
                }
                return Ok(Ipv6Walk {
                    proto: IPPROTO_FRAGMENT,
                    offset,
                    fragment: Some(f),
                });
            }
            _ => {
                return Ok(Ipv6Walk {
                    proto: next,
                    offset,
                    fragment: None,
                })
            }
        }
    }
    Err(Layer::Ipv6Ext)
}

/// Decode the link layer. `None`: a link type we do not decode.
fn link(link_type: LinkType, data: &[u8]) -> Option<Result<Network<'_>, NotIp>> {
    Some(match link_type {
        LinkType::ETHERNET => ethernet(data),
        LinkType::LINUX_SLL => linux_sll(data),
        LinkType::LINUX_SLL2 => linux_sll2(data),
        LinkType::RAW | LinkType::RAW_12 | LinkType::RAW_14 => raw_ip(data),
        LinkType::IPV4 => match raw_ip(data) {
            Ok(Network::V6(_)) => Err(NotIp::Malformed(Layer::Ipv4)),
            other => other,
        },
        LinkType::IPV6 => match raw_ip(data) {
            Ok(Network::V4(_)) => Err(NotIp::Malformed(Layer::Ipv6)),
            other => other,
        },
        LinkType::NULL => null_loopback(data, false),
        LinkType::LOOP => null_loopback(data, true),
        _ => return None,
    })
}

fn ethernet(data: &[u8]) -> Result<Network<'_>, NotIp> {
    let h = Ethernet2HeaderSlice::from_slice(data).map_err(|_| NotIp::Malformed(Layer::Link))?;
    let rest = data
        .get(h.slice().len()..)
        .ok_or(NotIp::Malformed(Layer::Link))?;
    by_ethertype(h.ether_type().0, rest)
}

/// Dispatch on an EtherType, walking 802.1Q / 802.1ad / QinQ tags.
fn by_ethertype(mut ether_type: u16, mut rest: &[u8]) -> Result<Network<'_>, NotIp> {
    for _ in 0..=MAX_VLAN_TAGS {
        match ether_type {
            ETHERTYPE_IPV4 => return Ok(Network::V4(rest)),
            ETHERTYPE_IPV6 => return Ok(Network::V6(rest)),
            TPID_8021Q | TPID_8021AD | TPID_QINQ_OLD => {
                let tag = SingleVlanHeaderSlice::from_slice(rest)
                    .map_err(|_| NotIp::Malformed(Layer::Vlan))?;
                ether_type = tag.ether_type().0;
                rest = rest
                    .get(tag.slice().len()..)
                    .ok_or(NotIp::Malformed(Layer::Vlan))?;
            }
            _ => return Err(NotIp::Other),
        }
    }
    Err(NotIp::Malformed(Layer::Vlan))
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// The SLL protocol field is an EtherType except for a few hardware types.
fn sll_protocol(hatype: u16, protocol: u16, rest: &[u8]) -> Result<Network<'_>, NotIp> {
    match hatype {
        ARPHRD_IPGRE | ARPHRD_FRAD | ARPHRD_IEEE80211_RADIOTAP | ARPHRD_NETLINK => {
            Err(NotIp::Other)
        }
        _ => by_ethertype(protocol, rest),
    }
}

/// Linux cooked capture v1: packet type (2), ARPHRD type (2), address length
/// (2), address (8), protocol (2); 16 bytes (tcpdump.org LINKTYPE_LINUX_SLL).
fn linux_sll(data: &[u8]) -> Result<Network<'_>, NotIp> {
    const LEN: usize = 16;
    let malformed = NotIp::Malformed(Layer::Link);
    let (Some(hatype), Some(protocol), Some(rest)) =
        (be16(data, 2), be16(data, 14), data.get(LEN..))
    else {
        return Err(malformed);
    };
    sll_protocol(hatype, protocol, rest)
}

/// Linux cooked capture v2: protocol (2), reserved (2), interface index (4),
/// ARPHRD type (2), packet type (1), address length (1), address (8); 20
/// bytes (tcpdump.org LINKTYPE_LINUX_SLL2).
fn linux_sll2(data: &[u8]) -> Result<Network<'_>, NotIp> {
    const LEN: usize = 20;
    let malformed = NotIp::Malformed(Layer::Link);
    let (Some(protocol), Some(hatype), Some(rest)) =
        (be16(data, 0), be16(data, 8), data.get(LEN..))
    else {
        return Err(malformed);
    };
    sll_protocol(hatype, protocol, rest)
}

/// Raw IP: the version nibble says which.
fn raw_ip(data: &[u8]) -> Result<Network<'_>, NotIp> {
    match data.first().map(|b| b >> 4) {
        Some(4) => Ok(Network::V4(data)),
        Some(6) => Ok(Network::V6(data)),
        Some(_) => Err(NotIp::Other),
        None => Err(NotIp::Malformed(Layer::Link)),
    }
}

/// BSD null (family in the capturing host's byte order: both are accepted)
/// and OpenBSD loop (network byte order). AF_INET is 2 everywhere; AF_INET6 is
/// 24 (NetBSD, OpenBSD), 28 (FreeBSD), 30 (macOS) or 10 (Linux).
fn null_loopback(data: &[u8], network_order_only: bool) -> Result<Network<'_>, NotIp> {
    let (Some(head), Some(rest)) = (data.get(..4), data.get(4..)) else {
        return Err(NotIp::Malformed(Layer::Link));
    };
    let raw = [head[0], head[1], head[2], head[3]];
    let be = u32::from_be_bytes(raw);
    let le = u32::from_le_bytes(raw);
    let family = |f: u32| match f {
        2 => Some(true),
        10 | 24 | 28 | 30 => Some(false),
        _ => None,
    };
    let v4 = if network_order_only {
        family(be)
    } else {
        family(be).or(family(le))
    };
    match v4 {
        Some(true) => Ok(Network::V4(rest)),
        Some(false) => Ok(Network::V6(rest)),
        None => Err(NotIp::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_v4(r: Result<Network<'_>, NotIp>) -> bool {
        matches!(r, Ok(Network::V4(_)))
    }

    fn is_v6(r: Result<Network<'_>, NotIp>) -> bool {
        matches!(r, Ok(Network::V6(_)))
    }

    #[test]
    fn null_accepts_both_byte_orders_loop_only_network_order() {
        assert!(is_v4(null_loopback(&[2, 0, 0, 0, 0x45], false)));
        assert!(is_v4(null_loopback(&[0, 0, 0, 2, 0x45], false)));
        assert!(is_v6(null_loopback(&[30, 0, 0, 0, 0x60], false)));
        assert!(is_v6(null_loopback(&[0, 0, 0, 24, 0x60], true)));
        assert!(matches!(
            null_loopback(&[2, 0, 0, 0], true),
            Err(NotIp::Other)
        ));
        assert!(matches!(
            null_loopback(&[2, 0, 0], false),
            Err(NotIp::Malformed(Layer::Link))
        ));
    }

    #[test]
    fn ethertype_walks_tags_and_stops_at_the_limit() {
        let tag = |next: u16| {
            let mut t = vec![0, 1];
            t.extend_from_slice(&next.to_be_bytes());
            t
        };
        let mut two = tag(TPID_8021Q);
        two.extend(tag(ETHERTYPE_IPV6));
        assert!(is_v6(by_ethertype(TPID_8021AD, &two)));
        assert!(matches!(
            by_ethertype(TPID_8021Q, &[0, 1]),
            Err(NotIp::Malformed(Layer::Vlan))
        ));
        let mut many = Vec::new();
        for _ in 0..=MAX_VLAN_TAGS {
            many.extend(tag(TPID_8021Q));
        }
        many.extend(tag(ETHERTYPE_IPV4));
        assert!(matches!(
            by_ethertype(TPID_8021Q, &many),
            Err(NotIp::Malformed(Layer::Vlan))
        ));
        assert!(matches!(by_ethertype(0x0806, &[]), Err(NotIp::Other)));
    }

    #[test]
    fn sll_and_sll2_read_protocol_and_hardware_type() {
        let mut sll = vec![0u8; 16];
        sll[2..4].copy_from_slice(&0xfffeu16.to_be_bytes()); // ARPHRD_NONE (tun)
        sll[14..16].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        sll.push(0x45);
        assert!(is_v4(linux_sll(&sll)));
        assert!(matches!(
            linux_sll(&sll[..15]),
            Err(NotIp::Malformed(Layer::Link))
        ));
        let mut sll2 = vec![0u8; 20];
        sll2[0..2].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        sll2[8..10].copy_from_slice(&1u16.to_be_bytes());
        assert!(is_v6(linux_sll2(&sll2)));
        sll2[8..10].copy_from_slice(&ARPHRD_NETLINK.to_be_bytes());
        assert!(matches!(linux_sll2(&sll2), Err(NotIp::Other)));
        assert!(matches!(
            linux_sll2(&sll2[..19]),
            Err(NotIp::Malformed(Layer::Link))
        ));
    }

    #[test]
    fn ipv6_fragment_header_bits_follow_rfc_8200() {
        // Offset 1008 bytes (126 units), M set, id 0x01020304.
        let h = Ipv6FragHeader::parse(&[17, 0, 0x03, 0xf1, 1, 2, 3, 4]).expect("8 bytes");
        assert_eq!(
            (h.next, h.offset, h.more, h.id),
            (17, 1008, true, 0x0102_0304)
        );
        let h = Ipv6FragHeader::parse(&[6, 0, 0, 0x01, 0, 0, 0, 9]).expect("8 bytes");
        assert_eq!((h.offset, h.more), (0, true));
        assert!(Ipv6FragHeader::parse(&[6, 0, 0, 1, 0, 0, 0]).is_none());
    }

    #[test]
    fn ipv6_extension_walk_is_bounded_and_checked() {
        // Seventeen hop-by-hop headers: more than we walk.
        let mut chain = Vec::new();
        for _ in 0..=MAX_IPV6_EXTS {
            chain.extend_from_slice(&[IPPROTO_HOPOPTS, 0, 1, 4, 0, 0, 0, 0]);
        }
        assert!(matches!(
            walk_ipv6_exts(IPPROTO_HOPOPTS, &chain),
            Err(Layer::Ipv6Ext)
        ));
        // A header claiming more bytes than there are.
        assert!(matches!(
            walk_ipv6_exts(IPPROTO_ROUTING, &[6, 3, 0, 0, 0, 0, 0, 0]),
            Err(Layer::Ipv6Ext)
        ));
        // AH counts its length in 4-byte units.
        let ah = [
            IPPROTO_TCP,
            4,
            0,
            0,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        let w = walk_ipv6_exts(IPPROTO_AH, &ah).expect("AH walked");
        assert_eq!((w.proto, w.offset), (IPPROTO_TCP, 24));
    }

    #[test]
    fn udp_length_bounds_payload() {
        let mut u = vec![0, 1, 0, 2, 0, 10, 0, 0, b'a', b'b', 0, 0];
        match udp_header(&u) {
            Ok(TransportHeader::Udp {
                start, end, cut, ..
            }) => assert_eq!((start, end, cut), (8, 10, false)),
            _ => panic!("udp header"),
        }
        u[5] = 40; // claims more than present
        match udp_header(&u) {
            Ok(TransportHeader::Udp { end, cut, .. }) => assert_eq!((end, cut), (12, true)),
            _ => panic!("udp header"),
        }
        u[5] = 0; // below the header: to the end
        match udp_header(&u) {
            Ok(TransportHeader::Udp { end, cut, .. }) => assert_eq!((end, cut), (12, false)),
            _ => panic!("udp header"),
        }
        assert!(matches!(udp_header(&u[..7]), Err(Layer::Udp)));
    }
}
