//! The fixture generator and the shared test drivers: builds packets and
//! writes pcap/pcapng files from a description (`packet`, `pcapfile`),
//! drives decoders chunk by chunk (`decode`) or whole captures through the
//! stages (`stages`), matches events with truth files (`truth`), and checks
//! generated captures and the binary's output against checked-in golden
//! files (`golden`). For tests and benches; not part of the library.
#![allow(dead_code)]

pub mod decode;
pub mod golden;
pub mod oscar;
pub mod packet;
pub mod pcapfile;
pub mod stages;
pub mod truth;
pub mod ymsg;
