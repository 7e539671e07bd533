//! pcap and pcapng writers for generated fixtures.
