//! OSCAR (AIM and ICQ): content probe and wiring. The FLAP/SNAC parser lives
//! in `parser.rs`, session state and events in `session.rs`, and OFT2 file
//! transfer connections (with carving) in `oft.rs`. Nothing here reads
//! another flow's state: cross-connection identity goes through
//! [`crate::event::IdentityFact`]s.

pub mod parser;
