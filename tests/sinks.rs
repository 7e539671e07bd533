//! The writers from the outside: the IMSpector tree against the hand-made
//! IMSpector examples, golden outputs of every writer for a hand-made event
//! list, round trips of hostile text, path safety of hostile ids, the open
//! file cache, and the manifest.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use imscan::capture::FrameRef;
use imscan::capture::{LinkType, SourceId};
use imscan::event::{Event, EventFlags, FlowId, Kind, LocalId, Protocol};
use imscan::policy::Policy;
use imscan::sink::imspector::{path_component, render_line};
use imscan::sink::manifest::{manifest_path, MANIFEST_NAME};
use imscan::sink::{
    self, write_manifest, DateZone, EventCounts, ImspectorOptions, InputRecord, Manifest, Sink,
    SinkContext, FIELDS,
};
use imscan::time::Timestamp;
use proptest::prelude::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A `Write` whose bytes the test can read after the sink is done.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[allow(clippy::too_many_arguments)]
fn ev(
    secs: i64,
    protocol: Protocol,
    kind: Kind,
    outgoing: bool,
    client: &str,
    server: &str,
    local: &str,
    remote: &str,
) -> Event {
    let mut e = Event::new(
        Timestamp::from_secs_nanos(secs, 0),
        protocol,
        kind,
        outgoing,
        addr(client),
        addr(server),
    );
    e.local_id = LocalId::Known(local.into());
    e.remote_id = remote.into();
    e
}

fn msg(mut e: Event, text: &str) -> Event {
    e.text = Some(text.to_string());
    e.text_encoding = Some("utf-8");
    e
}

fn file(mut e: Event, name: &str, size: Option<u64>) -> Event {
    e.file_name = Some(name.to_string());
    e.file_size = size;
    e
}

/// Where `e` came from: its first and last frame, its input and the frame
/// that opened its flow (same input).
fn carried(e: &mut Event, frames: (u64, u64), source: SourceId, flow_frame: u64) {
    e.frames = frames;
    e.source = source;
    e.flow = FlowId(FrameRef {
        source,
        index: flow_frame,
    });
}

fn example_policy() -> Policy {
    let dir = fixtures().join("imspector-examples");
    Policy::load(
        Some(&dir.join("badwords.txt")),
        2,
        Some(&dir.join("acl.txt")),
        false,
    )
    .unwrap()
}

/// The events that IMSpector would have logged as fixtures/imspector-examples
/// (README.md there describes them). Some ids carry upper case or a Jabber
/// resource, which IMSpector's normalisation removes.
fn example_events() -> Vec<Event> {
    use Kind::*;
    use Protocol::*;
    let msn = |s, k, o| {
        ev(
            s,
            Msn,
            k,
            o,
            "10.0.0.5:1042",
            "65.54.239.80:1863",
            "alice@hotmail.com",
            "Bob@Hotmail.com",
        )
    };
    let yahoo = |s, k, o| {
        ev(
            s,
            Yahoo,
            k,
            o,
            "10.0.0.9:2201",
            "66.163.181.166:5050",
            "Frank_Y",
            "gina_y",
        )
    };
    let irc = |s, o| {
        let mut e = ev(
            s,
            Irc,
            Message,
            o,
            "10.0.0.7:40112",
            "130.239.18.119:6667",
            "eve",
            "#rust",
        );
        e.group = true;
        e
    };
    let jabber = |s, k, o| {
        ev(
            s,
            Xmpp,
            k,
            o,
            "10.0.0.8:3344",
            "192.0.2.10:5222",
            "carol@example.org/Laptop",
            "dave@jabber.org",
        )
    };
    let mut events = vec![
        msg(msn(1248087600, Message, true), "hi bob, got a minute?"),
        msg(msn(1248087612, Message, false), "sure"),
        file(msn(1248087630, File, true), "report.pdf", Some(48213)),
        msn(1248087645, Typing, false),
        msg(msn(1248087760, Message, true), "the darn build broke"),
        msg(msn(1248087822, Message, true), "darn darn"),
        msg(msn(1248087830, Message, false), "line one\r\nline two"),
        msg(yahoo(1248087690, Message, false), "hey frank"),
        yahoo(1248087695, Typing, true),
        yahoo(1248087701, Webcam, true),
        file(yahoo(1248087710, File, true), "holiday.jpg", Some(153600)),
        msg(
            irc(1248087900, false),
            "anyone tried the new borrow checker?",
        ),
        msg(irc(1248087915, true), "yes, works fine"),
        msg(irc(1248087931, false), "same here"),
        msg(jabber(1248131000, Message, true), "meet at noon"),
        msg(jabber(1248131042, Message, false), "can&apos;t, sorry"),
        file(jabber(1248132100, File, true), "notes.txt", Some(1200)),
    ];
    events[11].sender = Some("mike".into());
    events[13].sender = Some("zoe".into());
    events.sort_by_key(|e| e.time);
    events
}

/// Every regular file under `dir`, by path relative to it, with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let ty = entry.file_type().unwrap();
            let path = entry.path();
            if ty.is_dir() {
                walk(root, &path, out);
            } else {
                assert!(ty.is_file(), "not a regular file: {}", path.display());
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn write_tree(events: &[Event], dir: &Path, opts: ImspectorOptions) -> Vec<(&'static str, u64)> {
    let mut s = sink::imspector(dir, opts).unwrap();
    for e in events {
        s.write(e).unwrap();
    }
    s.finish().unwrap();
    s.counters()
}

#[test]
fn imspector_tree_reproduces_the_examples_byte_for_byte() {
    let policy = example_policy();
    let mut events = example_events();
    for e in &mut events {
        policy.apply(e);
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("logs");
    write_tree(&events, &out, ImspectorOptions::default());
    let expected = tree(&fixtures().join("imspector-examples/logs"));
    let got = tree(&out);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &expected {
        assert_eq!(
            String::from_utf8_lossy(&got[path]),
            String::from_utf8_lossy(bytes),
            "{path}"
        );
        assert_eq!(&got[path], bytes, "{path}");
    }
}

#[test]
fn imspector_tree_appends_to_existing_files() {
    let events = example_events();
    let tmp = tempfile::tempdir().unwrap();
    write_tree(&events[..3], tmp.path(), ImspectorOptions::default());
    write_tree(&events[3..], tmp.path(), ImspectorOptions::default());
    let split = tree(tmp.path());
    let tmp2 = tempfile::tempdir().unwrap();
    write_tree(&events, tmp2.path(), ImspectorOptions::default());
    assert_eq!(split, tree(tmp2.path()));
}

#[test]
fn imspector_day_files_follow_the_time_zone() {
    // 2009-07-20T21:30:00Z and 22:30:00Z: the same UTC day, but the second
    // is past midnight at +02:00.
    let [a, b] = [(1248125400, "before"), (1248129000, "after")].map(|(secs, text)| {
        let e = ev(
            secs,
            Protocol::Irc,
            Kind::Message,
            true,
            "10.0.0.7:1",
            "10.0.0.1:6667",
            "eve",
            "bob",
        );
        msg(e, text)
    });
    let tmp = tempfile::tempdir().unwrap();
    write_tree(
        &[a.clone(), b.clone()],
        tmp.path(),
        ImspectorOptions::default(),
    );
    assert_eq!(
        tree(tmp.path()).keys().collect::<Vec<_>>(),
        ["IRC/eve/bob/2009-07-20"]
    );
    let tmp = tempfile::tempdir().unwrap();
    let opts = ImspectorOptions {
        zone: DateZone::parse("+02:00").unwrap(),
        ..Default::default()
    };
    write_tree(&[a, b], tmp.path(), opts);
    let t = tree(tmp.path());
    assert_eq!(
        t.keys().collect::<Vec<_>>(),
        ["IRC/eve/bob/2009-07-20", "IRC/eve/bob/2009-07-21"]
    );
    assert_eq!(
        t["IRC/eve/bob/2009-07-21"],
        b"10.0.0.7:1,1248129000,1,1,0,,after\n"
    );
}

#[test]
fn imspector_open_file_cache_is_bounded_and_keeps_order() {
    let mut events = Vec::new();
    for i in 0..30 {
        let remote = ["a", "b", "c"][i % 3];
        events.push(msg(
            ev(
                1248087600 + i as i64,
                Protocol::Msn,
                Kind::Message,
                true,
                "10.0.0.5:1042",
                "10.0.0.1:1863",
                "me",
                remote,
            ),
            &format!("line {i}"),
        ));
    }
    let tmp = tempfile::tempdir().unwrap();
    // No buffering: every line goes to its file at once, through 2 open files.
    let opts = ImspectorOptions {
        max_open: 2,
        buffer_bytes: 0,
        ..Default::default()
    };
    let counters = write_tree(&events, tmp.path(), opts);
    let t = tree(tmp.path());
    for (k, remote) in ["a", "b", "c"].iter().enumerate() {
        let expected: String = (0..30)
            .filter(|i| i % 3 == k)
            .map(|i| format!("10.0.0.5:1042,{},1,1,0,,line {i}\n", 1248087600 + i))
            .collect();
        assert_eq!(
            String::from_utf8_lossy(&t[&format!("MSN/me/{remote}/2009-07-20")]),
            expected
        );
    }
    let counters: BTreeMap<_, _> = counters.into_iter().collect();
    assert_eq!(counters["imspector_files_opened"], 30);
    assert_eq!(counters["imspector_files_closed_early"], 28);
    assert_eq!(counters["imspector_buffer_flushes"], 30);

    // A budget of about three lines: same files, far fewer opens.
    let tmp2 = tempfile::tempdir().unwrap();
    let opts = ImspectorOptions {
        max_open: 2,
        buffer_bytes: 600,
        ..Default::default()
    };
    let counters: BTreeMap<_, _> = write_tree(&events, tmp2.path(), opts).into_iter().collect();
    assert_eq!(tree(tmp2.path()), t);
    assert!(counters["imspector_buffer_flushes"] > 0);
    assert!(counters["imspector_files_opened"] < 30, "{counters:?}");
}

/// A hand-made list covering every kind, every protocol, group chat, IPv6,
/// unknown ids, raw bytes, damage flags, policy categories and hostile text
/// and ids.
fn golden_events() -> Vec<Event> {
    use Kind::*;
    use Protocol::*;
    let mut v = Vec::new();
    // One MSN conversation: alice (local) and bob.
    let msn = |secs, outgoing, text| {
        let e = ev(
            secs,
            Msn,
            Message,
            outgoing,
            "10.0.0.5:1042",
            "65.54.239.80:1863",
            "alice@hotmail.com",
            "bob@hotmail.com",
        );
        msg(e, text)
    };

    let mut e = msn(1248087600, true, "he said \"hi\", then left");
    carried(&mut e, (4, 4), 0, 1);
    v.push(e);

    let mut e = msn(1248087612, false, "=SUM(A1:A9)\r\nsecond line");
    e.sender = Some("bob@hotmail.com".into());
    carried(&mut e, (6, 7), 0, 1);
    e.seq = 1;
    v.push(e);

    let mut e = msn(1248087620, true, "darn darn, the heck");
    carried(&mut e, (9, 9), 0, 1);
    e.seq = 2;
    v.push(e);

    let mut e = msg(
        ev(
            1248087900,
            Irc,
            Message,
            false,
            "10.0.0.7:40112",
            "130.239.18.119:6667",
            "eve",
            "#rust",
        ),
        "-rtl \u{202E}olleh\u{202C} nul\0after",
    );
    e.group = true;
    e.sender = Some("Mike".into());
    carried(&mut e, (20, 22), 0, 12);
    e.flags = EventFlags {
        gap_before: true,
        midstream: true,
        ..Default::default()
    };
    e.lost_bytes = 120;
    v.push(e);

    let mut e = file(
        ev(
            1248087901,
            Yahoo,
            File,
            false,
            "10.0.0.9:2201",
            "66.163.181.166:5050",
            "frank_y",
            "gina_y",
        ),
        "holiday\n.jpg",
        None,
    );
    e.sender = Some("gina_y".into());
    carried(&mut e, (31, 31), 1, 2);
    v.push(e);

    let mut e = ev(
        1248087902,
        Yahoo,
        Webcam,
        true,
        "10.0.0.9:2201",
        "66.163.181.166:5050",
        "frank_y",
        "gina_y",
    );
    carried(&mut e, (33, 33), 1, 2);
    v.push(e);

    let mut e = ev(
        1248087903,
        Xmpp,
        Typing,
        false,
        "[2001:db8::1]:50123",
        "[2001:db8::5]:5222",
        "",
        "Dave@Jabber.org/Phone",
    );
    e.local_id = LocalId::Unknown;
    e.sender = Some("Dave@Jabber.org/Phone".into());
    carried(&mut e, (40, 40), 0, 38);
    v.push(e);

    let mut e = msg(
        ev(
            1248087904,
            GaduGadu,
            Message,
            false,
            "10.0.0.11:3030",
            "91.214.237.10:8074",
            "1234567",
            "7654321",
        ),
        "zażółć",
    );
    e.text_encoding = Some("windows-1250");
    e.raw = Some(vec![0x7a, 0x61, 0xbf, 0xf3, 0xb3, 0xe6]);
    carried(&mut e, (50, 50), 0, 44);
    e.flags.decode_error = true;
    v.push(e);

    let mut e = msg(
        ev(
            1248087905,
            Oscar,
            Message,
            true,
            "10.0.0.12:4444",
            "64.12.24.1:5190",
            "",
            "../../etc/passwd",
        ),
        "@everyone +1 'quoted'",
    );
    e.local_id = LocalId::Token("cookie-1".into());
    carried(&mut e, (60, 61), 0, 55);
    e.flags.overlap_conflict = true;
    v.push(e);

    let mut e = file(
        ev(
            1248131000,
            Xmpp,
            File,
            true,
            "10.0.0.8:3344",
            "192.0.2.10:5222",
            "carol@example.org",
            "dave@jabber.org",
        ),
        "notes.txt",
        Some(1200),
    );
    carried(&mut e, (70, 72), 7, 3); // no such input: `file` is null
    v.push(e);

    let policy = {
        let dir = fixtures().join("imspector-examples");
        Policy::load(
            Some(&dir.join("badwords.txt")),
            2,
            Some(&dir.join("acl.txt")),
            true,
        )
        .unwrap()
    };
    for e in &mut v {
        policy.apply(e);
    }
    v
}

fn ctx() -> SinkContext {
    SinkContext {
        inputs: vec![
            "captures/office.pcapng".into(),
            "captures/home.pcap.gz".into(),
        ],
        raw: false,
        color: false,
    }
}

fn render_stream(
    make: impl FnOnce(Box<dyn Write + Send>) -> Box<dyn Sink>,
    events: &[Event],
) -> Vec<u8> {
    let buf = Shared::default();
    let mut s = make(Box::new(buf.clone()));
    for e in events {
        s.write(e).unwrap();
    }
    s.finish().unwrap();
    buf.bytes()
}

fn check_golden(name: &str, got: &[u8]) {
    let path = fixtures().join("sink").join(name);
    if std::env::var_os("IMSCAN_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        String::from_utf8_lossy(got),
        String::from_utf8_lossy(&expected),
        "{name}"
    );
    assert_eq!(got, &expected[..], "{name}");
}

/// Every stream writer, plain and with its option, on the golden events.
#[test]
fn golden_streams() {
    type MakeSink<'a> = dyn Fn(Box<dyn Write + Send>) -> Box<dyn Sink> + 'a;
    let raw = || SinkContext { raw: true, ..ctx() };
    let color = || SinkContext {
        color: true,
        ..ctx()
    };
    let cases: [(&str, &MakeSink<'_>); 6] = [
        ("golden.jsonl", &|w| sink::jsonl(w, ctx())),
        ("golden-raw.jsonl", &|w| sink::jsonl(w, raw())),
        ("golden.csv", &|w| sink::csv(w, ctx(), false)),
        ("golden-csv-raw.csv", &|w| sink::csv(w, ctx(), true)),
        ("golden.txt", &|w| sink::text(w, ctx())),
        ("golden-color.txt", &|w| sink::text(w, color())),
    ];
    let events = golden_events();
    for (name, writer) in cases {
        check_golden(name, &render_stream(writer, &events));
    }
}

#[test]
fn golden_imspector_tree() {
    let tmp = tempfile::tempdir().unwrap();
    write_tree(&golden_events(), tmp.path(), ImspectorOptions::default());
    let got = tree(tmp.path());
    let dir = fixtures().join("sink/golden-tree");
    if std::env::var_os("IMSCAN_UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        for (rel, bytes) in &got {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
    }
    assert_eq!(got, tree(&dir));
}

#[test]
fn jsonl_keys_are_the_public_field_list_in_order() {
    let line = render_stream(|w| sink::jsonl(w, ctx()), &golden_events()[..1]);
    let line = String::from_utf8(line).unwrap();
    let mut at = 0;
    for f in FIELDS {
        let key = format!("\"{f}\":");
        let pos = line[at..]
            .find(&key)
            .unwrap_or_else(|| panic!("{f} missing or out of order"));
        at += pos + key.len();
    }
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v.as_object().unwrap().len(), FIELDS.len());
}

#[test]
fn empty_runs_give_empty_jsonl_and_a_header_only_csv() {
    assert!(render_stream(|w| sink::jsonl(w, ctx()), &[]).is_empty());
    let csv = render_stream(|w| sink::csv(w, ctx(), false), &[]);
    assert_eq!(csv, format!("{}\n", FIELDS.join(",")).into_bytes());
}

/// Text that stresses every writer: separators, quotes, line breaks, NUL,
/// bidi controls, formula starts, non-ASCII.
fn hostile_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        any::<char>().prop_map(|c| c.to_string()),
        Just(",".to_string()),
        Just("\"".to_string()),
        Just("\n".to_string()),
        Just("\r\n".to_string()),
        Just("\0".to_string()),
        Just("\u{202E}".to_string()),
        Just("\u{200F}".to_string()),
        Just("=".to_string()),
        Just("'".to_string()),
        Just("\\".to_string()),
        Just("żółw".to_string()),
        "[a-z ]{0,8}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

fn text_event(text: &str, raw: Option<Vec<u8>>) -> Event {
    let mut e = msg(
        ev(
            1248087600,
            Protocol::Irc,
            Kind::Message,
            false,
            "10.0.0.7:1",
            "10.0.0.1:6667",
            "eve",
            text,
        ),
        text,
    );
    e.group = true;
    e.sender = Some(text.into());
    e.raw = raw;
    e.file_name = Some(text.to_string());
    e
}

fn check_jsonl_round_trip(text: &str, raw: Option<Vec<u8>>) {
    let e = text_event(text, raw.clone());
    let out = render_stream(|w| sink::jsonl(w, ctx()), std::slice::from_ref(&e));
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    assert_eq!(out.last(), Some(&b'\n'));
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["text"].as_str(), Some(text));
    assert_eq!(v["sender"].as_str(), Some(text));
    assert_eq!(v["file_name"].as_str(), Some(text));
    let raw_back = v["raw"].as_str().map(|h| hex::decode(h).unwrap());
    assert_eq!(raw_back, raw);
}

fn check_csv_round_trip(text: &str, raw: Option<Vec<u8>>) {
    let e = text_event(text, raw.clone());
    for csv_raw in [false, true] {
        let out = render_stream(|w| sink::csv(w, ctx(), csv_raw), std::slice::from_ref(&e));
        let mut rd = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(&out[..]);
        assert_eq!(rd.headers().unwrap().iter().collect::<Vec<_>>(), FIELDS);
        let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 1);
        let cell = |name: &str| {
            let i = FIELDS.iter().position(|f| *f == name).unwrap();
            let c = rows[0].get(i).unwrap().to_string();
            if csv_raw {
                c
            } else {
                // Undo the formula defusing: one leading ' was added iff
                // the value starts with = + - @ or '.
                match c.strip_prefix('\'') {
                    Some(rest) if rest.starts_with(['=', '+', '-', '@', '\'']) => rest.to_string(),
                    _ => c,
                }
            }
        };
        assert_eq!(cell("text"), text);
        assert_eq!(cell("sender"), text);
        assert_eq!(cell("file_name"), text);
        let raw_back = Some(cell("raw"))
            .filter(|s| !s.is_empty())
            .map(|h| hex::decode(h).unwrap());
        assert_eq!(raw_back, raw.clone().filter(|r| !r.is_empty()));
        if !csv_raw {
            for c in rows[0].iter() {
                assert!(!c.starts_with(['=', '+', '-', '@']), "undefused cell {c:?}");
            }
        }
    }
}

fn check_imspector_line(text: &str) {
    let e = text_event(text, None);
    let mut line = Vec::new();
    render_line(&mut line, &e);
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
    assert_eq!(line.last(), Some(&b'\n'));
    // Everything after the 6th comma is the eventdata: "<sender>: <text>",
    // cut at NUL, LF as backslash-n.
    let body = line[..line.len() - 1]
        .splitn(7, |&b| b == b',')
        .nth(6)
        .unwrap()
        .to_vec();
    let full = format!("{text}: {text}");
    let cut = full.split('\0').next().unwrap().replace('\n', "\\n");
    assert_eq!(body, cut.into_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_text_survives_jsonl(text in hostile_text(), raw in prop::option::of(prop::collection::vec(any::<u8>(), 0..64))) {
        check_jsonl_round_trip(&text, raw);
    }

    #[test]
    fn any_text_survives_csv(text in hostile_text(), raw in prop::option::of(prop::collection::vec(any::<u8>(), 0..64))) {
        check_csv_round_trip(&text, raw);
    }

    #[test]
    fn imspector_line_stays_one_line(text in hostile_text()) {
        check_imspector_line(&text);
    }
}

#[test]
fn a_megabyte_of_hostile_text_survives_every_writer() {
    let pattern = "a,\"b\"\r\n\0\u{202E}=c\\ żółw\u{FEFF}'";
    let text = pattern.repeat((1 << 20) / pattern.len() + 1);
    assert!(text.len() >= 1 << 20);
    let raw: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    check_jsonl_round_trip(&text, Some(raw.clone()));
    check_csv_round_trip(&text, Some(raw));
    check_imspector_line(&text);
}

/// Ids built to escape the output directory or break the path.
fn hostile_id() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(".."),
        Just("."),
        Just("/"),
        Just("\\"),
        Just("\0"),
        Just("\n"),
        Just("%"),
        Just("%2E"),
        Just("~"),
        Just("a"),
        Just("B"),
        Just("é"),
        Just("\u{202E}"),
        Just("\u{85}"),
        Just(" "),
        Just("-"),
        Just("@"),
    ];
    prop_oneof![
        prop::collection::vec(piece, 0..12).prop_map(|v| v.concat()),
        (
            1usize..120,
            prop::sample::select(vec!["a", "../", "é", "%", "\u{202E}"])
        )
            .prop_map(|(n, s)| s.repeat(n)),
        any::<String>(),
    ]
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop::sample::select(Protocol::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn no_id_writes_outside_the_output_directory(
        ids in prop::collection::vec((protocol(), hostile_id(), hostile_id()), 1..6)
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let events: Vec<Event> = ids
            .iter()
            .map(|(p, l, r)| msg(ev(1248087600, *p, Kind::Message, true, "10.0.0.1:1", "10.0.0.2:2", l, r), "x"))
            .collect();
        write_tree(&events, &out, ImspectorOptions::default());

        // Nothing beside the output directory was created.
        let top: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        prop_assert_eq!(top, vec![std::ffi::OsString::from("out")]);
        // Every file is a regular file exactly four levels below it.
        let canon = out.canonicalize().unwrap();
        let files = tree(&out);
        for rel in files.keys() {
            let p = out.join(rel).canonicalize().unwrap();
            prop_assert!(p.starts_with(&canon), "{} escaped", p.display());
            prop_assert_eq!(p.strip_prefix(&canon).unwrap().components().count(), 4, "{}", rel);
        }
        // One file per distinct normalised conversation: no two ids share a
        // directory, no id is split over two.
        let mut conversations: Vec<(Protocol, String, String)> = events
            .iter()
            .map(|e| (e.protocol, e.imspector_local_id().into_owned(), e.imspector_remote_id().into_owned()))
            .collect();
        conversations.sort();
        conversations.dedup();
        prop_assert_eq!(files.len(), conversations.len());
        let lines: usize = files.values().map(|b| b.iter().filter(|&&c| c == b'\n').count()).sum();
        prop_assert_eq!(lines, events.len());
    }

    #[test]
    fn path_components_are_single_safe_names(id in hostile_id()) {
        let c = path_component(&id);
        prop_assert!(!c.is_empty() && c != "." && c != "..");
        prop_assert!(c.len() <= 255);
        prop_assert!(!c.contains(['/', '\\', '\0']));
        prop_assert!(!c.contains(".."));
        prop_assert!(!c.chars().any(char::is_control));
    }
}

#[test]
fn manifest_is_deterministic_and_hashes_match_sha256sum() {
    // The input record as the capture stage reports it (its hashing while
    // reading is checked against sha256sum in tests/engine.rs).
    let rec = InputRecord {
        path: "fixtures/imspector-examples/acl.txt".into(),
        size: 477,
        sha256: "bc9571653a8df4995280b34a4e87ac4cd3f23b3400852a3fab52e998738c9e20".into(),
        link_types: vec![LinkType::ETHERNET.0, LinkType::LINUX_SLL2.0],
        first_capture: Some(Timestamp::from_secs_nanos(1248087600, 250_000).rfc3339_micros()),
        last_capture: Some(Timestamp::from_secs_nanos(1248132100, 0).rfc3339_micros()),
        frames: 2,
        damaged_records: 0,
    };

    let mut m = Manifest::new(
        vec![
            "imscan".into(),
            "-F".into(),
            "imspector".into(),
            "-o".into(),
            "logs".into(),
            "acl.txt".into(),
        ],
        "imspector",
        "logs",
    );
    m.imscan_version = "0.0.0-test".into();
    m.inputs.push(rec);
    let mut counts = EventCounts::default();
    for e in example_events() {
        counts.count(&e);
    }
    assert_eq!(counts.total(), 17);
    assert_eq!(counts.get(Protocol::Msn, Kind::Message), 5);
    m.events = counts;
    m.counters = serde_json::json!({ "frames": 120, "flows": 4, "gaps": 1, "dropped": 0 });

    let tmp = tempfile::tempdir().unwrap();
    let path = manifest_path(tmp.path(), true);
    assert!(path.ends_with(MANIFEST_NAME));
    write_manifest(&path, &m).unwrap();
    check_golden("manifest.json", &std::fs::read(&path).unwrap());
}

#[test]
fn imspector_logs_the_text_as_carried_on_the_wire() {
    let base = |proto, enc: &'static str, text: &str, raw: Option<&[u8]>| {
        let mut e = msg(
            ev(
                1248087600,
                proto,
                Kind::Message,
                false,
                "10.0.0.1:1",
                "10.0.0.2:2",
                "a",
                "b",
            ),
            text,
        );
        e.text_encoding = Some(enc);
        e.raw = raw.map(<[u8]>::to_vec);
        let mut line = Vec::new();
        render_line(&mut line, &e);
        line
    };
    // Gadu-Gadu CP1250 was logged unconverted.
    assert_eq!(
        base(
            Protocol::GaduGadu,
            "windows-1250",
            "żółw",
            Some(b"\xbf\xf3\xb3w")
        ),
        b"10.0.0.1:1,1248087600,0,1,0,,\xbf\xf3\xb3w\n"
    );
    // Yahoo formatting codes, stripped from the text, were logged by IMSpector.
    assert_eq!(
        base(Protocol::Yahoo, "utf-8", "hi", Some(b"\x1b[1mhi")),
        b"10.0.0.1:1,1248087600,0,1,0,,\x1b[1mhi\n"
    );
    // XMPP raw is the whole stanza: IMSpector logged the extracted text.
    assert_eq!(
        base(
            Protocol::Xmpp,
            "utf-8",
            "can&apos;t",
            Some(b"<message><body>can&apos;t</body></message>")
        ),
        b"10.0.0.1:1,1248087600,0,1,0,,can&apos;t\n"
    );
    // ICQ UTF-16BE was converted to UTF-8 by IMSpector: the text, not the raw bytes.
    assert_eq!(
        base(Protocol::Oscar, "utf-16be", "hi", Some(b"\0h\0i")),
        b"10.0.0.1:1,1248087600,0,1,0,,hi\n"
    );
    // Exact UTF-8 without raw: the text.
    assert_eq!(
        base(Protocol::Msn, "utf-8", "hi", None),
        b"10.0.0.1:1,1248087600,0,1,0,,hi\n"
    );
}
