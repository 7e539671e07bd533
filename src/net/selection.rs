//! Capture selection before analysis: `--host`, `--net` and `--port`, combined
//! as tcpdump users expect (values of one kind: or; different kinds: and; a
//! host or port matches either endpoint). It owns parsing those values and
//! matching a [`FlowKey`]; it never looks at payload.

use std::net::IpAddr;

use super::FlowKey;

/// An address prefix (`10.0.0.0/8`, `2001:db8::/32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parse `ADDR/LEN` or a bare address (a full-length prefix). Host bits
    /// set below the prefix are refused, as tcpdump does.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr_text, len_text) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("--net {text}: not an IPv4 or IPv6 address"))?;
        let max = match addr {
            IpAddr::V4(_) => 32u8,
            IpAddr::V6(_) => 128u8,
        };
        let prefix = match len_text {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("--net {text}: prefix length must be 0..={max}")),
            },
        };
        let cidr = Cidr { addr, prefix };
        if cidr.network() != addr {
            return Err(format!(
                "--net {text}: host bits set below /{prefix} (did you mean {}/{prefix}?)",
                cidr.network()
            ));
        }
        Ok(cidr)
    }

    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask32(self.prefix)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask128(self.prefix)).into()),
        }
    }

    /// Whether `ip` lies in this prefix (an IPv4 prefix never holds an IPv6 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => u32::from(a) & mask32(self.prefix) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(a) & mask128(self.prefix) == u128::from(n),
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// Which flows to analyse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    hosts: Vec<IpAddr>,
    nets: Vec<Cidr>,
    ports: Vec<u16>,
}

impl Selection {
    /// Build a selection from the values of `--host`, `--net` and `--port`.
    /// The error names the bad value.
    pub fn parse(hosts: &[String], nets: &[String], ports: &[u16]) -> Result<Selection, String> {
        let hosts = hosts
            .iter()
            .map(|h| {
                let bare = h.trim_start_matches('[').trim_end_matches(']');
                bare.parse::<IpAddr>()
                    .map_err(|_| format!("--host {h}: not an IPv4 or IPv6 address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let nets = nets
            .iter()
            .map(|n| Cidr::parse(n))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Selection {
            hosts,
            nets,
            ports: ports.to_vec(),
        })
    }

    /// True when nothing narrows the selection: every flow matches.
    pub fn is_all(&self) -> bool {
        self.hosts.is_empty() && self.nets.is_empty() && self.ports.is_empty()
    }

    /// Whether a flow is selected.
    pub fn matches(&self, key: &FlowKey) -> bool {
        let (a, b) = (key.lo, key.hi);
        (self.hosts.is_empty() || self.hosts.iter().any(|h| *h == a.ip || *h == b.ip))
            && (self.nets.is_empty()
                || self
                    .nets
                    .iter()
                    .any(|n| n.contains(a.ip) || n.contains(b.ip)))
            && (self.ports.is_empty() || self.ports.iter().any(|p| *p == a.port || *p == b.port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Endpoint, Transport};

    fn key(a: &str, ap: u16, b: &str, bp: u16) -> FlowKey {
        let ep = |s: &str, port| Endpoint {
            ip: s.parse().expect("test address"),
            port,
        };
        FlowKey::new(Transport::Tcp, ep(a, ap), ep(b, bp)).0
    }

    #[test]
    fn masks_at_the_edges() {
        assert_eq!(mask32(0), 0);
        assert_eq!(mask32(32), u32::MAX);
        assert_eq!(mask128(0), 0);
        assert_eq!(mask128(128), u128::MAX);
        assert!(Cidr::parse("0.0.0.0/0")
            .expect("any")
            .contains("1.2.3.4".parse().expect("ip")));
    }

    #[test]
    fn empty_selects_all() {
        let s = Selection::parse(&[], &[], &[]).expect("empty");
        assert!(s.is_all());
        assert!(s.matches(&key("1.1.1.1", 1, "2.2.2.2", 2)));
    }

    #[test]
    fn bad_values_are_named() {
        let e = Selection::parse(&["10.0.0.300".into()], &[], &[]).expect_err("bad host");
        assert!(e.contains("10.0.0.300"), "{e}");
        let e = Selection::parse(&[], &["10.0.0.0/33".into()], &[]).expect_err("bad len");
        assert!(e.contains("10.0.0.0/33"), "{e}");
        let e = Selection::parse(&[], &["10.0.0.1/8".into()], &[]).expect_err("host bits");
        assert!(e.contains("10.0.0.0/8"), "{e}");
    }

    #[test]
    fn bracketed_ipv6_host() {
        let s = Selection::parse(&["[2001:db8::1]".into()], &[], &[]).expect("v6 host");
        assert!(s.matches(&key("2001:db8::1", 5, "2001:db8::2", 6)));
    }
}
