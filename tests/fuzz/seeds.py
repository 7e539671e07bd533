#!/usr/bin/env python3
"""Seed the fuzz corpora from the fixtures, in each target's input format
(see tests/fuzz/drive.rs): whole captures for `capture`, frames for `net`,
TCP conversations as scripted parts for each `proto_*` target, and the
IMSpector example files for `policy`. Usage: seeds.py REPO_ROOT CORPUS_DIR.
Writes only files that are missing; never touches the fixtures."""

import hashlib
import os
import struct
import sys

PROTO_DIRS = {
    "irc": "proto_irc",
    "xmpp": "proto_xmpp",
    "oscar": "proto_oscar",
    "gadugadu": "proto_gadugadu",
    "msn": "proto_msn",
    "yahoo": "proto_yahoo",
}


def put(corpus, target, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "seed-" + hashlib.sha1(data).hexdigest()[:16])
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)


def pcap_frames(data):
    """(link type, frames) of a classic pcap, or None."""
    if len(data) < 24:
        return None
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        return None
    link = struct.unpack(e + "I", data[20:24])[0]
    frames, off = [], 24
    while off + 16 <= len(data):
        caplen = struct.unpack(e + "I", data[off + 8:off + 12])[0]
        off += 16
        if off + caplen > len(data):
            break
        frames.append(data[off:off + caplen])
        off += caplen
    return link, frames


def tcp_payloads(frame):
    """(src port, dst port, flags, payload) of an Ethernet/IPv4/TCP frame."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    if ip[0] >> 4 != 4 or ip[9] != 6:
        return None
    ihl = (ip[0] & 15) * 4
    total = struct.unpack(">H", ip[2:4])[0]
    tcp = ip[ihl:total]
    if len(tcp) < 20:
        return None
    sport, dport = struct.unpack(">HH", tcp[:4])
    off = (tcp[12] >> 4) * 4
    return sport, dport, tcp[13], tcp[off:]


def script(frames):
    """The first TCP flow's payloads as a proto script: options 0, seed 7,
    then parts of at most 255 bytes (head: side bit, data)."""
    out = bytearray([0, 7])
    client = None
    flow = None
    for f in frames:
        p = tcp_payloads(f)
        if p is None:
            continue
        sport, dport, flags, payload = p
        key = tuple(sorted((sport, dport)))
        if flow is None:
            flow = key
        if key != flow:
            continue
        if client is None and flags & 0x12 == 0x02:
            client = sport
        if client is None:
            client = max(sport, dport) if payload else None
        if not payload:
            continue
        side = 0 if sport == client else 1
        for i in range(0, len(payload), 255):
            piece = payload[i:i + 255]
            out += bytes([side << 0, len(piece)]) + piece
    return bytes(out)


def main():
    root, corpus = sys.argv[1], sys.argv[2]
    fixtures = os.path.join(root, "fixtures")
    for dirpath, _, files in os.walk(fixtures):
        for name in sorted(files):
            if not name.endswith((".pcap", ".pcapng", ".gz")):
                continue
            path = os.path.join(dirpath, name)
            data = open(path, "rb").read()
            if len(data) <= 64 * 1024:
                put(corpus, "capture", data)
            parsed = pcap_frames(data)
            if parsed is None:
                continue
            link, frames = parsed
            if link == 1:
                net = bytearray([0])
                for f in frames[:64]:
                    net += bytes([0, 1]) + struct.pack("<H", len(f)) + f
                put(corpus, "net", bytes(net))
            proto = os.path.basename(dirpath)
            if proto in PROTO_DIRS and link == 1:
                put(corpus, PROTO_DIRS[proto], script(frames))
    examples = os.path.join(fixtures, "imspector-examples")
    for which, name in ((0, "badwords.txt"), (1, "acl.txt")):
        path = os.path.join(examples, name)
        if os.path.exists(path):
            put(corpus, "policy", bytes([which]) + open(path, "rb").read())
    # A handful of segments on one flow, for the reassembler.
    tcp = bytearray([0x15])
    for i, (b0, flags, seq, n) in enumerate(
        [(0, 0x02, 1000, 0), (4, 0x12, 5000, 0), (8, 0x18, 1, 40), (8, 0x18, 100, 40),
         (8 | 0x20, 0x18, 0, 10), (12, 0x11, 0, 0), (0x10 | 8, 0x18, 0, 30), (0, 0x04, 0, 0)]):
        tcp += bytes([b0, flags]) + struct.pack("<II", seq, 0) + bytes([n, i % 3])
    put(corpus, "tcp", bytes(tcp))


if __name__ == "__main__":
    main()
