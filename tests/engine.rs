//! The whole pipeline from the outside, through the binary: determinism at
//! any thread count, `--streams` export, exit codes, `--stats` counters,
//! selection, inputs from gzip and standard input, and the manifest.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};
use support::packet::{Conversation, Side};
use support::pcapfile::PcapFile;

fn imscan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imscan"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run imscan")
}

fn fixture(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Write the conversations' frames, interleaved in time order, as a pcap.
fn write_capture(path: &Path, conversations: &[Conversation]) {
    let mut frames: Vec<_> = conversations.iter().flat_map(|c| c.frames()).collect();
    frames.sort_by_key(|(ts, _, _)| *ts);
    let link = frames.first().map_or(1, |f| f.2 .0);
    let mut file = PcapFile::new(false, true, link, 65_535);
    for (ts, data, _) in &frames {
        file.record(*ts, data, data.len() as u32);
    }
    file.write_to(path).unwrap();
}

/// Client and server bytes of a conversation, as sent.
struct Sent {
    client: Vec<u8>,
    server: Vec<u8>,
}

/// `n` IRC-like conversations with interleaved timestamps; returns the bytes
/// each side sent.
fn many_conversations(n: usize) -> (Vec<Conversation>, Vec<Sent>) {
    let mut convs = Vec::new();
    let mut sent = Vec::new();
    for i in 0..n {
        let client = addr(&format!("10.1.{}.{}:{}", i / 200, i % 200 + 1, 40_000 + i));
        let server = addr(&format!("192.0.2.{}:6667", i % 3 + 1));
        let mut c = Conversation::new(client, server).start_at(
            imscan::time::Timestamp::from_secs_nanos(1_209_643_200, (i as u32) * 1_000),
            997_000,
        );
        let hello = format!("NICK user{i}\r\nUSER u{i} 0 * :User {i}\r\n");
        let welcome = format!(":irc.example 001 user{i} :Welcome\r\n");
        let chat = format!("PRIVMSG #room{} :message {i} from the client\r\n", i % 4);
        c.handshake()
            .send(Side::Client, hello.as_bytes(), 1460)
            .send(Side::Server, welcome.as_bytes(), 1460)
            .send_split(Side::Client, chat.as_bytes(), &[7, 11])
            .close();
        sent.push(Sent {
            client: [hello.as_bytes(), chat.as_bytes()].concat(),
            server: welcome.into_bytes(),
        });
        convs.push(c);
    }
    (convs, sent)
}

/// Every file under a directory: relative path and contents, sorted.
type Tree = Vec<(PathBuf, Vec<u8>)>;

fn read_tree(dir: &Path) -> Tree {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(read_tree(&p));
        } else {
            out.push((
                p.strip_prefix(dir).unwrap().to_path_buf(),
                std::fs::read(&p).unwrap(),
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn output_is_identical_at_any_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let cap = tmp.path().join("many.pcap");
    let (convs, _) = many_conversations(300);
    write_capture(&cap, &convs);
    let cap = cap.to_str().unwrap();
    let mut reference: Option<(Vec<u8>, Tree)> = None;
    for threads in ["1", "2", "8"] {
        let streams = tmp.path().join(format!("streams-{threads}"));
        std::fs::create_dir(&streams).unwrap();
        let out = imscan(&[
            "-F",
            "jsonl",
            "--threads",
            threads,
            "--streams",
            streams.to_str().unwrap(),
            cap,
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tree = read_tree(&streams);
        assert_eq!(tree.len(), 2 * 300 + 1, "two files per flow and the index");
        match &reference {
            None => reference = Some((out.stdout, tree)),
            Some((stdout, first_tree)) => {
                assert!(
                    stdout == &out.stdout,
                    "events differ at --threads {threads}"
                );
                assert!(first_tree == &tree, "streams differ at --threads {threads}");
            }
        }
    }
}

#[test]
fn streams_reproduce_the_payloads_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let cap = tmp.path().join("few.pcap");
    let (convs, sent) = many_conversations(5);
    write_capture(&cap, &convs);
    let dir = tmp.path().join("streams");
    std::fs::create_dir(&dir).unwrap();
    let out = imscan(&["--streams", dir.to_str().unwrap(), cap.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (c, s) in convs.iter().zip(&sent) {
        let c2s = dir.join(format!(
            "{}.{}-{}.{}",
            c.client.ip(),
            c.client.port(),
            c.server.ip(),
            c.server.port()
        ));
        let s2c = dir.join(format!(
            "{}.{}-{}.{}",
            c.server.ip(),
            c.server.port(),
            c.client.ip(),
            c.client.port()
        ));
        assert_eq!(std::fs::read(&c2s).unwrap(), s.client, "{}", c2s.display());
        assert_eq!(std::fs::read(&s2c).unwrap(), s.server, "{}", s2c.display());
    }
    let index = std::fs::read_to_string(dir.join("streams.jsonl")).unwrap();
    assert_eq!(index.lines().count(), 5);
    for line in index.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["flow"].is_string(), "{line}");
    }
}

#[test]
fn a_lost_segment_is_a_listed_hole_not_filled_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let cap = tmp.path().join("lost.pcap");
    let client = addr("10.0.0.5:40000");
    let server = addr("10.0.0.1:6667");
    let mut c = Conversation::new(client, server);
    c.handshake()
        .send_split(Side::Client, b"AAAAABBBBBCCCCC", &[5, 5, 5])
        .close();
    // Segments: SYN, SYN/ACK, ACK, then the three data segments: lose "BBBBB".
    c.drop_segment(4);
    write_capture(&cap, &[c]);
    let dir = tmp.path().join("streams");
    std::fs::create_dir(&dir).unwrap();
    let out = imscan(&["--streams", dir.to_str().unwrap(), cap.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "lost bytes are damage");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("5 stream bytes missing"), "{stderr}");
    let data = std::fs::read(dir.join("10.0.0.5.40000-10.0.0.1.6667")).unwrap();
    assert_eq!(data, b"AAAAACCCCC");
    let index = std::fs::read_to_string(dir.join("streams.jsonl")).unwrap();
    assert!(
        index.contains(r#""gaps":[{"stream_offset":5,"file_offset":5,"len":5}]"#),
        "{index}"
    );
}

#[test]
fn exit_codes() {
    // Clean input: 0.
    assert_eq!(
        imscan(&[&fixture("real/msnms.pcap")]).status.code(),
        Some(0)
    );
    // Not a capture: 2, with one line naming the file.
    let out = imscan(&[&fixture("capture/damaged/bad-magic.pcap")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad-magic.pcap") && err.lines().count() == 1,
        "{err}"
    );
    // Missing file: 2.
    assert_eq!(imscan(&["/nonexistent/x.pcap"]).status.code(), Some(2));
    // No input at all, or a bad flag: 2.
    assert_eq!(imscan(&[]).status.code(), Some(2));
    assert_eq!(imscan(&["--no-such-flag"]).status.code(), Some(2));
    assert_eq!(
        imscan(&["--net", "10.0.0.0/33", "x.pcap"]).status.code(),
        Some(2)
    );
    // Damaged but readable: 1, with the damage named.
    for name in [
        "truncated.pcap",
        "corrupt-middle.pcap",
        "record-4gb.pcap",
        "block-4gb.pcapng",
    ] {
        let out = imscan(&[&fixture(&format!("capture/damaged/{name}"))]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(name) && err.contains("byte"), "{name}: {err}");
    }
}

/// Frame counts per file as tshark counts them (the `.tshark.tsv` next to
/// each fixture has one line per frame).
#[test]
fn stats_count_every_frame_of_the_fixtures() {
    for rel in [
        "real/msnms.pcap",
        "real/ndpi-jabber.pcap",
        "real/irc-inspircd-port7000-ircv3.pcapng",
        "capture/interfaces.pcapng",
        "capture/sections.pcapng",
        "capture/le-usec.pcap.gz",
        "capture/be-nsec.pcap",
    ] {
        let path = fixture(rel);
        let tsv = path.trim_end_matches(".gz").to_string() + ".tshark.tsv";
        let expected = std::fs::read_to_string(&tsv)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count() as u64;
        let out = imscan(&["--stats", "-q", &path]);
        // ndpi-jabber has lost segments and le-usec a snaplen-cut frame: 1.
        let damaged = rel.contains("jabber") || rel.contains("le-usec");
        assert_eq!(out.status.code(), Some(i32::from(damaged)), "{rel}");
        let stats: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
        let c = &stats["counters"];
        assert_eq!(c["capture"]["frames"], expected, "{rel}");
        assert_eq!(c["net"]["frames"], expected, "{rel}");
        let tcp = c["net"]["tcp_segments"].as_u64().unwrap();
        assert_eq!(c["tcp"]["segments"].as_u64().unwrap(), tcp, "{rel}");
    }
}

#[test]
fn selection_narrows_the_flows() {
    let tmp = tempfile::tempdir().unwrap();
    let cap = tmp.path().join("sel.pcap");
    let (convs, _) = many_conversations(6);
    write_capture(&cap, &convs);
    let cap = cap.to_str().unwrap();
    let flows = |args: &[&str]| -> u64 {
        let mut all = vec!["--stats", "-q"];
        all.extend_from_slice(args);
        all.push(cap);
        let out = imscan(&all);
        assert_eq!(out.status.code(), Some(0));
        let v: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
        v["counters"]["tcp"]["flows_created"].as_u64().unwrap()
    };
    assert_eq!(flows(&[]), 6);
    // Servers are 192.0.2.1..3, two conversations each.
    assert_eq!(flows(&["--host", "192.0.2.1"]), 2);
    assert_eq!(flows(&["--host", "192.0.2.1", "--host", "192.0.2.2"]), 4);
    assert_eq!(flows(&["--net", "192.0.2.0/30"]), 6);
    assert_eq!(flows(&["--port", "40000"]), 1);
    // Different kinds are and-ed: host 192.0.2.1 serves clients 0 and 3.
    assert_eq!(flows(&["--host", "192.0.2.1", "--port", "40003"]), 1);
    assert_eq!(flows(&["--host", "192.0.2.2", "--port", "40003"]), 0);
}

#[test]
fn gzip_and_standard_input_read_like_the_plain_file() {
    let plain = fixture("capture/le-usec.pcap");
    let stats = |out: Output| -> serde_json::Value {
        // The fixture holds one frame cut by its snaplen: damage, exit 1.
        assert_eq!(out.status.code(), Some(1));
        let v: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
        v["counters"]["net"].clone()
    };
    let reference = stats(imscan(&["--stats", "-q", &plain]));
    let gz = stats(imscan(&["--stats", "-q", &(plain.clone() + ".gz")]));
    assert_eq!(reference, gz);
    let piped = Command::new(env!("CARGO_BIN_EXE_imscan"))
        .args(["--stats", "-q", "-"])
        .stdin(std::fs::File::open(&plain).unwrap())
        .output()
        .unwrap();
    assert_eq!(reference, stats(piped));
}

#[test]
fn manifest_hashes_every_input_like_sha256sum() {
    let tmp = tempfile::tempdir().unwrap();
    let out_file = tmp.path().join("events.jsonl");
    let a = fixture("real/msnms.pcap");
    let b = fixture("capture/interfaces.pcapng");
    let out = imscan(&["-F", "jsonl", "-o", out_file.to_str().unwrap(), &a, &b]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("imscan-manifest.json")).unwrap())
            .unwrap();
    let inputs = manifest["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 2);
    for (input, path) in inputs.iter().zip([&a, &b]) {
        let bytes = std::fs::read(path).unwrap();
        let sha = hex::encode(Sha256::digest(&bytes));
        assert_eq!(input["path"], path.as_str());
        assert_eq!(input["sha256"], sha.as_str());
        assert_eq!(input["size"], bytes.len() as u64);
    }
    assert_eq!(manifest["format"], "jsonl");
}

/// Every capture under `fixtures/`, damaged ones included.
fn fixture_captures() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.ends_with(".pcap") || n.ends_with(".pcapng") || n.ends_with(".gz")
            }) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
        &mut out,
    );
    out.sort();
    out
}

#[test]
fn every_fixture_decodes_identically_at_1_2_and_8_threads() {
    let captures = fixture_captures();
    assert!(captures.len() > 20, "fixtures found: {}", captures.len());
    for cap in captures {
        let cap = cap.to_str().unwrap();
        let run = |threads: &str| imscan(&["-F", "jsonl", "-q", "--threads", threads, cap]);
        let one = run("1");
        for threads in ["2", "8"] {
            let other = run(threads);
            assert_eq!(one.status.code(), other.status.code(), "{cap}");
            assert!(
                one.stdout == other.stdout,
                "{cap}: events differ at --threads {threads}"
            );
        }
    }
}

#[test]
fn carved_files_are_hashed_in_the_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let carve = tmp.path().join("carved");
    std::fs::create_dir(&carve).unwrap();
    let out_file = tmp.path().join("events.jsonl");
    let out = imscan(&[
        "-F",
        "jsonl",
        "--carve",
        carve.to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
        &fixture("oscar/oft-transfer-5190.pcap"),
    ]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("imscan-manifest.json")).unwrap())
            .unwrap();
    let carved = manifest["counters"]["proto"]["carved_files"]
        .as_array()
        .unwrap();
    assert_eq!(carved.len(), 1, "{carved:?}");
    let path = carved[0]["path"].as_str().unwrap();
    let bytes = std::fs::read(path).unwrap();
    assert!(Path::new(path).starts_with(&carve), "{path}");
    assert_eq!(
        carved[0]["sha256"],
        hex::encode(Sha256::digest(&bytes)).as_str()
    );
    assert_eq!(carved[0]["bytes_seen"], bytes.len() as u64);
    assert_eq!(carved[0]["complete"], true);
}

#[test]
fn fragment_budgets_are_flags_that_bite_and_are_counted() {
    use support::packet::{fragment, frame, ip_udp, Link};
    let tmp = tempfile::tempdir().unwrap();
    let cap = tmp.path().join("frags.pcap");
    let mut file = PcapFile::new(false, false, 1, 65_535);
    let t0 = imscan::time::Timestamp::from_secs_nanos(1_209_643_200, 0);
    // Five datagrams in 4 fragments each; only the first two fragments of
    // each are captured, so none completes.
    for id in 0..5u32 {
        let dgram = ip_udp(
            addr("10.0.0.1:5000"),
            addr("10.0.0.2:6000"),
            &[id as u8; 400],
        );
        for (i, piece) in fragment(&dgram, 4, id + 1).iter().take(2).enumerate() {
            let f = frame(&Link::Ethernet, piece);
            let ts = t0.saturating_add_nanos(i64::from(id) * 1000 + i as i64);
            file.record(ts, &f, f.len() as u32);
        }
    }
    file.write_to(&cap).unwrap();
    let net = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--stats", "-q"];
        all.extend_from_slice(args);
        all.push(cap.to_str().unwrap());
        let out = imscan(&all);
        assert_eq!(
            out.status.code(),
            Some(1),
            "dropped reassemblies are damage"
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
        v["counters"]["net"].clone()
    };
    let default = net(&[]);
    assert_eq!(default["fragment_evictions"], 0);
    assert_eq!(default["fragment_unfinished"], 5);
    let tight = net(&["--max-reassemblies", "2"]);
    assert_eq!(tight["fragment_evictions"], 3);
    assert_eq!(tight["fragment_unfinished"], 2);
    let few = net(&["--max-fragments", "1"]);
    assert_eq!(few["fragment_drops_too_many"], 5);
}

#[test]
fn unusable_policy_files_stop_the_run_naming_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let acl = tmp.path().join("acl.txt");
    std::fs::write(&acl, "allow all\nallow\tbob\n").unwrap();
    let out = imscan(&["--acl", acl.to_str().unwrap(), &fixture("real/msnms.pcap")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("acl.txt:2:") && err.lines().count() == 1,
        "{err}"
    );
    let missing = imscan(&[
        "--badwords",
        "/nonexistent/words",
        &fixture("real/msnms.pcap"),
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/words"));
}

#[test]
fn badwords_flag_events_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let words = tmp.path().join("badwords.txt");
    std::fs::write(&words, "man\n").unwrap();
    let out = imscan(&[
        "-F",
        "jsonl",
        "--badwords",
        words.to_str().unwrap(),
        "--block-count",
        "1",
        &fixture("real/msnms.pcap"),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let flagged: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["filtered"] == true)
        .collect();
    // "Hey man, whats up?" is the one message with the word.
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert_eq!(flagged[0]["text"], "Hey man, whats up?");
    assert_eq!(flagged[0]["categories"], serde_json::json!(["badwords"]));
}
