//! Golden files: generated captures and what imscan makes of them, checked
//! against the files checked in under `fixtures/` (`<case>.pcap`,
//! `<case>.expected.jsonl`, `<case>.imspector.txt`). `IMSCAN_BLESS=1`
//! rewrites them instead; review the diff before committing it. The binary
//! runs from the crate root (so inputs are named by relative path) at
//! several thread counts, and its output must not depend on them.
//! Test-only code: it panics on any difference.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use imscan::event::{Event, Kind};
use imscan::time::Timestamp;

use super::packet::{pcap_of, Conversation};
use super::stages::{pipeline, unhex};
use super::truth::{truth_row, TRUTH_HEADER};

/// Thread counts every binary check runs at.
pub const THREADS: [&str; 4] = ["1", "2", "4", "5"];

/// `IMSCAN_BLESS` is set: rewrite expected files instead of checking them.
pub fn bless() -> bool {
    std::env::var_os("IMSCAN_BLESS").is_some()
}

/// `rel` (a path from the crate root) as an absolute path.
pub fn crate_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A text fixture (path from the crate root).
pub fn read_text(rel: &str) -> String {
    std::fs::read_to_string(crate_path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The `imscan` binary, run from the crate root. Only integration tests
/// have it (benches include this module too).
pub fn imscan() -> Command {
    let Some(exe) = option_env!("CARGO_BIN_EXE_imscan") else {
        panic!("only integration tests have the imscan binary");
    };
    let mut c = Command::new(exe);
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// Bless: replace `path` with `bytes` in one step (a rename), so a test
/// reading it in parallel sees the old file or the new one, never half.
fn write_whole(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let tmp = path.with_extension(format!("bless-{:?}", std::thread::current().id()));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Compare `expected` (from the crate root) with `got`, or write it when
/// blessing.
fn check_file(expected: &str, got: &[u8], what: &str) {
    let path = crate_path(expected);
    if bless() {
        write_whole(&path, got);
    }
    let want = std::fs::read(&path).unwrap_or_else(|e| panic!("{expected}: {e}"));
    assert!(
        want == got,
        "{what} differs from {expected} (IMSCAN_BLESS=1 to rewrite)\n--- got\n{}",
        String::from_utf8_lossy(got)
    );
}

/// A generated capture is what the checked-in `pcap` (from the crate root)
/// holds, and is a small fixture. Returns its absolute path.
pub fn check_pcap(pcap: &str, bytes: &[u8]) -> String {
    assert!(bytes.len() < 1 << 20, "{pcap}: fixtures stay under 1 MB");
    let path = crate_path(pcap);
    if bless() {
        write_whole(&path, bytes);
    }
    let on_disk = std::fs::read(&path).unwrap_or_else(|e| panic!("{pcap}: {e}"));
    assert!(
        on_disk == bytes,
        "{pcap} is not what the script generates (IMSCAN_BLESS=1 to rewrite)"
    );
    path.to_str().unwrap().to_owned()
}

/// What `imscan -F jsonl` wrote for a capture, the same at every thread count.
pub struct Jsonl {
    pub text: String,
    /// 0 clean, 1 processed with damage (lost segments and the like).
    pub code: i32,
}

impl Jsonl {
    /// The lines as JSON values.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
            .collect()
    }

    /// The lines read back into events.
    pub fn events(&self) -> Vec<Event> {
        events_from_jsonl(&self.text)
    }
}

/// `imscan -F jsonl <capture>` at every count of [`THREADS`]: the same
/// output and exit code (0 or 1) each time, equal to (or, blessing, written
/// to) `expected`. Paths from the crate root.
pub fn check_jsonl(capture: &str, expected: &str) -> Jsonl {
    let mut first: Option<Jsonl> = None;
    for threads in THREADS {
        let out = imscan()
            .args(["-F", "jsonl", "--threads", threads, capture])
            .output()
            .expect("run imscan");
        let code = out.status.code().unwrap_or(-1);
        assert!(
            code == 0 || code == 1,
            "imscan {capture} at {threads} threads: {out:?}"
        );
        let run = Jsonl {
            text: String::from_utf8(out.stdout).expect("JSON Lines are UTF-8"),
            code,
        };
        match &first {
            None => first = Some(run),
            Some(f) => {
                assert_eq!(f.text, run.text, "{capture}: output at {threads} threads");
                assert_eq!(
                    f.code, run.code,
                    "{capture}: exit code at {threads} threads"
                );
            }
        }
    }
    let run = first.unwrap();
    check_file(
        expected,
        run.text.as_bytes(),
        &format!("{capture} as JSON Lines"),
    );
    run
}

/// [`check_jsonl`] for `<stem>.pcap` and `<stem>.expected.jsonl`.
pub fn check_capture(stem: &str) -> Jsonl {
    check_jsonl(&format!("{stem}.pcap"), &format!("{stem}.expected.jsonl"))
}

/// `imscan -F imspector -o DIR <capture>` at every count of [`THREADS`]
/// writes the log tree flattened in `expected` (see [`flatten_tree`]).
pub fn check_imspector(capture: &str, expected: &str) {
    for threads in THREADS {
        let dir = tempfile::tempdir().unwrap();
        let out = imscan()
            .args(["-F", "imspector", "--threads", threads, "-o"])
            .arg(dir.path())
            .arg(capture)
            .output()
            .expect("run imscan");
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "{capture}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        check_file(
            expected,
            flatten_tree(dir.path()).as_bytes(),
            &format!("{capture} IMSpector tree at {threads} threads"),
        );
    }
}

/// A generated capture of `convs` (their frames in time order) is the
/// checked-in `<stem>.pcap`, and the binary's JSON Lines for it are
/// `<stem>.expected.jsonl` (`stem` from the crate root). Returns the
/// events read back.
pub fn check_generated(stem: &str, convs: &[Conversation]) -> Vec<Event> {
    check_pcap(&format!("{stem}.pcap"), &pcap_of(convs));
    check_capture(stem).events()
}

/// The events as the JSON Lines sink writes them (input named `input`).
pub fn render_jsonl(input: &str, events: &[Event]) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    let ctx = imscan::sink::SinkContext {
        inputs: vec![input.to_string()],
        ..Default::default()
    };
    let mut sink = imscan::sink::jsonl(Box::new(file.reopen().unwrap()), ctx);
    for e in events {
        sink.write(e).unwrap();
    }
    sink.finish().unwrap();
    drop(sink);
    std::fs::read_to_string(file.path()).unwrap()
}

/// The IMSpector log tree (UTC dates) the events make, flattened.
pub fn render_imspector(events: &[Event]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut sink =
        imscan::sink::imspector(dir.path(), imscan::sink::ImspectorOptions::default()).unwrap();
    for e in events {
        sink.write(e).unwrap();
    }
    sink.finish().unwrap();
    drop(sink);
    flatten_tree(dir.path())
}

/// Check what the library's JSON Lines and IMSpector sinks make of
/// `events` against `<stem>.expected.jsonl` and `<stem>.imspector.txt`, the
/// files the binary must also write for `<stem>.pcap`.
pub fn check_sinks(stem: &str, events: &[Event]) {
    let jsonl = render_jsonl(&format!("{stem}.pcap"), events);
    check_file(
        &format!("{stem}.expected.jsonl"),
        jsonl.as_bytes(),
        "the JSON Lines sink",
    );
    let tree = render_imspector(events);
    check_file(
        &format!("{stem}.imspector.txt"),
        tree.as_bytes(),
        "the IMSpector sink",
    );
}

/// A log tree flattened to `== <path>` headers each followed by the file's
/// lines, paths sorted.
pub fn flatten_tree(root: &std::path::Path) -> String {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "imscan-manifest.json") {
                // The run manifest (arguments, paths, counters) is not a log.
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = String::new();
    for f in files {
        let rel = f.strip_prefix(root).unwrap();
        out.push_str(&format!("== {}\n", rel.display()));
        out.push_str(&String::from_utf8_lossy(&std::fs::read(&f).unwrap()));
    }
    out
}

/// Read `imscan -F jsonl` output back into events (the fields JSON Lines
/// carry; `seq` and `source` are not in it and stay 0).
pub fn events_from_jsonl(jsonl: &str) -> Vec<Event> {
    use imscan::event::{EventFlags, LocalId, Protocol};
    use serde_json::Value;
    let str_of = |v: &Value| v.as_str().map(str::to_owned);
    jsonl
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON object per line");
            let time: jiff::Timestamp = v["time"].as_str().unwrap().parse().unwrap();
            let protocol = Protocol::from_name(v["protocol"].as_str().unwrap()).unwrap();
            let kind = Kind::ALL
                .into_iter()
                .find(|k| k.name() == v["kind"].as_str().unwrap())
                .unwrap();
            let addr = |k: &str| v[k].as_str().unwrap().parse::<SocketAddr>().unwrap();
            let mut e = Event::new(
                Timestamp(time.as_nanosecond() as i64),
                protocol,
                kind,
                v["outgoing"].as_bool().unwrap(),
                addr("client"),
                addr("server"),
            );
            e.local_id = match str_of(&v["local_id"]) {
                Some(s) => LocalId::Known(s.into()),
                None => LocalId::Unknown,
            };
            e.remote_id = str_of(&v["remote_id"]).unwrap_or_default().into();
            e.group = v["group"].as_bool().unwrap();
            e.sender = str_of(&v["sender"]).map(Into::into);
            e.text = str_of(&v["text"]);
            e.text_encoding = match v["text_encoding"].as_str() {
                Some("utf-8") => Some("utf-8"),
                Some("windows-1252") => Some("windows-1252"),
                Some(other) => panic!("unexpected text_encoding {other}"),
                None => None,
            };
            e.raw = v["raw"].as_str().map(unhex);
            e.file_name = str_of(&v["file_name"]);
            e.file_size = v["file_size"].as_u64();
            e.frames = (
                v["frames"][0].as_u64().unwrap(),
                v["frames"][1].as_u64().unwrap(),
            );
            let names: Vec<&str> = v["flags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            e.flags = EventFlags {
                gap_before: names.contains(&"gap_before"),
                overlap_conflict: names.contains(&"overlap_conflict"),
                midstream: names.contains(&"midstream"),
                decode_error: names.contains(&"decode_error"),
            };
            e.lost_bytes = v["lost_bytes"].as_u64().unwrap();
            e
        })
        .collect()
}

/// A generated capture through the stages: `bytes` is the checked-in
/// `<stem>.pcap`; its events, as truth rows, are `<stem>.expected.tsv`; and
/// the library's sinks write `<stem>.expected.jsonl` and
/// `<stem>.imspector.txt` for them ([`check_sinks`]). Returns the events.
pub fn check_decoded(stem: &str, bytes: &[u8]) -> Vec<Event> {
    let path = check_pcap(&format!("{stem}.pcap"), bytes);
    let events = pipeline(&path, imscan::proto::ProtoConfig::default()).0;
    let mut table = format!("{TRUTH_HEADER}\n");
    for e in &events {
        table.push_str(&truth_row(e));
        table.push('\n');
    }
    check_file(
        &format!("{stem}.expected.tsv"),
        table.as_bytes(),
        "the events as truth rows",
    );
    check_sinks(stem, &events);
    events
}

/// The binary on `<stem>.pcap` writes `<stem>.expected.jsonl` and, as an
/// IMSpector tree, `<stem>.imspector.txt`, at every thread count. Returns
/// the exit code (0 clean, 1 damaged input such as lost segments).
pub fn check_binary(stem: &str) -> i32 {
    check_imspector(&format!("{stem}.pcap"), &format!("{stem}.imspector.txt"));
    check_capture(stem).code
}
