//! Packet builders (link, IP, TCP/UDP) for generated fixtures.
//!
//! Every builder returns plain bytes with correct lengths and checksums, so
//! tshark decodes them without warnings. A [`Conversation`] scripts a whole
//! TCP connection (handshake, data both ways, FIN/RST) and renders it as
//! `(Timestamp, frame bytes, LinkType)` triples for the pcap writer in
//! `pcapfile.rs`. Test-only code: it may panic on a nonsensical description.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use imscan::capture::LinkType;
use imscan::time::Timestamp;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMP: u8 = 1;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
pub const SERVER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

/// RFC 1071 ones' complement sum, folded.
fn ones_complement(sum: u32, data: &[u8]) -> u32 {
    let mut sum = sum;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The IPv4/IPv6 pseudo-header sum for a transport checksum.
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let mut sum = 0;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            sum = ones_complement(sum, &s.octets());
            sum = ones_complement(sum, &d.octets());
            sum += u32::from(proto) + len as u32;
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            sum = ones_complement(sum, &s.octets());
            sum = ones_complement(sum, &d.octets());
            sum += (len as u32 >> 16) + (len as u32 & 0xffff) + u32::from(proto);
        }
        _ => panic!("mixed address families {src} / {dst}"),
    }
    sum
}

/// TCP header fields (no options: data offset 5).
#[derive(Clone, Copy, Debug)]
pub struct TcpFields {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
}

impl TcpFields {
    pub fn new(sport: u16, dport: u16) -> TcpFields {
        TcpFields {
            sport,
            dport,
            seq: 0,
            ack: 0,
            flags: ACK,
            window: 65_535,
        }
    }
}

/// A TCP segment (header + payload) with a correct checksum for `src` → `dst`.
pub fn tcp(src: IpAddr, dst: IpAddr, f: &TcpFields, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(20 + payload.len());
    s.extend_from_slice(&f.sport.to_be_bytes());
    s.extend_from_slice(&f.dport.to_be_bytes());
    s.extend_from_slice(&f.seq.to_be_bytes());
    s.extend_from_slice(&f.ack.to_be_bytes());
    s.push(5 << 4);
    s.push(f.flags);
    s.extend_from_slice(&f.window.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    s.extend_from_slice(payload);
    let sum = ones_complement(pseudo_header_sum(src, dst, PROTO_TCP, s.len()), &s);
    s[16..18].copy_from_slice(&fold(sum).to_be_bytes());
    s
}

/// A UDP datagram (header + payload) with a correct checksum.
pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut s = Vec::with_capacity(len);
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&(len as u16).to_be_bytes());
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(payload);
    let mut c = fold(ones_complement(
        pseudo_header_sum(src, dst, PROTO_UDP, len),
        &s,
    ));
    if c == 0 {
        c = 0xffff; // RFC 768: a computed zero is sent as all ones
    }
    s[6..8].copy_from_slice(&c.to_be_bytes());
    s
}

/// IPv4 header fields beyond the addresses.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Fields {
    pub id: u16,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: usize,
    pub ttl: u8,
}

impl Default for Ipv4Fields {
    fn default() -> Ipv4Fields {
        Ipv4Fields {
            id: 1,
            dont_fragment: false,
            more_fragments: false,
            frag_offset: 0,
            ttl: 64,
        }
    }
}

/// An IPv4 packet (20-byte header, correct header checksum).
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, f: &Ipv4Fields, payload: &[u8]) -> Vec<u8> {
    assert!(
        f.frag_offset % 8 == 0,
        "fragment offset {} not a multiple of 8",
        f.frag_offset
    );
    let total = 20 + payload.len();
    assert!(total <= 65_535, "IPv4 packet of {total} bytes");
    let mut p = Vec::with_capacity(total);
    p.push(0x45);
    p.push(0);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&f.id.to_be_bytes());
    let mut frag = (f.frag_offset / 8) as u16;
    if f.dont_fragment {
        frag |= 0x4000;
    }
    if f.more_fragments {
        frag |= 0x2000;
    }
    p.extend_from_slice(&frag.to_be_bytes());
    p.push(f.ttl);
    p.push(proto);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let c = fold(ones_complement(0, &p));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An IPv6 extension header.
#[derive(Clone, Debug)]
pub enum Ipv6Ext {
    /// Hop-by-hop options, padded (PadN) to a multiple of 8.
    HopByHop,
    /// Destination options, padded to a multiple of 8.
    DestOpts,
    /// Routing header type 0 with `segments_left` 0 and no addresses.
    Routing,
    /// Fragment header: offset in bytes (a multiple of 8), more, identification.
    Fragment { offset: usize, more: bool, id: u32 },
    /// Authentication header with a 12-byte ICV.
    Auth { spi: u32, seq: u32 },
}

impl Ipv6Ext {
    fn number(&self) -> u8 {
        match self {
            Ipv6Ext::HopByHop => 0,
            Ipv6Ext::Routing => 43,
            Ipv6Ext::Fragment { .. } => 44,
            Ipv6Ext::Auth { .. } => 51,
            Ipv6Ext::DestOpts => 60,
        }
    }

    fn write(&self, next: u8, out: &mut Vec<u8>) {
        match self {
            Ipv6Ext::HopByHop | Ipv6Ext::DestOpts => {
                // 2 bytes header + PadN option filling 6 bytes.
                out.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
            }
            Ipv6Ext::Routing => out.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]),
            Ipv6Ext::Fragment { offset, more, id } => {
                assert!(
                    offset % 8 == 0,
                    "fragment offset {offset} not a multiple of 8"
                );
                let field = ((*offset / 8) as u16) << 3 | u16::from(*more);
                out.extend_from_slice(&[next, 0]);
                out.extend_from_slice(&field.to_be_bytes());
                out.extend_from_slice(&id.to_be_bytes());
            }
            Ipv6Ext::Auth { spi, seq } => {
                // Length in 4-byte units minus 2: (12 + 12) / 4 - 2 = 4.
                out.extend_from_slice(&[next, 4, 0, 0]);
                out.extend_from_slice(&spi.to_be_bytes());
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&[0xa5; 12]);
            }
        }
    }
}

/// An IPv6 packet with `exts` in order before the `proto` payload.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, exts: &[Ipv6Ext], proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, e) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(proto, Ipv6Ext::number);
        e.write(next, &mut body);
    }
    body.extend_from_slice(payload);
    assert!(body.len() <= 65_535, "IPv6 payload of {} bytes", body.len());
    let mut p = Vec::with_capacity(40 + body.len());
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(body.len() as u16).to_be_bytes());
    p.push(exts.first().map_or(proto, Ipv6Ext::number));
    p.push(64);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&body);
    p
}

/// An IP packet of the family of `src`/`dst` with default header fields.
pub fn ip(src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4(s, d, proto, &Ipv4Fields::default(), payload),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6(s, d, &[], proto, payload),
        _ => panic!("mixed address families {src} / {dst}"),
    }
}

/// A TCP segment in an IP packet.
pub fn ip_tcp(src: SocketAddr, dst: SocketAddr, f: &TcpFields, payload: &[u8]) -> Vec<u8> {
    let f = TcpFields {
        sport: src.port(),
        dport: dst.port(),
        ..*f
    };
    ip(
        src.ip(),
        dst.ip(),
        PROTO_TCP,
        &tcp(src.ip(), dst.ip(), &f, payload),
    )
}

/// A UDP datagram in an IP packet.
pub fn ip_udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    ip(
        src.ip(),
        dst.ip(),
        PROTO_UDP,
        &udp(src.ip(), dst.ip(), src.port(), dst.port(), payload),
    )
}

/// Split an IP packet (IPv4 with a 20-byte header, or IPv6 without extension
/// headers) into `pieces` fragments in order. Every piece but the last carries
/// a multiple of 8 bytes. IPv6 fragments get a fragment header with `id`.
pub fn fragment(packet: &[u8], pieces: usize, id: u32) -> Vec<Vec<u8>> {
    assert!(pieces >= 1);
    let version = packet[0] >> 4;
    let payload = match version {
        4 => {
            assert_eq!(
                packet[0] & 0x0f,
                5,
                "fragment() takes a 20-byte IPv4 header"
            );
            &packet[20..]
        }
        6 => &packet[40..],
        v => panic!("not an IP packet (version {v})"),
    };
    let step = (payload.len().div_ceil(pieces)).div_ceil(8) * 8;
    let step = step.max(8);
    let mut out = Vec::new();
    let mut off = 0;
    while off < payload.len() || (off == 0 && payload.is_empty()) {
        let end = (off + step).min(payload.len());
        let more = end < payload.len();
        let piece = &payload[off..end];
        out.push(match version {
            4 => {
                let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
                let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
                let f = Ipv4Fields {
                    id: id as u16,
                    dont_fragment: false,
                    more_fragments: more,
                    frag_offset: off,
                    ttl: packet[8],
                };
                ipv4(src, dst, packet[9], &f, piece)
            }
            _ => {
                let src = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[8..24]).expect("16 bytes"));
                let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[24..40]).expect("16 bytes"));
                let ext = Ipv6Ext::Fragment {
                    offset: off,
                    more,
                    id,
                };
                ipv6(src, dst, &[ext], packet[6], piece)
            }
        });
        if payload.is_empty() {
            break;
        }
        off = end;
    }
    out
}

/// A link layer to wrap IP packets in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    Ethernet,
    /// Ethernet with VLAN tags, outermost first: (TPID, VLAN id).
    EthernetTagged(Vec<(u16, u16)>),
    /// Linux cooked capture v1.
    Sll,
    /// Linux cooked capture v2.
    Sll2,
    /// BSD null with the family in little-endian (x86 capturing host) or big-endian order.
    Null {
        big_endian: bool,
    },
    /// OpenBSD loop (family in network byte order).
    Loop,
    /// Raw IP under the given link type (101, 12, 14, 228, 229).
    Raw(LinkType),
}

impl Link {
    pub fn link_type(&self) -> LinkType {
        match self {
            Link::Ethernet | Link::EthernetTagged(_) => LinkType::ETHERNET,
            Link::Sll => LinkType::LINUX_SLL,
            Link::Sll2 => LinkType::LINUX_SLL2,
            Link::Null { .. } => LinkType::NULL,
            Link::Loop => LinkType::LOOP,
            Link::Raw(t) => *t,
        }
    }

    /// All link types with one representative each.
    pub fn all() -> Vec<Link> {
        vec![
            Link::Ethernet,
            Link::EthernetTagged(vec![(0x8100, 10)]),
            Link::EthernetTagged(vec![(0x88a8, 100), (0x8100, 20)]),
            Link::EthernetTagged(vec![(0x9100, 7), (0x8100, 8)]),
            Link::Sll,
            Link::Sll2,
            Link::Null { big_endian: false },
            Link::Null { big_endian: true },
            Link::Loop,
            Link::Raw(LinkType::RAW),
            Link::Raw(LinkType::RAW_12),
            Link::Raw(LinkType::RAW_14),
        ]
    }
}

/// An Ethernet II frame with optional VLAN tags (outermost first).
pub fn ethernet(
    dst: [u8; 6],
    src: [u8; 6],
    tags: &[(u16, u16)],
    ether_type: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * tags.len() + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    for (tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Pad an Ethernet frame to the 60-byte minimum (without FCS), as a NIC does
/// on the wire: the padding is not part of the IP packet.
pub fn pad_ethernet(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < 60 {
        frame.resize(60, 0);
    }
    frame
}

/// Wrap a network-layer packet (`ether_type` says which) in a link header.
pub fn frame_with_ethertype(link: &Link, ether_type: u16, packet: &[u8]) -> Vec<u8> {
    let is_v6 = ether_type == ETHERTYPE_IPV6;
    let mut f = Vec::with_capacity(packet.len() + 24);
    match link {
        Link::Ethernet => return ethernet(SERVER_MAC, CLIENT_MAC, &[], ether_type, packet),
        Link::EthernetTagged(tags) => {
            return ethernet(SERVER_MAC, CLIENT_MAC, tags, ether_type, packet)
        }
        Link::Sll => {
            f.extend_from_slice(&0u16.to_be_bytes()); // packet type: to us
            f.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
            f.extend_from_slice(&6u16.to_be_bytes());
            f.extend_from_slice(&CLIENT_MAC);
            f.extend_from_slice(&[0, 0]);
            f.extend_from_slice(&ether_type.to_be_bytes());
        }
        Link::Sll2 => {
            f.extend_from_slice(&ether_type.to_be_bytes());
            f.extend_from_slice(&[0, 0]);
            f.extend_from_slice(&2u32.to_be_bytes()); // interface index
            f.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
            f.push(0); // packet type
            f.push(6);
            f.extend_from_slice(&CLIENT_MAC);
            f.extend_from_slice(&[0, 0]);
        }
        Link::Null { big_endian } => {
            let family: u32 = if is_v6 { 30 } else { 2 };
            if *big_endian {
                f.extend_from_slice(&family.to_be_bytes());
            } else {
                f.extend_from_slice(&family.to_le_bytes());
            }
        }
        Link::Loop => {
            let family: u32 = if is_v6 { 24 } else { 2 };
            f.extend_from_slice(&family.to_be_bytes());
        }
        Link::Raw(_) => {}
    }
    f.extend_from_slice(packet);
    f
}

/// Wrap an IP packet in a link header (the EtherType follows the version nibble).
pub fn frame(link: &Link, ip_packet: &[u8]) -> Vec<u8> {
    let ether_type = match ip_packet.first().map(|b| b >> 4) {
        Some(6) => ETHERTYPE_IPV6,
        _ => ETHERTYPE_IPV4,
    };
    frame_with_ethertype(link, ether_type, ip_packet)
}

/// One endpoint of a [`Conversation`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// One scripted TCP segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptedSegment {
    pub from: Side,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub payload: Vec<u8>,
}

/// A scripted TCP connection between a client and a server. Call
/// [`Conversation::handshake`] first for a full connection; skip it to start
/// mid-stream (the capture then begins with data, as when a capture is started
/// on a live connection).
#[derive(Clone, Debug)]
pub struct Conversation {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub link: Link,
    /// Capture time of the first frame (of the first not yet taken, after
    /// [`Conversation::take_frames`]).
    pub start: Timestamp,
    /// Capture time between frames, in nanoseconds.
    pub step_ns: i64,
    /// Next sequence number each side sends (client, server).
    next_seq: [u32; 2],
    segments: Vec<ScriptedSegment>,
}

impl Conversation {
    /// A conversation with initial sequence numbers 1000 (client) and 5000
    /// (server), over Ethernet, starting at 2008-05-01T12:00:00Z, 1 ms per frame.
    pub fn new(client: SocketAddr, server: SocketAddr) -> Conversation {
        Conversation {
            client,
            server,
            link: Link::Ethernet,
            start: Timestamp::from_secs_nanos(1_209_643_200, 0),
            step_ns: 1_000_000,
            next_seq: [1000, 5000],
            segments: Vec::new(),
        }
    }

    /// [`Conversation::new`] with the addresses as text (`"[::1]:80"`).
    pub fn between(client: &str, server: &str) -> Conversation {
        Conversation::new(
            client.parse().expect("client address"),
            server.parse().expect("server address"),
        )
    }

    pub fn link(mut self, link: Link) -> Conversation {
        self.link = link;
        self
    }

    pub fn start_at(mut self, start: Timestamp, step_ns: i64) -> Conversation {
        self.start = start;
        self.step_ns = step_ns;
        self
    }

    /// Initial sequence numbers (client, server).
    pub fn isn(mut self, client: u32, server: u32) -> Conversation {
        self.next_seq = [client, server];
        self
    }

    fn idx(side: Side) -> usize {
        match side {
            Side::Client => 0,
            Side::Server => 1,
        }
    }

    fn push(&mut self, from: Side, flags: u8, payload: &[u8]) {
        let me = Self::idx(from);
        let seq = self.next_seq[me];
        let ack = if flags & ACK != 0 {
            self.next_seq[1 - me]
        } else {
            0
        };
        let mut advance = payload.len() as u32;
        if flags & (SYN | FIN) != 0 {
            advance += 1;
        }
        self.next_seq[me] = seq.wrapping_add(advance);
        self.segments.push(ScriptedSegment {
            from,
            seq,
            ack,
            flags,
            payload: payload.to_vec(),
        });
    }

    /// SYN, SYN/ACK, ACK.
    pub fn handshake(&mut self) -> &mut Conversation {
        self.push(Side::Client, SYN, &[]);
        self.push(Side::Server, SYN | ACK, &[]);
        self.push(Side::Client, ACK, &[]);
        self
    }

    /// Send `data` from `from` in segments of at most `mss` bytes (PSH on the last).
    pub fn send(&mut self, from: Side, data: &[u8], mss: usize) -> &mut Conversation {
        let mss = mss.max(1);
        let sizes: Vec<usize> = data.chunks(mss).map(<[u8]>::len).collect();
        self.send_split(from, data, &sizes)
    }

    /// Send `data` from `from` split into segments of the given sizes (the
    /// rest, if the sizes fall short, goes in one more segment).
    pub fn send_split(&mut self, from: Side, data: &[u8], sizes: &[usize]) -> &mut Conversation {
        let mut off = 0;
        let mut cuts: Vec<(usize, usize)> = Vec::new();
        for &n in sizes {
            if off >= data.len() {
                break;
            }
            let end = (off + n).min(data.len());
            cuts.push((off, end));
            off = end;
        }
        if off < data.len() {
            cuts.push((off, data.len()));
        }
        let last = cuts.len().saturating_sub(1);
        for (i, (s, e)) in cuts.into_iter().enumerate() {
            let flags = if i == last { ACK | PSH } else { ACK };
            self.push(from, flags, &data[s..e]);
        }
        self
    }

    /// FIN/ACK from `from`.
    pub fn fin(&mut self, from: Side) -> &mut Conversation {
        self.push(from, FIN | ACK, &[]);
        self
    }

    /// A bare ACK from `from`.
    pub fn ack(&mut self, from: Side) -> &mut Conversation {
        self.push(from, ACK, &[]);
        self
    }

    /// RST/ACK from `from`.
    pub fn rst(&mut self, from: Side) -> &mut Conversation {
        self.push(from, RST | ACK, &[]);
        self
    }

    /// Both FINs and the last ACK.
    pub fn close(&mut self) -> &mut Conversation {
        self.fin(Side::Client).fin(Side::Server).ack(Side::Client)
    }

    /// Scripted segments so far, in the order they will be captured.
    pub fn segments(&self) -> &[ScriptedSegment] {
        &self.segments
    }

    /// Lose segment `i` (it is never captured).
    pub fn drop_segment(&mut self, i: usize) -> &mut Conversation {
        self.segments.remove(i);
        self
    }

    /// Lose the first segment `lost` picks (it must pick one).
    pub fn drop_first(&mut self, lost: impl Fn(&ScriptedSegment) -> bool) -> &mut Conversation {
        let i = self
            .segments
            .iter()
            .position(lost)
            .expect("a segment to lose");
        self.drop_segment(i)
    }

    /// Capture segment `i` twice in a row (a retransmission).
    pub fn duplicate(&mut self, i: usize) -> &mut Conversation {
        let s = self.segments[i].clone();
        self.segments.insert(i + 1, s);
        self
    }

    /// Capture segments `i` and `j` in each other's place.
    pub fn swap(&mut self, i: usize, j: usize) -> &mut Conversation {
        self.segments.swap(i, j);
        self
    }

    /// The IP packet of one scripted segment.
    pub fn ip_packet(&self, s: &ScriptedSegment) -> Vec<u8> {
        let (src, dst) = match s.from {
            Side::Client => (self.client, self.server),
            Side::Server => (self.server, self.client),
        };
        let f = TcpFields {
            sport: src.port(),
            dport: dst.port(),
            seq: s.seq,
            ack: s.ack,
            flags: s.flags,
            window: 65_535,
        };
        ip_tcp(src, dst, &f, &s.payload)
    }

    /// Hands over the frames of the segments scripted so far and forgets
    /// them; sequence numbers and the clock go on from there. A connection
    /// too long to hold in memory is scripted a piece at a time, each piece
    /// written out before the next is scripted.
    pub fn take_frames(&mut self) -> Vec<(Timestamp, Vec<u8>, LinkType)> {
        let frames = self.frames();
        self.start = self
            .start
            .saturating_add_nanos(self.step_ns * frames.len() as i64);
        self.segments.clear();
        frames
    }

    /// Sends `len` bytes of `pattern` repeated from `from` in segments of at
    /// most `mss` bytes, handing every frame (those scripted before first) to
    /// `out` as it is built: at most about a mebibyte of it is held at once,
    /// however large `len` is.
    pub fn stream(
        &mut self,
        from: Side,
        pattern: &[u8],
        len: usize,
        mss: usize,
        out: &mut impl FnMut(Timestamp, Vec<u8>),
    ) -> &mut Conversation {
        assert!(!pattern.is_empty(), "a pattern to repeat");
        let mss = mss.max(1);
        // Whole segments per piece, so that every segment but the last is
        // `mss` bytes long, as a single `send` would cut it.
        let piece_len = mss * (1usize << 20).div_ceil(mss);
        let mut repeated = Vec::with_capacity(piece_len + pattern.len());
        while repeated.len() < piece_len + pattern.len() {
            repeated.extend_from_slice(pattern);
        }
        let mut sent = 0;
        loop {
            for (ts, frame, _) in self.take_frames() {
                out(ts, frame);
            }
            if sent == len {
                return self;
            }
            let n = piece_len.min(len - sent);
            let at = sent % pattern.len();
            self.send(from, &repeated[at..at + n], mss);
            sent += n;
        }
    }

    /// Render as capture records: (time, frame bytes, link type).
    pub fn frames(&self) -> Vec<(Timestamp, Vec<u8>, LinkType)> {
        self.segments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let ts = self.start.saturating_add_nanos(self.step_ns * i as i64);
                (
                    ts,
                    frame(&self.link, &self.ip_packet(s)),
                    self.link.link_type(),
                )
            })
            .collect()
    }
}

impl Side {
    /// The side that sent a script step (`true`: the client).
    pub fn of(client_sent: bool) -> Side {
        if client_sent {
            Side::Client
        } else {
            Side::Server
        }
    }

    pub fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

impl Conversation {
    /// Send every step of `script` (client sent, bytes) in segments of at
    /// most `mss` bytes.
    pub fn play<B: AsRef<[u8]>>(&mut self, script: &[(bool, B)], mss: usize) -> &mut Conversation {
        for (client_sent, bytes) in script {
            self.send(Side::of(*client_sent), bytes.as_ref(), mss);
        }
        self
    }

    /// A connection from `client` to `server` (addresses as text), from
    /// its handshake or picked up mid-stream, that sends every step of
    /// `script` (client sent, capture second, bytes: the second is not
    /// used, frames are `step_ns` apart), step `i` in segments of at most
    /// `mss(i)` bytes, each step acknowledged by the peer with a bare ACK.
    pub fn acked(
        client: &str,
        server: &str,
        handshake: bool,
        script: &[(bool, i64, Vec<u8>)],
        mss: impl Fn(usize) -> usize,
    ) -> Conversation {
        let mut c = Conversation::between(client, server);
        if handshake {
            c.handshake();
        }
        for (i, (client_sent, _, bytes)) in script.iter().enumerate() {
            let side = Side::of(*client_sent);
            c.send(side, bytes, mss(i));
            c.ack(side.peer());
        }
        c
    }
}

/// A well-formed pcap (Ethernet) of the frames of `convs` in time order.
pub fn pcap_of<'a>(convs: impl IntoIterator<Item = &'a Conversation>) -> Vec<u8> {
    let mut frames: Vec<_> = convs.into_iter().flat_map(Conversation::frames).collect();
    frames.sort_by_key(|f| f.0);
    let records: Vec<(Timestamp, &[u8], u32)> = frames
        .iter()
        .map(|(t, b, _)| (*t, &b[..], b.len() as u32))
        .collect();
    super::pcapfile::pcap(super::pcapfile::ETHERNET, &records)
}
