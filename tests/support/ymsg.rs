//! YMSG packet builder (protocols.md §2) for generated Yahoo streams, shared
//! by the Yahoo tests, the hostile tests and the decoder benches.

/// A YMSG version-16 packet: `YMSG`, version, vendor 0, payload length
/// (`len`, else the real one), `service`, `status`, `session`, then the
/// `k C0 80 v C0 80` pairs.
pub fn packet(
    service: u16,
    status: u32,
    session: u32,
    len: Option<u16>,
    pairs: &[(u32, &[u8])],
) -> Vec<u8> {
    let mut payload = Vec::new();
    for (k, v) in pairs {
        payload.extend_from_slice(k.to_string().as_bytes());
        payload.extend_from_slice(&[0xC0, 0x80]);
        payload.extend_from_slice(v);
        payload.extend_from_slice(&[0xC0, 0x80]);
    }
    let mut p = b"YMSG".to_vec();
    p.extend_from_slice(&0x0010u16.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes());
    p.extend_from_slice(&len.unwrap_or(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&service.to_be_bytes());
    p.extend_from_slice(&status.to_be_bytes());
    p.extend_from_slice(&session.to_be_bytes());
    p.extend_from_slice(&payload);
    p
}
