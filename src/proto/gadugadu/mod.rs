//! Gadu-Gadu: the content probe and the wiring into the proto framework.
//! The packet parser (GG 6/8 and the GG 10.5/11 protobuf dialect) lives in
//! `parser.rs`, session state and events in `session.rs`. Nothing here
//! buffers bytes or reads another flow's state.

pub mod parser;
pub mod session;

use crate::event::Protocol;
use crate::proto::{Decoder, ProbeStart, Role, Session, Verdict, PROBE_LIMIT};

use parser::{ty, GgFraming, Proto, GG_HEADER_LEN};

pub const DECODER: Decoder = Decoder {
    protocol: Protocol::GaduGadu,
    // IMSpector's Gadu-Gadu plugin listened on 8074 only.
    classic_ports: &[8074],
    usual_ports: &[8074],
    // GG over SSL used 443, shared with every HTTPS flow: no TLS port of its own.
    tls_ports: &[],
    probe,
    session: new_session,
};

fn new_session() -> Box<dyn Session> {
    Box::<session::GgSession>::default()
}

/// Longest login packet a probe waits for.
const LOGIN_MAX: usize = 2048;

/// Does this direction look like Gadu-Gadu? At the stream start: the
/// server's GG_WELCOME (`01 00 00 00 04 00 00 00` + seed) or a client login
/// packet whose uin parses. Mid-stream: three chained packets of one
/// direction's known types (any LE type+length protocol would pass fewer).
pub fn probe(buf: &[u8], start: ProbeStart) -> Verdict {
    match (probe_start(buf), start) {
        (v, ProbeStart::Stream) => v,
        // Mid-stream windows often still start at a packet (a capture that
        // missed only the handshake): the start signatures first.
        (Verdict::Yes(role), ProbeStart::Midstream) => Verdict::Yes(role),
        (_, ProbeStart::Midstream) => probe_midstream(buf),
    }
}

fn probe_start(buf: &[u8]) -> Verdict {
    let Some(h) = buf.get(..GG_HEADER_LEN) else {
        return Verdict::NeedMore;
    };
    let t = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
    if t == ty::WELCOME {
        return if len == 4 {
            Verdict::Yes(Role::Server)
        } else {
            Verdict::No
        };
    }
    let login = matches!(
        t,
        ty::LOGIN
            | ty::LOGIN_EXT
            | ty::LOGIN60
            | ty::LOGIN70
            | ty::LOGIN80BETA
            | ty::LOGIN80
            | ty::LOGIN105
    );
    if !login || !(4..=LOGIN_MAX).contains(&len) {
        return Verdict::No;
    }
    let Some(body) = buf.get(GG_HEADER_LEN..GG_HEADER_LEN + len) else {
        return Verdict::NeedMore;
    };
    let ok = if t == ty::LOGIN105 {
        Proto::new(body)
            .find_bytes(2)
            .and_then(parser::uin_bytes)
            .is_some()
    } else {
        // GG 6-8 logins carry at least uin, a hash and a status.
        len >= 12
    };
    if ok {
        Verdict::Yes(Role::Client)
    } else {
        Verdict::No
    }
}

fn probe_midstream(buf: &[u8]) -> Verdict {
    for (from_client, role) in [(true, Role::Client), (false, Role::Server)] {
        let f = GgFraming { from_client };
        // Try each start offset; require three chained known packets.
        for start in 0..buf.len().min(PROBE_LIMIT) {
            if chain_len(&f, &buf[start..]) >= 3 {
                return Verdict::Yes(role);
            }
        }
    }
    Verdict::NeedMore
}

fn chain_len(f: &GgFraming, mut b: &[u8]) -> usize {
    use crate::proto::oscar::parser::Framing;
    let mut n = 0;
    while let Some(h) = b.get(..GG_HEADER_LEN) {
        let Some(len) = f.body_len(h).filter(|_| f.candidate(h)) else {
            break;
        };
        let Some(rest) = b.get(GG_HEADER_LEN + len..) else {
            break;
        };
        n += 1;
        b = rest;
    }
    n
}
