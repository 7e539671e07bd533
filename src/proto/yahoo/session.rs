use crate::proto::{Emitter, Resync, ResyncCause, Session, Side, Step};
#[derive(Default)]
pub struct YahooSession;
impl Session for YahooSession {
    fn next_unit(&mut self, _: Side, buf: &[u8]) -> Step { Step::Skip(buf.len().max(1)) }
    fn resync(&mut self, _: Side, buf: &[u8], _: ResyncCause) -> Resync { Resync::Skip(buf.len()) }
    fn on_unit(&mut self, _: Side, _: &[u8], _: &mut Emitter<'_>) {}
    fn unit_cap(&self) -> usize { 1 }
    fn encrypted(&self) -> bool { false }
}
