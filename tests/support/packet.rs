//! Packet builders (link, IP, TCP/UDP) for generated fixtures.
