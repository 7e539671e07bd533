//! Yahoo! Messenger (YMSG): the content probe and the wiring into the proto
//! framework. Packet parsing is in `parser.rs`, state and events in
//! `session.rs`. Nothing here buffers bytes or builds events
//! (protocols.md §2, quick detection table).

pub mod parser;
pub mod session;

use crate::event::Protocol;
use crate::proto::{Decoder, ProbeStart, Role, Session, Verdict};

use parser::{service, Boundary, Header, Packet};

pub const DECODER: Decoder = Decoder {
    protocol: Protocol::Yahoo,
    // IMSpector's Yahoo plugin listened on 5050 only.
    classic_ports: &[5050],
    usual_ports: &[5050, 23, 25, 80, 443],
    // YMSG has no implicit-TLS port.
    tls_ports: &[],
    probe,
    session: new_session,
};

fn new_session() -> Box<dyn Session> {
    Box::new(session::YahooSession::default())
}

/// Does this direction look like YMSG? At the stream start the first bytes
/// must be a plausible header; mid-stream the first plausible header counts.
pub fn probe(buf: &[u8], start: ProbeStart) -> Verdict {
    if start == ProbeStart::Stream && matches!(buf.first(), Some(b'<' | b'c' | b'C')) {
        return probe_web(buf);
    }
    let at = match start {
        ProbeStart::Stream => {
            let n = buf.len().min(4);
            if buf[..n] != parser::MAGIC[..n] {
                return Verdict::No;
            }
            match Header::parse(buf) {
                None => return Verdict::NeedMore,
                Some(h) if !h.plausible() => return Verdict::No,
                Some(_) => 0,
            }
        }
        ProbeStart::Midstream => match parser::resync_unit(buf) {
            Boundary::At(i) => i,
            Boundary::NeedMore(_) => return Verdict::NeedMore,
            Boundary::Skip(_) if buf.len() >= crate::proto::PROBE_LIMIT => return Verdict::No,
            Boundary::Skip(_) => return Verdict::NeedMore,
        },
    };
    Verdict::Yes(role(&buf[at..]))
}

/// The web client's form at the stream start: `<Ymsg Command="…"`, maybe
/// after a `content-length:` block.
fn probe_web(buf: &[u8]) -> Verdict {
    match parser::frame_web(buf) {
        parser::Frame::Invalid => return Verdict::No,
        parser::Frame::NeedMore if buf.len() < 64 => return Verdict::NeedMore,
        _ => {}
    }
    let window = &buf[..buf.len().min(128)];
    match memchr::memmem::find(window, parser::WEB_OPEN) {
        Some(i) if memchr::memmem::find(&window[i..], b" Command=\"").is_some() => {
            Verdict::Yes(Role::Unknown)
        }
        _ => Verdict::No,
    }
}

/// Who wrote a packet, when its service and keys say it.
fn role(buf: &[u8]) -> Role {
    let Some(h) = Header::parse(buf) else {
        return Role::Unknown;
    };
    match h.service {
        service::AUTH | service::AUTH_RESP | service::VERIFY if h.session == 0 => Role::Client,
        service::MESSAGE => match buf.get(..h.total_len()).and_then(Packet::parse) {
            Some(p) if p.get(4).is_some() => Role::Server,
            Some(p) if p.get(1).is_some() => Role::Client,
            _ => Role::Unknown,
        },
        _ => Role::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::parser::tests::packet;
    use super::*;

    #[test]
    fn probes_by_content() {
        let auth = {
            let mut p = packet(service::AUTH, 0, &[(1, b"alice")]);
            p[16..20].copy_from_slice(&[0; 4]);
            p
        };
        assert_eq!(probe(&auth, ProbeStart::Stream), Verdict::Yes(Role::Client));
        let incoming = packet(
            service::MESSAGE,
            1,
            &[(4, b"bob"), (5, b"alice"), (14, b"hi")],
        );
        assert_eq!(
            probe(&incoming, ProbeStart::Stream),
            Verdict::Yes(Role::Server)
        );
        assert_eq!(
            probe(&incoming[..10], ProbeStart::Stream),
            Verdict::NeedMore
        );
        assert_eq!(
            probe(b"GET / HTTP/1.1\r\n", ProbeStart::Stream),
            Verdict::No
        );
        let mut mid = b"tail of something".to_vec();
        mid.extend_from_slice(&incoming);
        assert_eq!(
            probe(&mid, ProbeStart::Midstream),
            Verdict::Yes(Role::Server)
        );
        assert_eq!(probe(&mid, ProbeStart::Stream), Verdict::No);
        assert_eq!(probe(&[0u8; 5000], ProbeStart::Midstream), Verdict::No);
        let web = b"<Ymsg Command=\"6\" Status=\"1\">1^$a^$5^$b^$14^$hi^$</Ymsg>\0";
        assert_eq!(probe(web, ProbeStart::Stream), Verdict::Yes(Role::Unknown));
        assert_eq!(probe(&web[..10], ProbeStart::Stream), Verdict::NeedMore);
        assert_eq!(
            probe(b"<?xml version='1.0'?><stream:stream>", ProbeStart::Stream),
            Verdict::No
        );
        assert_eq!(
            probe(b"content-type: text/html\r\n\r\n", ProbeStart::Stream),
            Verdict::No
        );
    }
}
