//! OSCAR byte builders (FLAP, SNAC, TLV; protocols.md §3) for generated
//! OSCAR streams, shared by the OSCAR tests and the decoder bench.

/// A FLAP frame: `*`, channel, sequence, length, data.
pub fn flap(channel: u8, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut v = vec![0x2A, channel];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// A SNAC: family, subtype, flags 0, request id 7, data.
pub fn snac(family: u16, subtype: u16, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&family.to_be_bytes());
    v.extend_from_slice(&subtype.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0, 0, 7]);
    v.extend_from_slice(data);
    v
}

/// A TLV: type, length, value.
pub fn tlv(t: u16, v: &[u8]) -> Vec<u8> {
    let mut o = t.to_be_bytes().to_vec();
    o.extend_from_slice(&(v.len() as u16).to_be_bytes());
    o.extend_from_slice(v);
    o
}
