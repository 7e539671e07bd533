//! Gadu-Gadu: content probe and wiring. The packet parser (GG 6/8 and the
//! GG 10.5/11 protobuf dialect) lives in `parser.rs`, session state and
//! events in `session.rs`. Nothing here reads another flow's state.

pub mod parser;
