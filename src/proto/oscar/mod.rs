//! OSCAR (AIM and ICQ): the content probe and the wiring into the proto
//! framework. A flow is either a FLAP connection (login, BOS, services;
//! parsed by `parser.rs`, events from `session.rs`) or an OFT2 file-transfer
//! connection (`oft.rs`, with carving). Nothing here buffers bytes or builds
//! events, and nothing reads another flow's state: cross-connection identity
//! goes through [`crate::event::IdentityFact`]s.

pub mod oft;
pub mod parser;
pub mod session;

use crate::event::{FlowId, Protocol};
use crate::proto::{
    Decoder, Emitter, ProbeStart, ProtoConfig, Resync, ResyncCause, Role, Session, Side, Step,
    Verdict, PROBE_LIMIT,
};

use parser::{FlapFraming, Framing, Snac, FLAP_HEADER_LEN};

pub const DECODER: Decoder = Decoder {
    protocol: Protocol::Oscar,
    // IMSpector's ICQ-AIM plugin listened on 5190 only.
    classic_ports: &[5190],
    usual_ports: &[5190, 5191, 5193],
    // OSCAR-over-SSL ran on 443 and 5190: neither port says a TLS flow is OSCAR.
    tls_ports: &[],
    probe,
    session: new_session,
};

fn new_session() -> Box<dyn Session> {
    Box::<OscarSession>::default()
}

/// Does this direction look like OSCAR (FLAP or OFT2)? At the stream start a
/// FLAP connection opens with a channel-1 hello (`2A 01 ss ss LL LL 00 00 00
/// 01`; the server's has length 4, the client's carries TLVs); mid-stream we
/// need two FLAP headers that chain (sequence + 1).
pub fn probe(buf: &[u8], start: ProbeStart) -> Verdict {
    let mid = start == ProbeStart::Midstream;
    let oft = oft::probe(buf, mid);
    if oft == Some(true) {
        return Verdict::Yes(Role::Unknown);
    }
    let flap = if mid {
        probe_flap_midstream(buf)
    } else {
        probe_flap_start(buf)
    };
    match (flap, oft) {
        (Verdict::No, Some(false)) => Verdict::No,
        (Verdict::No, None) | (Verdict::NeedMore, _) => {
            if buf.len() >= PROBE_LIMIT {
                Verdict::No
            } else {
                Verdict::NeedMore
            }
        }
        (yes, _) => yes,
    }
}

fn probe_flap_start(buf: &[u8]) -> Verdict {
    if buf.is_empty() {
        return Verdict::NeedMore;
    }
    if buf[0] != 0x2A {
        return Verdict::No;
    }
    if buf.len() < FLAP_HEADER_LEN + 4 {
        return Verdict::NeedMore;
    }
    let Some(len) = FlapFraming::ANY.body_len(&buf[..FLAP_HEADER_LEN]) else {
        return Verdict::No;
    };
    if buf[1] != 1 || buf[6..10] != [0, 0, 0, 1] {
        return Verdict::No;
    }
    if len == 4 {
        Verdict::Yes(Role::Server)
    } else {
        Verdict::Yes(Role::Client)
    }
}

fn probe_flap_midstream(buf: &[u8]) -> Verdict {
    let h = FLAP_HEADER_LEN;
    let mut i = 0;
    while let Some(off) = memchr::memchr(0x2A, &buf[i..]) {
        let at = i + off;
        let Some(hdr) = buf.get(at..at + h) else {
            return Verdict::NeedMore;
        };
        if let Some(len) = FlapFraming::ANY.body_len(hdr) {
            let next = at + h + len;
            match buf.get(next..next + h) {
                Some(nxt)
                    if FlapFraming::ANY.body_len(nxt).is_some()
                        && FlapFraming::ANY.chains(hdr, nxt) =>
                {
                    return Verdict::Yes(chain_role(&buf[at..]));
                }
                None if next + h > buf.len() && len <= PROBE_LIMIT => return Verdict::NeedMore,
                _ => {}
            }
        }
        i = at + 1;
    }
    Verdict::NeedMore
}

/// The first role any FLAP of a chain reveals.
fn chain_role(mut buf: &[u8]) -> Role {
    while let parser::UnitLen::Complete(n) = parser::unit_len(&FlapFraming::ANY, buf) {
        let role = role_of(&buf[..n]);
        if role != Role::Unknown {
            return role;
        }
        buf = &buf[n..];
    }
    Role::Unknown
}

/// Which side wrote this FLAP, when the SNAC says so.
fn role_of(unit: &[u8]) -> Role {
    let Some(flap) = parser::Flap::parse(unit) else {
        return Role::Unknown;
    };
    if flap.channel != 2 {
        return Role::Unknown;
    }
    match Snac::parse(flap.data).map(|s| (s.family, s.subtype)) {
        Some((4, 6)) | Some((0x17, 2)) | Some((0x17, 6)) => Role::Client,
        Some((4, 7)) | Some((1, 0x0F)) | Some((0x17, 3)) => Role::Server,
        _ => Role::Unknown,
    }
}

/// One OSCAR flow: FLAP or OFT2, decided by its first bytes.
#[derive(Default)]
pub struct OscarSession {
    config: Option<(ProtoConfig, FlowId)>,
    mode: Mode,
}

#[derive(Default)]
enum Mode {
    #[default]
    Undecided,
    Flap(session::FlapSession),
    Oft(Box<oft::OftSession>),
}

impl OscarSession {
    /// Pick FLAP or OFT2 once enough bytes are there to tell.
    fn decide(&mut self, buf: &[u8]) {
        if !matches!(self.mode, Mode::Undecided) {
            return;
        }
        if buf.first() != Some(&0x2A) && buf.len() < 6 {
            return;
        }
        let oft = oft::is_proxy_frame(buf) || oft::probe(buf, true) == Some(true);
        self.mode = if buf.first() != Some(&0x2A) && oft {
            let mut s = oft::OftSession::default();
            if let Some((c, f)) = &self.config {
                s.configure(c, *f);
            }
            Mode::Oft(Box::new(s))
        } else {
            Mode::Flap(session::FlapSession::default())
        };
    }
}

impl Session for OscarSession {
    fn next_unit(&mut self, side: Side, buf: &[u8]) -> Step {
        self.decide(buf);
        match &mut self.mode {
            Mode::Flap(s) => s.next_unit(side, buf),
            Mode::Oft(s) => s.next_unit(side, buf),
            Mode::Undecided => Step::NeedMore,
        }
    }

    fn resync(&mut self, side: Side, buf: &[u8], cause: ResyncCause) -> Resync {
        self.decide(buf);
        match &mut self.mode {
            Mode::Flap(s) => s.resync(side, buf, cause),
            Mode::Oft(s) => s.resync(side, buf, cause),
            Mode::Undecided => Resync::Skip(0),
        }
    }

    fn on_unit(&mut self, side: Side, unit: &[u8], out: &mut Emitter<'_>) {
        match &mut self.mode {
            Mode::Flap(s) => s.on_unit(side, unit, out),
            Mode::Oft(s) => s.on_unit(side, unit, out),
            Mode::Undecided => {}
        }
    }

    fn unit_cap(&self) -> usize {
        match &self.mode {
            Mode::Oft(s) => s.unit_cap(),
            _ => parser::hunt_cap::<FlapFraming>(),
        }
    }

    fn encrypted(&self) -> bool {
        false
    }

    fn configure(&mut self, config: &ProtoConfig, flow: FlowId) {
        self.config = Some((config.clone(), flow));
    }

    fn on_close(&mut self, out: &mut Emitter<'_>) {
        if let Mode::Oft(s) = &mut self.mode {
            s.on_close(out);
        }
    }
}
