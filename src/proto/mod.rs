//! Stage 5, proto: decides what a stream is by its content (ports are only a
//! hint) and feeds its chunks to that protocol's session, which turns them
//! into [`Event`]s. Each protocol lives in `proto/<name>/` with a pure
//! `parser.rs` (bytes → protocol units, no I/O, no clock) and a `session.rs`
//! (state across units → events).
//!
//! The engine sees only [`FlowDecoder`]: one per TCP flow, a
//! [`StreamConsumer`] whose events it drains after each batch.

pub mod gadugadu;
pub mod oscar;

use std::sync::Arc;

use crate::capture::{FrameRef, SourceId};
use crate::event::{Event, FlowId, IdentityFact, Protocol};
use crate::net::{Dir, FlowKey};
use crate::tcp::{Chunk, ChunkInfo, CloseReason, StreamConsumer};
use crate::time::Timestamp;

/// Decoding options shared by every flow.
#[derive(Clone, Debug)]
pub struct ProtoConfig {
    /// Protocols to decode (all by default).
    pub protocols: Vec<Protocol>,
    /// Classic port-based detection instead of content probes.
    pub ports_only: bool,
    /// Keep the original bytes of every text in `Event::raw`.
    pub raw: bool,
}

impl Default for ProtoConfig {
    fn default() -> Self {
        ProtoConfig {
            protocols: Protocol::ALL.to_vec(),
            ports_only: false,
            raw: false,
        }
    }
}

/// What the engine knows about a flow when it creates its decoder.
#[derive(Clone, Copy, Debug)]
pub struct FlowStart {
    pub key: FlowKey,
    pub flow: FlowId,
    pub source: SourceId,
    /// Direction of client → server bytes when a SYN was seen.
    pub client_dir: Option<Dir>,
}

/// Detection and decoding of one TCP flow.
pub struct FlowDecoder {
    #[allow(dead_code)]
    config: Arc<ProtoConfig>,
    #[allow(dead_code)]
    start: FlowStart,
    events: Vec<Event>,
    facts: Vec<IdentityFact>,
}

impl FlowDecoder {
    pub fn new(config: Arc<ProtoConfig>, start: FlowStart) -> Self {
        FlowDecoder {
            config,
            start,
            events: Vec::new(),
            facts: Vec::new(),
        }
    }

    /// False once the flow was found not to be IM: the reassembler may then
    /// stop buffering its bytes.
    pub fn wants_data(&self) -> bool {
        true
    }

    /// Move the events and identity facts produced so far into `events`/`facts`.
    pub fn drain(&mut self, events: &mut Vec<Event>, facts: &mut Vec<IdentityFact>) {
        events.append(&mut self.events);
        facts.append(&mut self.facts);
    }
}

impl StreamConsumer for FlowDecoder {
    fn on_chunk(&mut self, _chunk: Chunk<'_>, _info: &ChunkInfo) {}

    fn on_close(&mut self, _reason: CloseReason, _ts: Timestamp, _frame: FrameRef) {}
}
