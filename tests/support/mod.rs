//! The fixture generator: builds packets and writes pcap/pcapng files from a
//! description, for tests and benches. Not part of the library.
#![allow(dead_code)]

pub mod packet;
pub mod pcapfile;
