//! imscan: a passive forensic analyzer for instant-messaging traffic.
//!
//! Data flows one way through the stages, each in its own module:
//! `capture` (frames) → `net` (link, IP, fragments → segments) → `engine`
//! (sharding, parallelism, merge) → `tcp` (reassembly → chunks) → `proto`
//! (detection + decoders) → `event` (one model) → `policy` (flags) → `sink`
//! (writers). See `architecture.md` in the project documentation.
//!
//! Unsafe code is denied everywhere; the one module that needs it (the memory
//! map of input files in `capture::source`) says why.
#![deny(unsafe_code)]

pub mod capture;
pub mod cli;
pub mod engine;
pub mod event;
pub mod net;
pub mod policy;
pub mod proto;
pub mod run;
pub mod sink;
pub mod tcp;
pub mod time;
