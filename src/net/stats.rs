//! Counters of the net stage: what every frame became (segment, datagram,
//! fragment, or a counted drop). It owns counting and merging only; it never
//! decides anything about a frame.

use std::collections::BTreeMap;

/// The layer at which a frame was found damaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// Link header (Ethernet, SLL, SLL2, null/loop) shorter than its fixed size.
    Link,
    /// An 802.1Q/QinQ tag cut short, or more tags than we walk.
    Vlan,
    Ipv4,
    Ipv6,
    /// An IPv6 extension header (hop-by-hop, routing, destination, AH, fragment).
    Ipv6Ext,
    Tcp,
    Udp,
}

/// Frames dropped as damaged, by the layer that was damaged.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MalformedStats {
    pub link: u64,
    pub vlan: u64,
    pub ipv4: u64,
    pub ipv6: u64,
    pub ipv6_ext: u64,
    pub tcp: u64,
    pub udp: u64,
}

impl MalformedStats {
    pub fn count(&mut self, layer: Layer) {
        let slot = match layer {
            Layer::Link => &mut self.link,
            Layer::Vlan => &mut self.vlan,
            Layer::Ipv4 => &mut self.ipv4,
            Layer::Ipv6 => &mut self.ipv6,
            Layer::Ipv6Ext => &mut self.ipv6_ext,
            Layer::Tcp => &mut self.tcp,
            Layer::Udp => &mut self.udp,
        };
        *slot += 1;
    }

    pub fn total(&self) -> u64 {
        self.link + self.vlan + self.ipv4 + self.ipv6 + self.ipv6_ext + self.tcp + self.udp
    }

    pub fn merge(&mut self, o: &MalformedStats) {
        self.link += o.link;
        self.vlan += o.vlan;
        self.ipv4 += o.ipv4;
        self.ipv6 += o.ipv6;
        self.ipv6_ext += o.ipv6_ext;
        self.tcp += o.tcp;
        self.udp += o.udp;
    }
}

/// Everything the net stage counted. Every budget that bites has a counter.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NetStats {
    /// Frames handed to the decoder.
    pub frames: u64,
    /// Captured bytes of those frames.
    pub bytes: u64,
    /// Frames per link type number (tcpdump.org `LINKTYPE_*`).
    pub link_types: BTreeMap<u32, u64>,
    /// Frames of link types we do not decode, per link type number.
    pub unsupported_link_types: BTreeMap<u32, u64>,
    /// Frames whose link layer carried something other than IP (ARP, LLDP, ...).
    pub non_ip: u64,
    /// IPv4 packets (fragments included).
    pub ipv4: u64,
    /// IPv6 packets (fragments included).
    pub ipv6: u64,
    /// IP fragments seen (IPv4 and IPv6).
    pub fragments: u64,
    /// Datagrams completed from fragments.
    pub reassembled: u64,
    /// Fragments that overlapped earlier ones with different bytes (the first
    /// bytes were kept).
    pub fragment_overlap_conflicts: u64,
    /// Fragments whose end disagrees with an earlier last fragment; the
    /// datagram was dropped.
    pub fragment_inconsistent: u64,
    /// Reassemblies dropped for having too many fragments.
    pub fragment_drops_too_many: u64,
    /// Reassemblies dropped because the datagram grew past the size limit.
    pub fragment_drops_too_large: u64,
    /// Reassemblies evicted (oldest first) because too many were open.
    pub fragment_evictions: u64,
    /// Reassemblies that timed out in capture time.
    pub fragment_timeouts: u64,
    /// Reassemblies still incomplete when the input ended.
    pub fragment_unfinished: u64,
    pub tcp_segments: u64,
    pub udp_datagrams: u64,
    /// IP packets carrying neither TCP nor UDP (ICMP, ESP, GRE, ...).
    pub other_ip_protocols: u64,
    /// Segments and datagrams delivered with fewer bytes than their headers
    /// announce (snaplen cut, or a lying length): what was present was kept.
    pub truncated: u64,
    pub malformed: MalformedStats,
}

impl NetStats {
    /// Add another decoder's counters (e.g. another shard or input) to these.
    pub fn merge(&mut self, o: &NetStats) {
        self.frames += o.frames;
        self.bytes += o.bytes;
        for (k, v) in &o.link_types {
            *self.link_types.entry(*k).or_insert(0) += v;
        }
        for (k, v) in &o.unsupported_link_types {
            *self.unsupported_link_types.entry(*k).or_insert(0) += v;
        }
        self.non_ip += o.non_ip;
        self.ipv4 += o.ipv4;
        self.ipv6 += o.ipv6;
        self.fragments += o.fragments;
        self.reassembled += o.reassembled;
        self.fragment_overlap_conflicts += o.fragment_overlap_conflicts;
        self.fragment_inconsistent += o.fragment_inconsistent;
        self.fragment_drops_too_many += o.fragment_drops_too_many;
        self.fragment_drops_too_large += o.fragment_drops_too_large;
        self.fragment_evictions += o.fragment_evictions;
        self.fragment_timeouts += o.fragment_timeouts;
        self.fragment_unfinished += o.fragment_unfinished;
        self.tcp_segments += o.tcp_segments;
        self.udp_datagrams += o.udp_datagrams;
        self.other_ip_protocols += o.other_ip_protocols;
        self.truncated += o.truncated;
        self.malformed.merge(&o.malformed);
    }

    /// Reassemblies given up for any limit (count, size, concurrency, time,
    /// inconsistency, end of input).
    pub fn fragment_drops(&self) -> u64 {
        self.fragment_inconsistent
            + self.fragment_drops_too_many
            + self.fragment_drops_too_large
            + self.fragment_evictions
            + self.fragment_timeouts
            + self.fragment_unfinished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_every_counter_and_map_entry() {
        let mut a = NetStats {
            frames: 2,
            ..NetStats::default()
        };
        a.link_types.insert(1, 2);
        a.malformed.count(Layer::Tcp);
        let mut b = NetStats {
            frames: 3,
            fragment_timeouts: 1,
            ..NetStats::default()
        };
        b.link_types.insert(1, 1);
        b.link_types.insert(113, 2);
        b.unsupported_link_types.insert(147, 1);
        b.malformed.count(Layer::Tcp);
        b.malformed.count(Layer::Vlan);
        a.merge(&b);
        assert_eq!(a.frames, 5);
        assert_eq!(a.link_types.get(&1), Some(&3));
        assert_eq!(a.link_types.get(&113), Some(&2));
        assert_eq!(a.unsupported_link_types.get(&147), Some(&1));
        assert_eq!(a.malformed.tcp, 2);
        assert_eq!(a.malformed.vlan, 1);
        assert_eq!(a.malformed.total(), 3);
        assert_eq!(a.fragment_drops(), 1);
    }

    #[test]
    fn serializes_link_types_by_number() {
        let mut s = NetStats::default();
        s.link_types.insert(276, 4);
        let json = serde_json::to_string(&s).expect("stats serialize");
        assert!(json.contains("\"link_types\":{\"276\":4}"), "{json}");
    }
}
