#![no_main]
//! The fast XMPP stanza reader against its reference: on any input, read as
//! a unit and as a stream, it must agree with the quick-xml reader and the
//! splitter (`imscan::proto::xmpp::fast::disagreement` says how it does not).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(d) = imscan::proto::xmpp::fast::disagreement(data) {
        panic!("{d}");
    }
});
