//! XMPP / Jabber (RFC 6120/6121): the content probe and the wiring into the
//! proto framework. The stanza splitter and reader are in `parser.rs` (with
//! a fast reader for the common stanza shape in `fast.rs`), state
//! and events in `session.rs`. Nothing here buffers bytes or builds events.

pub mod fast;
pub mod parser;
pub mod session;

use crate::event::Protocol;
use crate::proto::{Decoder, ProbeStart, Role, Session, Verdict};

pub const DECODER: Decoder = Decoder {
    protocol: Protocol::Xmpp,
    // IMSpector's Jabber plugin listened on 5222 (5223 is TLS from the first byte).
    classic_ports: &[5222],
    usual_ports: &[5222, 5223, 5269, 5280],
    tls_ports: &[5223],
    probe,
    session: new_session,
};

fn new_session() -> Box<dyn Session> {
    Box::new(session::XmppSession::default())
}

const STREAMS_NS: &[u8] = b"http://etherx.jabber.org/streams";

/// Does this direction look like an XMPP stream? From the start: an optional
/// XML declaration, then a `stream` header in the streams namespace.
/// Mid-stream: a `<message`, `<presence` or `<iq` start tag with stanza
/// attributes, or a stream header.
pub fn probe(buf: &[u8], start: ProbeStart) -> Verdict {
    let ws = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let mut rest = &buf[ws..];
    if rest.starts_with(b"<?") {
        match memchr::memmem::find(rest, b"?>") {
            Some(i) => rest = &rest[i + 2..],
            None if rest.len() < 256 => return Verdict::NeedMore,
            None => return Verdict::No,
        }
        let ws = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
        rest = &rest[ws..];
    }
    if rest.is_empty() {
        return Verdict::NeedMore;
    }
    if let Some(v) = stream_header(rest) {
        return v;
    }
    if start == ProbeStart::Stream {
        return Verdict::No;
    }
    midstream_stanza(buf)
}

/// `Some` when `b` starts with (a prefix of) a stream header.
fn stream_header(b: &[u8]) -> Option<Verdict> {
    const OPEN: &[u8] = b"<stream:stream";
    let n = b.len().min(OPEN.len());
    if b[..n] != OPEN[..n] {
        return None;
    }
    if b.len() < OPEN.len() {
        return Some(Verdict::NeedMore);
    }
    let Some(end) = memchr::memchr(b'>', b) else {
        return Some(if b.len() < 2048 {
            Verdict::NeedMore
        } else {
            Verdict::No
        });
    };
    let tag = &b[..end];
    if memchr::memmem::find(tag, STREAMS_NS).is_none() {
        return Some(Verdict::No);
    }
    // The server's header carries the stream id; the client's never does.
    let role = if has_attr(tag, b"id") {
        Role::Server
    } else {
        Role::Client
    };
    Some(Verdict::Yes(role))
}

fn has_attr(tag: &[u8], name: &[u8]) -> bool {
    tag.windows(name.len() + 2).any(|w| {
        w[0].is_ascii_whitespace() && &w[1..=name.len()] == name && w[name.len() + 1] == b'='
    })
}

/// A stanza start tag somewhere in a window picked up mid-stream.
fn midstream_stanza(buf: &[u8]) -> Verdict {
    let mut pos = 0;
    while let Some(at) = parser::find_stanza_start(&buf[pos..]) {
        let tag = &buf[pos + at..];
        let Some(end) = memchr::memchr(b'>', tag) else {
            return Verdict::NeedMore;
        };
        let head = &tag[..end];
        if [&b"to"[..], b"from", b"id", b"type", b"xmlns"]
            .iter()
            .any(|a| has_attr(head, a))
        {
            if let Some(v) = stream_header(tag) {
                return v;
            }
            return Verdict::Yes(Role::Unknown);
        }
        pos += at + 1;
    }
    Verdict::NeedMore
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_headers() {
        let c = b"<?xml version='1.0'?><stream:stream to='x' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
        assert_eq!(probe(c, ProbeStart::Stream), Verdict::Yes(Role::Client));
        let s = b"<stream:stream from='x' id='abc' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
        assert_eq!(probe(s, ProbeStart::Stream), Verdict::Yes(Role::Server));
        for cut in 0..c.len() {
            assert_eq!(
                probe(&c[..cut], ProbeStart::Stream),
                Verdict::NeedMore,
                "cut {cut}"
            );
        }
        assert_eq!(
            probe(
                b"<stream:stream xmlns:stream='urn:other'>",
                ProbeStart::Stream
            ),
            Verdict::No
        );
    }

    #[test]
    fn other_xml_and_text_are_not_xmpp() {
        assert_eq!(probe(b"<html><body>", ProbeStart::Stream), Verdict::No);
        assert_eq!(
            probe(b"GET / HTTP/1.1\r\n", ProbeStart::Stream),
            Verdict::No
        );
        assert_eq!(
            probe(b"<html><body>", ProbeStart::Midstream),
            Verdict::NeedMore
        );
    }

    #[test]
    fn midstream_stanzas() {
        assert_eq!(
            probe(
                b"ody></message><message to='a@b' type='chat'>",
                ProbeStart::Midstream
            ),
            Verdict::Yes(Role::Unknown)
        );
        assert_eq!(probe(b"</iq><iq", ProbeStart::Midstream), Verdict::NeedMore);
        assert_eq!(
            probe(b"<message to='a@b' type='chat'>", ProbeStart::Stream),
            Verdict::No
        );
    }
}
