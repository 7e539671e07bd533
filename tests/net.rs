//! Stage 2 (net) from the outside: generated frames of every link type go
//! through `NetDecoder`; fragments, limits, damage and selection are checked
//! against the counters and the packets that come out.

mod support;

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use imscan::capture::{Frame, LinkType};
use imscan::net::{
    Dir, Endpoint, FlowKey, NetConfig, NetDecoder, NetStats, Packet, Selection, Transport,
};
use imscan::time::Timestamp;
use proptest::prelude::*;
use support::packet::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("test socket address")
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("test IPv4 address")
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("test IPv6 address")
}

fn frame_at(data: &[u8], link: LinkType, index: u64, ts: i64) -> Frame<'_> {
    Frame {
        source: 0,
        index,
        ts: Timestamp(ts),
        link_type: link,
        data,
        orig_len: data.len() as u32,
    }
}

fn decode_one(data: &[u8], link: LinkType) -> (Option<Packet<'_>>, NetStats) {
    let mut d = NetDecoder::new(NetConfig::default());
    let p = d.decode(&frame_at(data, link, 1, 0));
    (p, d.stats().clone())
}

fn tcp_of<'a>(p: Option<Packet<'a>>) -> imscan::net::TcpSegment<'a> {
    match p {
        Some(Packet::Tcp(s)) => s,
        other => panic!("expected a TCP segment, got {other:?}"),
    }
}

fn udp_of<'a>(p: Option<Packet<'a>>) -> imscan::net::UdpDatagram<'a> {
    match p {
        Some(Packet::Udp(d)) => d,
        other => panic!("expected a UDP datagram, got {other:?}"),
    }
}

const C4: &str = "10.0.0.1:40000";
const S4: &str = "10.0.0.2:5190";
const C6: &str = "[2001:db8::1]:40001";
const S6: &str = "[2001:db8::2]:1863";

fn fields() -> TcpFields {
    TcpFields {
        sport: 0,
        dport: 0,
        seq: 0x0102_0304,
        ack: 0xa0b0_c0d0,
        flags: PSH | ACK,
        window: 4321,
    }
}

#[test]
fn every_link_type_decodes_tcp_and_udp_both_families() {
    let mut links = Link::all();
    links.push(Link::Raw(LinkType::IPV4));
    links.push(Link::Raw(LinkType::IPV6));
    for link in links {
        for (c, s) in [(sa(C4), sa(S4)), (sa(C6), sa(S6))] {
            let v4_only = link == Link::Raw(LinkType::IPV4);
            let v6_only = link == Link::Raw(LinkType::IPV6);
            if (v4_only && c.is_ipv6()) || (v6_only && c.is_ipv4()) {
                continue;
            }
            let bytes = frame(&link, &ip_tcp(c, s, &fields(), b"hello"));
            let (p, st) = decode_one(&bytes, link.link_type());
            let seg = tcp_of(p);
            assert_eq!(seg.payload.as_ref(), b"hello", "{link:?}");
            assert!(matches!(seg.payload, Cow::Borrowed(_)), "{link:?}");
            assert_eq!(
                (seg.seq, seg.ack, seg.window),
                (0x0102_0304, 0xa0b0_c0d0, 4321)
            );
            assert!(seg.flags.ack() && !seg.flags.syn() && !seg.flags.fin() && !seg.flags.rst());
            assert_eq!(seg.key.src(seg.dir).socket_addr(), c, "{link:?}");
            assert_eq!(seg.key.dst(seg.dir).socket_addr(), s, "{link:?}");
            assert_eq!(st.tcp_segments, 1);
            assert_eq!(st.link_types.get(&link.link_type().0), Some(&1));
            assert_eq!(st.ipv4 + st.ipv6, 1);

            let bytes = frame(&link, &ip_udp(s, c, b"dgram"));
            let (p, st) = decode_one(&bytes, link.link_type());
            let d = udp_of(p);
            assert_eq!(d.payload.as_ref(), b"dgram");
            assert_eq!(d.key.src(d.dir).socket_addr(), s);
            assert_eq!(d.key.transport, Transport::Udp);
            assert_eq!(st.udp_datagrams, 1);
        }
    }
}

#[test]
fn both_directions_share_one_canonical_key() {
    let (c, s) = (sa(C4), sa(S4));
    let a = frame(&Link::Ethernet, &ip_tcp(c, s, &fields(), b"x"));
    let b = frame(&Link::Ethernet, &ip_tcp(s, c, &fields(), b"y"));
    let mut d = NetDecoder::new(NetConfig::default());
    let pa = tcp_of(d.decode(&frame_at(&a, LinkType::ETHERNET, 1, 0)));
    let pb = tcp_of(d.decode(&frame_at(&b, LinkType::ETHERNET, 2, 0)));
    assert_eq!(pa.key, pb.key);
    assert_eq!(pa.dir, pb.dir.reverse());
    assert_eq!(pa.key.lo.socket_addr(), c);
    assert_eq!(pa.dir, Dir::LoToHi);
    assert_eq!(pb.frame.index, 2);
}

#[test]
fn null_family_values_of_every_bsd_and_linux() {
    let t4 = ip_tcp(sa(C4), sa(S4), &fields(), b"4");
    let t6 = ip_tcp(sa(C6), sa(S6), &fields(), b"6");
    for (family, pkt, v6) in [
        (2u32, &t4, false),
        (10, &t6, true),
        (24, &t6, true),
        (28, &t6, true),
        (30, &t6, true),
    ] {
        for order in [family.to_le_bytes(), family.to_be_bytes()] {
            let mut f = order.to_vec();
            f.extend_from_slice(pkt);
            let (p, st) = decode_one(&f, LinkType::NULL);
            assert!(p.is_some(), "family {family}");
            assert_eq!(st.ipv6 == 1, v6);
        }
    }
    // OpenBSD loop is network order only: a little-endian family is not IP.
    let mut f = 2u32.to_le_bytes().to_vec();
    f.extend_from_slice(&t4);
    let (p, st) = decode_one(&f, LinkType::LOOP);
    assert!(p.is_none());
    assert_eq!(st.non_ip, 1);
    // An unknown family (AF_APPLETALK 16) is counted as non-IP.
    let mut f = 16u32.to_le_bytes().to_vec();
    f.extend_from_slice(&t4);
    assert_eq!(decode_one(&f, LinkType::NULL).1.non_ip, 1);
}

#[test]
fn sll_loopback_hardware_type_and_non_ether_types() {
    let pkt = ip_tcp(sa(C4), sa(S4), &fields(), b"lo");
    let mut f = frame(&Link::Sll, &pkt);
    f[2..4].copy_from_slice(&772u16.to_be_bytes()); // ARPHRD_LOOPBACK on "any"
    assert!(decode_one(&f, LinkType::LINUX_SLL).0.is_some());
    f[2..4].copy_from_slice(&824u16.to_be_bytes()); // ARPHRD_NETLINK
    assert_eq!(decode_one(&f, LinkType::LINUX_SLL).1.non_ip, 1);
}

#[test]
fn vlan_tags_beyond_the_walk_limit_are_malformed() {
    let tags: Vec<(u16, u16)> = (0..9).map(|i| (0x8100, i)).collect();
    let f = ethernet(
        SERVER_MAC,
        CLIENT_MAC,
        &tags,
        ETHERTYPE_IPV4,
        &ip_tcp(sa(C4), sa(S4), &fields(), b""),
    );
    let (p, st) = decode_one(&f, LinkType::ETHERNET);
    assert!(p.is_none());
    assert_eq!(st.malformed.vlan, 1);
}

#[test]
fn non_ip_other_protocols_and_unsupported_link_types_are_counted() {
    let arp = ethernet(SERVER_MAC, CLIENT_MAC, &[], ETHERTYPE_ARP, &[0; 28]);
    let icmp = frame(
        &Link::Ethernet,
        &ip(
            IpAddr::V4(v4("10.0.0.1")),
            IpAddr::V4(v4("10.0.0.2")),
            PROTO_ICMP,
            &[8, 0, 0, 0, 0, 0, 0, 0],
        ),
    );
    let tcp = frame(&Link::Ethernet, &ip_tcp(sa(C4), sa(S4), &fields(), b"z"));
    let mut d = NetDecoder::new(NetConfig::default());
    assert!(d
        .decode(&frame_at(&arp, LinkType::ETHERNET, 1, 0))
        .is_none());
    assert!(d
        .decode(&frame_at(&icmp, LinkType::ETHERNET, 2, 0))
        .is_none());
    assert!(d.decode(&frame_at(&tcp, LinkType(105), 3, 0)).is_none());
    assert!(d.decode(&frame_at(&tcp, LinkType(105), 4, 0)).is_none());
    assert!(d.decode(&frame_at(&tcp, LinkType(127), 5, 0)).is_none());
    let st = d.stats();
    assert_eq!(st.frames, 5);
    assert_eq!(st.non_ip, 1);
    assert_eq!(st.other_ip_protocols, 1);
    assert_eq!(st.unsupported_link_types.get(&105), Some(&2));
    assert_eq!(st.unsupported_link_types.get(&127), Some(&1));
    assert_eq!(st.link_types.get(&1), Some(&2));
    assert_eq!(st.bytes, (arp.len() + icmp.len() + 3 * tcp.len()) as u64);
}

#[test]
fn raw_link_types_refuse_the_other_ip_version() {
    let t6 = ip_tcp(sa(C6), sa(S6), &fields(), b"6");
    let t4 = ip_tcp(sa(C4), sa(S4), &fields(), b"4");
    assert_eq!(decode_one(&t6, LinkType::IPV4).1.malformed.ipv4, 1);
    assert_eq!(decode_one(&t4, LinkType::IPV6).1.malformed.ipv6, 1);
}

#[test]
fn ipv6_extension_headers_are_walked() {
    let (c, s) = (sa(C6), sa(S6));
    let seg = tcp(
        c.ip(),
        s.ip(),
        &TcpFields {
            sport: c.port(),
            dport: s.port(),
            ..fields()
        },
        b"exts",
    );
    let chains: Vec<Vec<Ipv6Ext>> = vec![
        vec![Ipv6Ext::HopByHop],
        vec![Ipv6Ext::HopByHop, Ipv6Ext::Routing, Ipv6Ext::DestOpts],
        vec![Ipv6Ext::Auth { spi: 7, seq: 1 }, Ipv6Ext::DestOpts],
        // An atomic fragment (RFC 6946) is no fragment at all.
        vec![Ipv6Ext::Fragment {
            offset: 0,
            more: false,
            id: 9,
        }],
    ];
    for exts in chains {
        let pkt = ipv6(v6("2001:db8::1"), v6("2001:db8::2"), &exts, PROTO_TCP, &seg);
        let f = frame(&Link::Ethernet, &pkt);
        let (p, st) = decode_one(&f, LinkType::ETHERNET);
        let t = tcp_of(p);
        assert_eq!(t.payload.as_ref(), b"exts", "{exts:?}");
        assert_eq!(st.fragments, 0);
    }
    // No next header (59) is an other protocol, not damage.
    let pkt = ipv6(
        v6("2001:db8::1"),
        v6("2001:db8::2"),
        &[Ipv6Ext::DestOpts],
        59,
        &[],
    );
    assert_eq!(
        decode_one(&frame(&Link::Ethernet, &pkt), LinkType::ETHERNET)
            .1
            .other_ip_protocols,
        1
    );
}

/// Feed frames in order, return the packets that came out with their frame index.
fn run(
    d: &mut NetDecoder,
    frames: &[Vec<u8>],
    link: LinkType,
) -> Vec<(u64, Timestamp, Transport, Vec<u8>, bool)> {
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let fr = frame_at(f, link, i as u64 + 1, 1000 * i as i64);
        match d.decode(&fr) {
            Some(Packet::Tcp(s)) => out.push((
                s.frame.index,
                s.ts,
                Transport::Tcp,
                s.payload.to_vec(),
                matches!(s.payload, Cow::Owned(_)),
            )),
            Some(Packet::Udp(u)) => out.push((
                u.frame.index,
                u.ts,
                Transport::Udp,
                u.payload.to_vec(),
                matches!(u.payload, Cow::Owned(_)),
            )),
            None => {}
        }
    }
    out
}

fn big_payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn fragments_in_order_and_reversed_reassemble_both_families() {
    let data = big_payload(4000);
    for (c, s) in [(sa(C4), sa(S4)), (sa(C6), sa(S6))] {
        for (transport, pkt) in [
            (Transport::Udp, ip_udp(c, s, &data)),
            (Transport::Tcp, ip_tcp(c, s, &fields(), &data)),
        ] {
            let pieces = fragment(&pkt, 4, 0x1234);
            assert_eq!(pieces.len(), 4);
            for reversed in [false, true] {
                let mut frames: Vec<Vec<u8>> =
                    pieces.iter().map(|p| frame(&Link::Ethernet, p)).collect();
                if reversed {
                    frames.reverse();
                }
                let mut d = NetDecoder::new(NetConfig::default());
                let out = run(&mut d, &frames, LinkType::ETHERNET);
                assert_eq!(
                    out.len(),
                    1,
                    "{c} {transport:?} reversed={reversed} {:?}",
                    d.stats()
                );
                let (index, ts, t, payload, owned) = &out[0];
                assert_eq!(*index, 4, "the last fragment's frame");
                assert_eq!(*ts, Timestamp(3000));
                assert_eq!(*t, transport);
                assert_eq!(payload, &data);
                assert!(owned);
                let st = d.stats();
                assert_eq!(
                    (st.fragments, st.reassembled, st.fragment_overlap_conflicts),
                    (4, 1, 0)
                );
                assert_eq!(d.open_reassemblies(), 0);
            }
        }
    }
}

#[test]
fn ipv6_fragments_behind_and_in_front_of_extension_headers() {
    // Hop-by-hop before the fragment header (unfragmentable part); destination
    // options inside the fragmentable part, in front of UDP.
    let (c, s) = (sa(C6), sa(S6));
    let data = big_payload(100);
    let mut fragmentable = vec![PROTO_UDP, 0, 1, 4, 0, 0, 0, 0];
    fragmentable.extend(udp(c.ip(), s.ip(), c.port(), s.port(), &data));
    let (a, b) = (v6("2001:db8::1"), v6("2001:db8::2"));
    let piece = |off: usize, end: usize, more: bool| {
        let exts = [
            Ipv6Ext::HopByHop,
            Ipv6Ext::Fragment {
                offset: off,
                more,
                id: 77,
            },
        ];
        frame(&Link::Sll2, &ipv6(a, b, &exts, 60, &fragmentable[off..end]))
    };
    let frames = vec![piece(56, fragmentable.len(), false), piece(0, 56, true)];
    let mut d = NetDecoder::new(NetConfig::default());
    let out = run(&mut d, &frames, LinkType::LINUX_SLL2);
    assert_eq!(out.len(), 1, "{:?}", d.stats());
    assert_eq!(out[0].2, Transport::Udp);
    assert_eq!(out[0].3, data);
    assert_eq!(out[0].0, 2);
}

/// IPv4 fragments of one UDP datagram, cut by hand to overlap.
fn v4_fragment(udp_bytes: &[u8], offset: usize, len: usize, more: bool) -> Vec<u8> {
    let f = Ipv4Fields {
        id: 42,
        more_fragments: more,
        frag_offset: offset,
        ..Ipv4Fields::default()
    };
    let end = (offset + len).min(udp_bytes.len());
    frame(
        &Link::Ethernet,
        &ipv4(
            v4("10.0.0.1"),
            v4("10.0.0.2"),
            PROTO_UDP,
            &f,
            &udp_bytes[offset..end],
        ),
    )
}

fn v6_fragment(udp_bytes: &[u8], offset: usize, len: usize, more: bool) -> Vec<u8> {
    let end = (offset + len).min(udp_bytes.len());
    let ext = Ipv6Ext::Fragment {
        offset,
        more,
        id: 42,
    };
    frame(
        &Link::Ethernet,
        &ipv6(
            v6("2001:db8::1"),
            v6("2001:db8::2"),
            &[ext],
            PROTO_UDP,
            &udp_bytes[offset..end],
        ),
    )
}

#[test]
fn overlapping_fragments_same_bytes_silent_different_bytes_first_wins() {
    let data = big_payload(64);
    type Cut = fn(&[u8], usize, usize, bool) -> Vec<u8>;
    for (c, s, cut) in [
        (sa(C4), sa(S4), v4_fragment as Cut),
        (sa(C6), sa(S6), v6_fragment as Cut),
    ] {
        let u = udp(c.ip(), s.ip(), c.port(), s.port(), &data);
        assert_eq!(u.len(), 72);
        // Same bytes: [0,32) [16,48) [40,72).
        let frames = vec![
            cut(&u, 0, 32, true),
            cut(&u, 16, 32, true),
            cut(&u, 40, 32, false),
        ];
        let mut d = NetDecoder::new(NetConfig::default());
        let out = run(&mut d, &frames, LinkType::ETHERNET);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].3, data);
        assert_eq!(d.stats().fragment_overlap_conflicts, 0);
        // Different bytes in the overlap: the first bytes are kept, a conflict counted.
        let mut altered = u.clone();
        for b in &mut altered[16..32] {
            *b ^= 0xff;
        }
        let frames = vec![
            cut(&u, 0, 32, true),
            cut(&altered, 16, 32, true),
            cut(&u, 40, 32, false),
        ];
        let mut d = NetDecoder::new(NetConfig::default());
        let out = run(&mut d, &frames, LinkType::ETHERNET);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].3, data, "first bytes win");
        assert_eq!(d.stats().fragment_overlap_conflicts, 1);
    }
}

#[test]
fn fragment_limits_bite_and_are_counted() {
    let data = big_payload(4000);
    let pkt = ip_udp(sa(C4), sa(S4), &data);
    let frames: Vec<Vec<u8>> = fragment(&pkt, 8, 5)
        .iter()
        .map(|p| frame(&Link::Ethernet, p))
        .collect();
    assert_eq!(frames.len(), 8);

    // Too many fragments.
    let mut d = NetDecoder::new(NetConfig {
        max_fragments: 4,
        ..NetConfig::default()
    });
    assert!(run(&mut d, &frames, LinkType::ETHERNET).is_empty());
    assert!(d.stats().fragment_drops_too_many >= 1);

    // Too large.
    let mut d = NetDecoder::new(NetConfig {
        max_datagram: 2000,
        ..NetConfig::default()
    });
    assert!(run(&mut d, &frames, LinkType::ETHERNET).is_empty());
    assert!(d.stats().fragment_drops_too_large >= 1);

    // Timeout in capture time: frames 1000 ns apart, timeout 2500 ns.
    let mut d = NetDecoder::new(NetConfig {
        fragment_timeout_ns: 2500,
        ..NetConfig::default()
    });
    assert!(run(&mut d, &frames, LinkType::ETHERNET).is_empty());
    assert!(d.stats().fragment_timeouts >= 1);

    // Concurrent reassemblies: two interleaved datagrams with room for one.
    let other: Vec<Vec<u8>> = fragment(&ip_udp(sa(C4), sa(S4), &data), 2, 6)
        .iter()
        .map(|p| frame(&Link::Ethernet, p))
        .collect();
    let interleaved = vec![
        frames[0].clone(),
        other[0].clone(),
        frames[1].clone(),
        other[1].clone(),
    ];
    let mut d = NetDecoder::new(NetConfig {
        max_reassemblies: 1,
        ..NetConfig::default()
    });
    let out = run(&mut d, &interleaved, LinkType::ETHERNET);
    assert!(out.is_empty());
    assert!(d.stats().fragment_evictions >= 2);

    // End of input with a datagram still open.
    let mut d = NetDecoder::new(NetConfig::default());
    assert!(run(&mut d, &frames[..3], LinkType::ETHERNET).is_empty());
    assert_eq!(d.open_reassemblies(), 1);
    d.finish();
    assert_eq!(d.stats().fragment_unfinished, 1);
    assert_eq!(d.stats().fragment_drops(), 1);
}

#[test]
fn ethernet_padding_never_becomes_payload() {
    let tcp_frame = pad_ethernet(frame(
        &Link::Ethernet,
        &ip_tcp(sa(C4), sa(S4), &fields(), b"ab"),
    ));
    assert_eq!(tcp_frame.len(), 60);
    let (p, st) = decode_one(&tcp_frame, LinkType::ETHERNET);
    assert_eq!(tcp_of(p).payload.as_ref(), b"ab");
    assert_eq!(st.truncated, 0);
    let udp_frame = pad_ethernet(frame(&Link::Ethernet, &ip_udp(sa(C4), sa(S4), b"c")));
    assert_eq!(
        udp_of(decode_one(&udp_frame, LinkType::ETHERNET).0)
            .payload
            .as_ref(),
        b"c"
    );
    let tagged = pad_ethernet(frame(
        &Link::EthernetTagged(vec![(0x8100, 3)]),
        &ip_tcp(sa(C4), sa(S4), &fields(), b""),
    ));
    assert!(tcp_of(decode_one(&tagged, LinkType::ETHERNET).0)
        .payload
        .is_empty());
}

#[test]
fn snaplen_cut_segment_delivers_what_is_present_and_counts_it() {
    let full = frame(
        &Link::Ethernet,
        &ip_tcp(sa(C4), sa(S4), &fields(), &big_payload(1000)),
    );
    let cut = &full[..14 + 20 + 20 + 100];
    let fr = Frame {
        orig_len: full.len() as u32,
        ..frame_at(cut, LinkType::ETHERNET, 1, 0)
    };
    let mut d = NetDecoder::new(NetConfig::default());
    let seg = tcp_of(d.decode(&fr));
    assert_eq!(seg.payload.as_ref(), &big_payload(1000)[..100]);
    assert_eq!(d.stats().truncated, 1);
}

#[test]
fn truncated_headers_at_every_layer_are_counted_not_panicking() {
    let v4pkt = ip_tcp(sa(C4), sa(S4), &fields(), b"payload");
    let v6pkt = ipv6(
        v6("2001:db8::1"),
        v6("2001:db8::2"),
        &[Ipv6Ext::HopByHop],
        PROTO_UDP,
        &udp(
            IpAddr::V6(v6("2001:db8::1")),
            IpAddr::V6(v6("2001:db8::2")),
            1,
            2,
            b"p",
        ),
    );
    let mut links = Link::all();
    links.push(Link::Raw(LinkType::IPV4));
    for link in links {
        for pkt in [&v4pkt, &v6pkt] {
            if link == Link::Raw(LinkType::IPV4) && pkt[0] >> 4 == 6 {
                continue;
            }
            let full = frame(&link, pkt);
            let link_len = full.len() - pkt.len();
            for cut in 0..full.len() {
                let data = &full[..cut];
                let fr = Frame {
                    orig_len: full.len() as u32,
                    ..frame_at(data, link.link_type(), 1, 0)
                };
                let mut d = NetDecoder::new(NetConfig::default());
                let p = d.decode(&fr);
                let st = d.stats();
                let ip_rel = cut.saturating_sub(link_len);
                let is_v6 = pkt[0] >> 4 == 6;
                let (ip_hdr, ext_end, l4_end) = if is_v6 { (40, 48, 56) } else { (20, 20, 40) };
                if cut < link_len {
                    assert!(p.is_none());
                    let damaged = st.malformed.link + st.malformed.vlan;
                    assert_eq!(damaged, 1, "{link:?} cut {cut}");
                } else if cut == link_len && !matches!(link, Link::Raw(_)) {
                    assert!(p.is_none());
                    assert_eq!(st.malformed.total(), 1, "{link:?} cut {cut}");
                } else if ip_rel < ip_hdr {
                    assert!(p.is_none());
                    assert_eq!(st.malformed.total(), 1, "{link:?} cut {cut}");
                    assert!(
                        st.malformed.link + st.malformed.ipv4 + st.malformed.ipv6 == 1,
                        "{link:?} cut {cut}"
                    );
                } else if ip_rel < ext_end {
                    assert!(p.is_none());
                    assert_eq!(st.malformed.ipv6_ext, 1, "{link:?} cut {cut}");
                } else if ip_rel < l4_end {
                    assert!(p.is_none());
                    assert_eq!(st.malformed.tcp + st.malformed.udp, 1, "{link:?} cut {cut}");
                } else {
                    assert!(p.is_some(), "{link:?} cut {cut}");
                    assert_eq!(st.truncated, 1, "{link:?} cut {cut}");
                }
            }
        }
    }
}

#[test]
fn ip_header_lies_are_malformed() {
    let mut pkt = ip_tcp(sa(C4), sa(S4), &fields(), b"x");
    pkt[2..4].copy_from_slice(&10u16.to_be_bytes()); // total length below the header
    assert_eq!(decode_one(&pkt, LinkType::RAW).1.malformed.ipv4, 1);
    let mut pkt = ip_tcp(sa(C4), sa(S4), &fields(), b"x");
    pkt[0] = 0x44; // IHL 4
    assert_eq!(decode_one(&pkt, LinkType::RAW).1.malformed.ipv4, 1);
    let mut pkt = ip_tcp(sa(C4), sa(S4), &fields(), b"x");
    pkt[20 + 12] = 0x40; // TCP data offset 4
    assert_eq!(decode_one(&pkt, LinkType::RAW).1.malformed.tcp, 1);
    // A zero total length (TCP segmentation offload) runs to the frame's end.
    let mut pkt = ip_tcp(sa(C4), sa(S4), &fields(), b"tso");
    pkt[2..4].copy_from_slice(&0u16.to_be_bytes());
    assert_eq!(
        tcp_of(decode_one(&pkt, LinkType::RAW).0).payload.as_ref(),
        b"tso"
    );
}

#[test]
fn zeroed_checksums_are_not_checked() {
    let mut pkt = ip_tcp(sa(C4), sa(S4), &fields(), b"offloaded");
    pkt[10] = 0;
    pkt[11] = 0;
    pkt[20 + 16] = 0;
    pkt[20 + 17] = 0;
    assert_eq!(
        tcp_of(decode_one(&pkt, LinkType::RAW).0).payload.as_ref(),
        b"offloaded"
    );
}

#[test]
fn conversation_builder_scripts_seq_and_ack() {
    let mut conv = Conversation::new(sa(C4), sa(S4)).link(Link::Sll2);
    conv.handshake()
        .send(Side::Client, b"0123456789", 4)
        .send(Side::Server, b"ok", 100)
        .close();
    let frames = conv.frames();
    assert_eq!(frames.len(), 3 + 3 + 1 + 3);
    let mut d = NetDecoder::new(NetConfig::default());
    let segs: Vec<_> = frames
        .iter()
        .enumerate()
        .map(|(i, (ts, f, lt))| {
            let fr = Frame {
                ts: *ts,
                ..frame_at(f, *lt, i as u64 + 1, 0)
            };
            let s = tcp_of(d.decode(&fr));
            (s.seq, s.ack, s.flags.0, s.payload.to_vec())
        })
        .collect();
    assert_eq!(segs[0], (1000, 0, SYN, vec![]));
    assert_eq!(segs[1], (5000, 1001, SYN | ACK, vec![]));
    assert_eq!(segs[2], (1001, 5001, ACK, vec![]));
    assert_eq!(segs[3], (1001, 5001, ACK, b"0123".to_vec()));
    assert_eq!(segs[5], (1009, 5001, ACK | PSH, b"89".to_vec()));
    assert_eq!(segs[6], (5001, 1011, ACK | PSH, b"ok".to_vec()));
    assert_eq!(segs[7], (1011, 5003, FIN | ACK, vec![]));
    assert_eq!(segs[9], (1012, 5004, ACK, vec![]));
    assert!(frames.windows(2).all(|w| w[0].0 < w[1].0));

    // Mid-stream start, drop, duplicate and reorder operate on the script.
    let mut conv = Conversation::new(sa(C6), sa(S6)).isn(u32::MAX - 1, 7);
    conv.send_split(Side::Client, b"abcdef", &[2, 2])
        .rst(Side::Server);
    assert_eq!(conv.segments().len(), 4);
    assert_eq!(conv.segments()[1].seq, 0, "sequence numbers wrap");
    conv.duplicate(0).swap(1, 2).drop_segment(4);
    let payloads: Vec<&[u8]> = conv
        .segments()
        .iter()
        .map(|s| s.payload.as_slice())
        .collect();
    assert_eq!(payloads, vec![&b"ab"[..], b"cd", b"ab", b"ef"]);
}

fn key(a: &str, b: &str) -> FlowKey {
    let ep = |s: &str| {
        let s = sa(s);
        Endpoint {
            ip: s.ip(),
            port: s.port(),
        }
    };
    FlowKey::new(Transport::Tcp, ep(a), ep(b)).0
}

fn sel(hosts: &[&str], nets: &[&str], ports: &[u16]) -> Selection {
    let h: Vec<String> = hosts.iter().map(|s| s.to_string()).collect();
    let n: Vec<String> = nets.iter().map(|s| s.to_string()).collect();
    Selection::parse(&h, &n, ports).expect("valid selection")
}

#[test]
fn selection_follows_tcpdump_semantics() {
    let k = key("10.1.2.3:40000", "192.168.0.9:5190");
    // host matches either endpoint; several hosts: or.
    assert!(sel(&["10.1.2.3"], &[], &[]).matches(&k));
    assert!(sel(&["192.168.0.9"], &[], &[]).matches(&k));
    assert!(sel(&["1.1.1.1", "192.168.0.9"], &[], &[]).matches(&k));
    assert!(!sel(&["1.1.1.1"], &[], &[]).matches(&k));
    // port matches either endpoint; several ports: or.
    assert!(sel(&[], &[], &[5190]).matches(&k));
    assert!(sel(&[], &[], &[40000]).matches(&k));
    assert!(sel(&[], &[], &[80, 5190]).matches(&k));
    assert!(!sel(&[], &[], &[80, 443]).matches(&k));
    // net, v4 and v6.
    assert!(sel(&[], &["10.0.0.0/8"], &[]).matches(&k));
    assert!(sel(&[], &["192.168.0.0/24"], &[]).matches(&k));
    assert!(!sel(&[], &["172.16.0.0/12"], &[]).matches(&k));
    assert!(!sel(&[], &["2001:db8::/32"], &[]).matches(&k));
    let k6 = key("[2001:db8:1::5]:1000", "[2001:db9::1]:443");
    assert!(sel(&[], &["2001:db8::/32"], &[]).matches(&k6));
    assert!(sel(&[], &["2001:db8:1::/48"], &[]).matches(&k6));
    assert!(!sel(&[], &["2001:db8:2::/48"], &[]).matches(&k6));
    assert!(!sel(&[], &["10.0.0.0/8"], &[]).matches(&k6));
    // different kinds: and.
    assert!(sel(&["10.1.2.3"], &[], &[5190]).matches(&k));
    assert!(!sel(&["10.1.2.3"], &[], &[80]).matches(&k));
    assert!(!sel(&["10.1.2.3"], &["172.16.0.0/12"], &[]).matches(&k));
    assert!(sel(&["10.1.2.3"], &["192.168.0.0/16"], &[40000, 1]).matches(&k));
    assert!(!sel(&["10.1.2.3"], &[], &[]).is_all());
    assert!(sel(&[], &[], &[]).is_all());
}

#[test]
fn selection_errors_name_the_bad_value() {
    for (hosts, nets) in [
        (vec!["not-an-ip"], vec![]),
        (vec![], vec!["10.0.0.0/33"]),
        (vec![], vec!["2001:db8::/129"]),
        (vec![], vec!["10.0.0.0/x"]),
        (vec![], vec!["banana/8"]),
        (vec![], vec!["10.1.0.0/8"]),
    ] {
        let h: Vec<String> = hosts.iter().map(|s: &&str| s.to_string()).collect();
        let n: Vec<String> = nets.iter().map(|s: &&str| s.to_string()).collect();
        let err = Selection::parse(&h, &n, &[]).expect_err("bad value refused");
        let bad = hosts.first().or(nets.first()).expect("one bad value");
        assert!(err.contains(bad), "{err:?} names {bad}");
    }
}

fn all_link_types() -> Vec<LinkType> {
    vec![
        LinkType::NULL,
        LinkType::ETHERNET,
        LinkType::RAW_12,
        LinkType::RAW_14,
        LinkType::RAW,
        LinkType::LOOP,
        LinkType::LINUX_SLL,
        LinkType::IPV4,
        LinkType::IPV6,
        LinkType::LINUX_SLL2,
        LinkType(147),
    ]
}

proptest! {
    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), lt in 0usize..11) {
        let link = all_link_types()[lt];
        let mut d = NetDecoder::new(NetConfig { max_reassemblies: 4, ..NetConfig::default() });
        let _ = d.decode(&frame_at(&data, link, 1, 0));
        prop_assert_eq!(d.stats().frames, 1);
    }

    /// Valid link and IP headers followed by random bytes reach the deeper layers.
    #[test]
    fn random_bytes_after_valid_headers_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..120),
        v6_first in any::<bool>(),
        link_i in 0usize..12,
        frag_bits in any::<u16>(),
        proto in prop_oneof![Just(0u8), Just(6u8), Just(17u8), Just(43u8), Just(44u8), Just(51u8), Just(60u8), any::<u8>()],
    ) {
        let link = Link::all()[link_i].clone();
        let mut pkt = if v6_first {
            ipv6(v6("2001:db8::1"), v6("2001:db8::2"), &[], proto, &tail)
        } else {
            let mut p = ipv4(v4("10.0.0.1"), v4("10.0.0.2"), proto, &Ipv4Fields::default(), &tail);
            p[6..8].copy_from_slice(&frag_bits.to_be_bytes());
            p
        };
        if !v6_first && tail.len() > 3 {
            pkt[2] ^= tail[0]; // sometimes lie about the total length
        }
        let f = frame(&link, &pkt);
        let mut d = NetDecoder::new(NetConfig { max_reassemblies: 2, max_fragments: 3, ..NetConfig::default() });
        for i in 0..3 {
            let _ = d.decode(&frame_at(&f, link.link_type(), i + 1, i as i64));
        }
        d.finish();
        prop_assert_eq!(d.stats().frames, 3);
    }
}

/// Counts heap allocations made by the current thread, to show the common
/// case allocates nothing. Test-only: the library itself has no unsafe code.
mod alloc_count {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static ALLOCS: Cell<u64> = const { Cell::new(0) };
    }

    pub fn count() -> u64 {
        ALLOCS.with(Cell::get)
    }

    #[allow(unsafe_code)]
    // SAFETY: forwards every call unchanged to the system allocator; the
    // counter is a const-initialised thread local that never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as our caller's.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as our caller's.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as our caller's.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

#[global_allocator]
static ALLOCATOR: alloc_count::Counting = alloc_count::Counting;

#[test]
fn common_case_does_not_allocate() {
    let (c, s) = (sa(C4), sa(S4));
    let frames: Vec<Vec<u8>> = (0..100u32)
        .map(|i| {
            frame(
                &Link::Ethernet,
                &ip_tcp(
                    if i % 2 == 0 { c } else { s },
                    if i % 2 == 0 { s } else { c },
                    &TcpFields {
                        seq: i * 100,
                        ..fields()
                    },
                    &big_payload(100),
                ),
            )
        })
        .collect();
    let mut d = NetDecoder::new(NetConfig::default());
    // The first frame creates the per-link-type counter entry.
    assert!(d
        .decode(&frame_at(&frames[0], LinkType::ETHERNET, 1, 0))
        .is_some());
    let before = alloc_count::count();
    let mut payload = 0;
    for (i, f) in frames.iter().enumerate() {
        if let Some(Packet::Tcp(s)) =
            d.decode(&frame_at(f, LinkType::ETHERNET, i as u64 + 2, i as i64))
        {
            payload += s.payload.len();
        }
    }
    assert_eq!(alloc_count::count() - before, 0);
    assert_eq!(payload, 100 * 100);
    // The counter does see allocations (a reassembled datagram owns its bytes).
    let pieces = fragment(&ip_udp(c, s, &big_payload(100)), 2, 3);
    let before = alloc_count::count();
    for (i, p) in pieces.iter().enumerate() {
        let f = frame(&Link::Raw(LinkType::RAW), p);
        let _ = d.decode(&frame_at(&f, LinkType::RAW, 200 + i as u64, 200));
    }
    assert!(alloc_count::count() > before);
    assert_eq!(d.stats().reassembled, 1);
}
