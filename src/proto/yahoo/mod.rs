//! Yahoo! Messenger (YMSG): placeholder while the decoder is written.
pub mod parser;
pub mod session;
use crate::event::Protocol;
use crate::proto::{Decoder, ProbeStart, Session, Verdict};
pub const DECODER: Decoder = Decoder {
    protocol: Protocol::Yahoo,
    classic_ports: &[5050],
    usual_ports: &[5050],
    probe,
    session: new_session,
};
fn new_session() -> Box<dyn Session> {
    Box::new(session::YahooSession::default())
}
pub fn probe(_buf: &[u8], _start: ProbeStart) -> Verdict {
    Verdict::No
}
