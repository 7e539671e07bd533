//! Live capture end to end (feature `live`): a veth pair inside a network
//! namespace made by each test, `imscan -i` on one end, `tcpreplay
//! --topspeed` of fixture captures on the other, then SIGTERM. The events
//! must equal an offline run over the same files (or the drop counters must
//! explain the difference); the overload test checks that capture keeps
//! going and `received = processed + dropped` while processing is slowed on
//! purpose; the SIGHUP test checks that the output is reopened.
//!
//! Needs root, `ip` (iproute2) and `tcpreplay`; without them each test says
//! why it is skipped and passes.
#![cfg(feature = "live")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const IMSCAN: &str = env!("CARGO_BIN_EXE_imscan");
const IRC: &str = "fixtures/real/irc-ngircd-dave-erin-frank.pcap";
const XMPP: &str = "fixtures/real/xmpp-prosody-dave-erin-frank.pcap";
const XMPP_SESSION: &str = "fixtures/xmpp/xmpp-5222-session.pcap";

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A network namespace with a veth pair `va` (imscan) and `vb` (tcpreplay),
/// deleted on drop. `None`, with the reason printed, where that cannot be.
struct Netns {
    name: String,
}

impl Netns {
    fn new(test: &str) -> Option<Netns> {
        if !is_root() {
            eprintln!("skipping {test}: needs root (network namespaces, capture)");
            return None;
        }
        for tool in ["ip", "tcpreplay"] {
            if !have(tool) {
                eprintln!("skipping {test}: `{tool}` is not installed");
                return None;
            }
        }
        let name = format!("imscan-{test}-{}", std::process::id());
        let ns = Netns { name };
        let ok = ns.ip(&["netns", "add", &ns.name], false)
            && ns.ip(
                &["link", "add", "va", "type", "veth", "peer", "name", "vb"],
                true,
            )
            && ns.ip(&["link", "set", "va", "up"], true)
            && ns.ip(&["link", "set", "vb", "up"], true);
        if !ok {
            eprintln!("skipping {test}: cannot make a network namespace with a veth pair here");
            return None;
        }
        Some(ns)
    }

    fn ip(&self, args: &[&str], inside: bool) -> bool {
        let mut cmd = Command::new("ip");
        if inside {
            cmd.args(["netns", "exec", &self.name, "ip"]);
        }
        cmd.args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts imscan on `va` and waits until it captures.
    fn imscan(&self, args: &[&str], env: &[(&str, &str)]) -> Imscan {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, IMSCAN, "-i", "va"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting imscan");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let ready = line.contains("capturing on va");
                    lines.push(line);
                    if ready {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("imscan did not start capturing: {lines:?}");
                }
            }
        }
        Imscan { child, rx, lines }
    }

    /// Replays `file` at top speed on `vb`; returns the packets sent.
    fn replay(&self, file: &str, loops: u32) -> u64 {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "tcpreplay", "--topspeed"])
            .arg(format!("--loop={loops}"))
            .args(["-i", "vb"])
            .arg(fixture(file))
            .output()
            .expect("running tcpreplay");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "tcpreplay failed: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "{}",
            text.lines()
                .filter(|l| l.contains("Rated") || l.contains("Actual"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        // "Actual: 227 packets (28109 bytes) sent in ..."
        text.lines()
            .find_map(|l| l.trim().strip_prefix("Actual: "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("tcpreplay reports the packets sent")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.ip(&["netns", "del", &self.name], false);
    }
}

struct Imscan {
    child: Child,
    rx: mpsc::Receiver<String>,
    lines: Vec<String>,
}

impl Imscan {
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig}");
    }

    /// SIGTERM, then wait (bounded) for the exit; returns the exit code and
    /// everything imscan said on stderr.
    fn stop(mut self) -> (i32, String) {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("waiting for imscan") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("imscan did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.rx.recv_timeout(Duration::from_secs(2)) {
            self.lines.push(line);
        }
        (
            status.code().expect("exited, not killed"),
            self.lines.join("\n"),
        )
    }
}

/// The part of an event that does not depend on when or in which file it
/// was seen (live frames are numbered and timed by the replay).
fn projection(jsonl: &str) -> Vec<String> {
    let mut v: Vec<String> = jsonl
        .lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).expect("valid JSON line");
            let keep = [
                "protocol",
                "kind",
                "outgoing",
                "local_id",
                "remote_id",
                "group",
                "sender",
                "client",
                "server",
                "text",
                "file_name",
                "file_size",
            ];
            keep.iter()
                .map(|k| e[*k].to_string())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    v.sort();
    v
}

fn offline(files: &[&str]) -> Vec<String> {
    let mut all = Vec::new();
    for f in files {
        let out = Command::new(IMSCAN)
            .args(["-F", "jsonl"])
            .arg(fixture(f))
            .output()
            .expect("offline imscan");
        assert_eq!(out.status.code(), Some(0), "offline run of {f}");
        all.extend(projection(&String::from_utf8_lossy(&out.stdout)));
    }
    all.sort();
    all
}

/// The `"live"` counters from `--stats` on stderr.
fn live_counters(stderr: &str) -> serde_json::Value {
    counters(stderr)["live"].clone()
}

/// Every counter from `--stats` on stderr.
fn counters(stderr: &str) -> serde_json::Value {
    let start = stderr
        .find("\n{")
        .map(|i| i + 1)
        .or_else(|| stderr.starts_with('{').then_some(0));
    let start = start.unwrap_or_else(|| panic!("no --stats JSON in: {stderr}"));
    let json = &stderr[start..];
    let end = json.find("\n}").expect("end of the stats JSON") + 2;
    let v: serde_json::Value = serde_json::from_str(&json[..end]).expect("stats JSON");
    v["counters"].clone()
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("counter {k} in {v}"))
}

#[test]
fn replayed_fixtures_give_the_offline_events() {
    let Some(ns) = Netns::new("e2e") else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("live.jsonl");
    let evidence = dir.path().join("evidence.pcap");
    let imscan = ns.imscan(
        &[
            "-F",
            "jsonl",
            "-o",
            out.to_str().unwrap(),
            "--stats",
            "--buffer-size",
            "128",
            "-w",
            evidence.to_str().unwrap(),
        ],
        &[],
    );
    let files = [IRC, XMPP, XMPP_SESSION];
    let mut sent = 0;
    for f in files {
        sent += ns.replay(f, 1);
    }
    // Events reach the output within a second, without any stop.
    std::thread::sleep(Duration::from_millis(1500));
    let early = std::fs::read_to_string(&out).unwrap();
    assert!(!early.is_empty(), "no event written while capturing");
    let (code, stderr) = imscan.stop();
    let live = live_counters(&stderr);
    assert_eq!(
        n(&live, "received"),
        n(&live, "processed") + n(&live, "dropped"),
        "{live}"
    );
    let got = projection(&std::fs::read_to_string(&out).unwrap());
    let want = offline(&files);
    let lost = n(&live, "dropped") + n(&live, "kernel_dropped") + n(&live, "interface_dropped");
    if lost == 0 {
        // Every packet sent reached imscan (the host adds a few of its own:
        // IPv6 router solicitations and the like).
        assert!(n(&live, "received") >= sent, "{live}, sent {sent}");
        assert_eq!(got, want, "live events differ from the offline run");
        assert_eq!(code, 0, "{stderr}");
        assert!(
            early.lines().count() * 10 >= got.len() * 9,
            "only {} of {} events were written before the stop",
            early.lines().count(),
            got.len()
        );
    } else {
        // The kernel or imscan dropped packets: the difference can only be
        // events missing, never events invented, and the run says so.
        eprintln!("{lost} packets dropped; comparing as a subset");
        assert!(
            got.iter().all(|e| want.contains(e)),
            "an event the offline run lacks"
        );
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("dropped by"), "{stderr}");
    }
    // -w kept every packet as seen: reading it back gives the same events.
    if n(&live, "write_dropped") == 0 {
        assert_eq!(n(&live, "written"), n(&live, "received"), "{live}");
        let again = Command::new(IMSCAN)
            .args(["-F", "jsonl"])
            .arg(&evidence)
            .output()
            .expect("imscan on the -w file");
        assert_eq!(projection(&String::from_utf8_lossy(&again.stdout)), got);
    }
    let manifest = std::fs::read_to_string(dir.path().join("live.jsonl.manifest.json"))
        .or_else(|_| std::fs::read_to_string(dir.path().join("imscan-manifest.json")))
        .expect("manifest written on SIGTERM");
    assert!(manifest.contains("\"live:va\""), "{manifest}");
    assert!(manifest.contains("\"kernel_dropped\""), "{manifest}");
}

#[test]
fn overload_drops_whole_batches_and_keeps_capturing() {
    let Some(ns) = Netns::new("overload") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.jsonl");
    let imscan = ns.imscan(
        &[
            "-F",
            "jsonl",
            "-o",
            out.to_str().unwrap(),
            "--stats",
            "--buffer-size",
            "256",
        ],
        &[
            ("IMSCAN_TEST_SLOW_MS", "300"),
            ("IMSCAN_TEST_QUEUE_BATCHES", "2"),
        ],
    );
    let sent = ns.replay(IRC, 1000);
    let (code, stderr) = imscan.stop();
    let live = live_counters(&stderr);
    eprintln!("overload counters: {live}");
    assert_eq!(
        n(&live, "received"),
        n(&live, "processed") + n(&live, "dropped"),
        "{live}"
    );
    assert!(
        n(&live, "dropped") > 0,
        "processing was slowed but nothing dropped: {live}"
    );
    assert!(n(&live, "dropped_batches") > 0, "{live}");
    // Capture kept running: every packet sent was received or counted by
    // the kernel as dropped.
    assert!(
        n(&live, "received") + n(&live, "kernel_dropped") + n(&live, "interface_dropped") >= sent,
        "sent {sent}: {live}"
    );
    assert_eq!(code, 1, "drops make exit status 1: {stderr}");
    assert!(stderr.contains("packets dropped by imscan"), "{stderr}");
    // What was processed was written, and the file is whole JSON lines.
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text
        .lines()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
}

#[test]
fn sighup_reopens_the_output() {
    let Some(ns) = Netns::new("hup") else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("h.jsonl");
    let rotated = dir.path().join("h.jsonl.1");
    let imscan = ns.imscan(&["-F", "jsonl", "-o", out.to_str().unwrap()], &[]);
    ns.replay(IRC, 1);
    std::thread::sleep(Duration::from_millis(1500));
    // What logrotate does: move the file away, then SIGHUP.
    std::fs::rename(&out, &rotated).unwrap();
    imscan.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !out.exists() {
        assert!(
            Instant::now() < deadline,
            "output not reopened after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ns.replay(XMPP, 1);
    let (code, stderr) = imscan.stop();
    assert!(stderr.contains("SIGHUP: output reopened"), "{stderr}");
    let before = projection(&std::fs::read_to_string(&rotated).unwrap());
    let after = projection(&std::fs::read_to_string(&out).unwrap());
    if code == 0 {
        assert_eq!(before, offline(&[IRC]));
        assert_eq!(after, offline(&[XMPP]));
    } else {
        assert!(stderr.contains("dropped by"), "{stderr}");
    }
    assert!(!before.is_empty() && !after.is_empty());
    assert!(before.iter().all(|e| e.starts_with("\"irc\"")));
    assert!(after.iter().all(|e| e.starts_with("\"xmpp\"")));
}

#[test]
fn missing_interface_is_one_line_and_exit_2() {
    let out = Command::new(IMSCAN)
        .args(["-i", "imscan-nosuch0"])
        .output()
        .expect("running imscan");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("imscan: capture on imscan-nosuch0: "),
        "{err}"
    );
}

#[test]
fn interface_and_files_together_is_a_usage_error() {
    let out = Command::new(IMSCAN)
        .args(["-i", "lo"])
        .arg(fixture(IRC))
        .output()
        .expect("running imscan");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("either -i or capture files"));
}

#[test]
fn quiet_link_still_closes_idle_flows() {
    // The flow of this capture never ends (no FIN, no RST): offline, only
    // the end of input closes it. Live, the host clock runs on while the
    // link is quiet and closes it after --idle-timeout.
    const OPEN: &str = "fixtures/irc/irc-80-midstream.pcap";
    let off = Command::new(IMSCAN)
        .args(["--stats", "--idle-timeout", "1", "-F", "jsonl"])
        .arg(fixture(OPEN))
        .output()
        .expect("offline imscan");
    let off = counters(&String::from_utf8_lossy(&off.stderr));
    assert_eq!(n(&off["tcp"], "closed_idle"), 0, "{off}");
    assert_eq!(n(&off["tcp"], "closed_end_of_input"), 1, "{off}");

    let Some(ns) = Netns::new("idle") else { return };
    let imscan = ns.imscan(
        &[
            "--stats",
            "--idle-timeout",
            "1",
            "-F",
            "jsonl",
            "-o",
            "/dev/null",
        ],
        &[],
    );
    ns.replay(OPEN, 1);
    std::thread::sleep(Duration::from_millis(2500));
    let (_, stderr) = imscan.stop();
    let live = counters(&stderr);
    assert_eq!(n(&live["tcp"], "closed_idle"), 1, "{live}");
    assert_eq!(n(&live["tcp"], "closed_end_of_input"), 0, "{live}");
}

#[test]
fn bpf_filter_applies_to_files_too() {
    let run = |filter: Option<&str>| {
        let mut cmd = Command::new(IMSCAN);
        cmd.args(["-F", "jsonl", "--stats"]);
        if let Some(f) = filter {
            cmd.args(["-f", f]);
        }
        let out = cmd.arg(fixture(IRC)).output().expect("imscan");
        assert_eq!(out.status.code(), Some(0));
        let stats = counters(&String::from_utf8_lossy(&out.stderr));
        (
            projection(&String::from_utf8_lossy(&out.stdout)),
            n(&stats, "deselected"),
        )
    };
    let (all, none_deselected) = run(None);
    assert!(!all.is_empty());
    assert_eq!(none_deselected, 0);
    assert_eq!(run(Some("tcp port 6667")).0, all);
    let (other, deselected) = run(Some("tcp port 5222"));
    assert!(other.is_empty());
    assert!(deselected > 0);
    let bad = Command::new(IMSCAN)
        .args(["-f", "tcp port"])
        .arg(fixture(IRC))
        .output()
        .expect("imscan");
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn no_capture_permission_is_one_line_and_exit_2() {
    // Run as `nobody` with no capabilities (needs root to switch user).
    if !is_root() {
        eprintln!("skipping: needs root to switch to nobody");
        return;
    }
    if !have("setpriv") {
        eprintln!("skipping: `setpriv` is not installed");
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            IMSCAN,
            "-i",
            "lo",
        ])
        .output()
        .expect("running imscan as nobody");
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("Permission denied") && !err.starts_with("imscan:") {
        eprintln!("skipping: nobody cannot run the test binary here: {err}");
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("needs root or CAP_NET_RAW"), "{err}");
}
