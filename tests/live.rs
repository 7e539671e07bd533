//! Live capture end to end (feature `live`): a veth pair inside a network
//! namespace made by each test, `imscan -i` on one end, `tcpreplay
//! --topspeed` of fixture captures on the other, then SIGTERM. The events
//! must equal an offline run over the same files (or the drop counters must
//! explain the difference); the overload test checks that capture keeps
//! going and `received = processed + dropped` while processing is slowed on
//! purpose; the SIGHUP test checks that the output and the `-w` file are
//! reopened; the full-disk tests fill a small tmpfs (in a mount namespace of
//! the test's own) under the output and free it again; the midnight tests
//! check the IMSpector day files, offline on a generated capture that
//! straddles midnight and live with a time zone whose midnight falls during
//! the test. Every live test checks the exit status: 0 after a clean
//! SIGTERM, 1 exactly when a counter says something was lost.
//!
//! Needs root, `ip` (iproute2) and `tcpreplay` (the full-disk tests also
//! `unshare`, `nsenter` and `mount`); without them each test says why it is
//! skipped and passes.
#![cfg(feature = "live")]

mod support;

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
        self.imscan_on(None, args, env)
    }

    /// [`Netns::imscan`], writing to `disk` (it runs in the disk's mount
    /// namespace).
    fn imscan_on(&self, disk: Option<&SmallDisk>, args: &[&str], env: &[(&str, &str)]) -> Imscan {
        let mut cmd = match disk {
            // nsenter and `ip netns exec` exec what they run: the child's
            // pid is imscan's, for the signals.
            Some(d) => {
                let mut c = Command::new("nsenter");
                c.args(["-t", &d.holder.id().to_string(), "-m", "--", "ip"]);
                c
            }
            None => Command::new("ip"),
        };
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
    /// Waits (bounded) until imscan says a line containing `needle`.
    fn wait_for(&mut self, needle: &str, within: Duration) -> bool {
        if self.lines.iter().any(|l| l.contains(needle)) {
            return true;
        }
        let deadline = Instant::now() + within;
        while let Ok(line) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            let found = line.contains(needle);
            self.lines.push(line);
            if found {
                return true;
            }
        }
        false
    }

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

/// The exit status of a live run stopped by SIGTERM (needs `--stats`): 1
/// exactly when a counter says something was lost (packets dropped by
/// imscan, the kernel or the interface, packets not written to `-w`, events
/// or output bytes not written), else 0: the same rule as for files.
fn assert_exit_follows_losses(code: i32, stderr: &str) -> u64 {
    let c = counters(stderr);
    let live = &c["live"];
    let lost = n(live, "dropped")
        + n(live, "kernel_dropped")
        + n(live, "interface_dropped")
        + n(live, "write_dropped")
        + n(&c, "events_unwritten")
        + n(&c, "output_bytes_lost");
    if lost == 0 {
        assert_eq!(code, 0, "nothing lost, yet: {stderr}");
        assert!(!stderr.contains("processed with damage"), "{stderr}");
    } else {
        assert_eq!(code, 1, "{lost} lost, yet: {stderr}");
        assert!(stderr.contains("processed with damage: "), "{stderr}");
    }
    lost
}

/// Frames of a pcap file, read back by the crate's own reader (which must
/// find nothing wrong) and, when installed, by tshark (which must read it
/// without complaint and count the same frames).
fn pcap_frames(path: &Path) -> u64 {
    let mut r = imscan::capture::CaptureReader::open(
        path.to_str().unwrap(),
        0,
        imscan::capture::ReadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut frames = 0;
    while let Some(b) = r.next_batch(4096, 1 << 22) {
        frames += b.len() as u64;
    }
    assert!(r.take_warnings().is_empty(), "{}", path.display());
    assert_eq!(r.stats().damaged, 0, "{}", path.display());
    if have("tshark") {
        let out = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(path)
            .args(["-T", "fields", "-e", "frame.number"])
            .output()
            .expect("running tshark");
        assert!(
            out.status.success(),
            "tshark -r {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let n = String::from_utf8_lossy(&out.stdout).lines().count() as u64;
        assert_eq!(
            n,
            frames,
            "tshark and imscan count the frames of {}",
            path.display()
        );
    } else {
        eprintln!(
            "tshark is not installed: {} checked by imscan's reader only",
            path.display()
        );
    }
    frames
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
fn sighup_reopens_the_output_and_the_evidence_file() {
    let Some(ns) = Netns::new("hup") else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("h.jsonl");
    let rotated = dir.path().join("h.jsonl.1");
    let evidence = dir.path().join("e.pcap");
    let evidence_rotated = dir.path().join("e.pcap.1");
    let imscan = ns.imscan(
        &[
            "-F",
            "jsonl",
            "-o",
            out.to_str().unwrap(),
            "-w",
            evidence.to_str().unwrap(),
            "--stats",
        ],
        &[],
    );
    let irc_sent = ns.replay(IRC, 1);
    std::thread::sleep(Duration::from_millis(1500));
    // What logrotate does: move the files away, then SIGHUP.
    std::fs::rename(&out, &rotated).unwrap();
    std::fs::rename(&evidence, &evidence_rotated).unwrap();
    imscan.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !out.exists() || !evidence.exists() {
        assert!(
            Instant::now() < deadline,
            "output or -w file not reopened after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ns.replay(XMPP, 1);
    let (code, stderr) = imscan.stop();
    assert!(stderr.contains("SIGHUP: output reopened"), "{stderr}");
    let lost = assert_exit_follows_losses(code, &stderr);
    let before = projection(&std::fs::read_to_string(&rotated).unwrap());
    let after = projection(&std::fs::read_to_string(&out).unwrap());
    if lost == 0 {
        assert_eq!(before, offline(&[IRC]));
        assert_eq!(after, offline(&[XMPP]));
    }
    assert!(!before.is_empty() && !after.is_empty());
    assert!(before.iter().all(|e| e.starts_with("\"irc\"")));
    assert!(after.iter().all(|e| e.starts_with("\"xmpp\"")));
    // Both -w files are whole pcaps, each with its own header; the moved
    // one was complete at the SIGHUP (every IRC packet, captured 1.5 s
    // before it); together they hold every packet imscan received.
    let live = live_counters(&stderr);
    let old = pcap_frames(&evidence_rotated);
    let new = pcap_frames(&evidence);
    assert_eq!(n(&live, "files_written"), 2, "{live}");
    assert_eq!(n(&live, "write_errors"), 0, "{live}");
    assert_eq!(
        n(&live, "written") + n(&live, "write_dropped"),
        n(&live, "received"),
        "{live}"
    );
    assert_eq!(old + new, n(&live, "written"), "{live}");
    if lost == 0 {
        assert_eq!(old + new, n(&live, "received"), "{live}");
        assert!(
            old >= irc_sent,
            "old file {old} frames, {irc_sent} IRC packets sent"
        );
        let events_of = |f: &Path| {
            let o = Command::new(IMSCAN)
                .args(["-F", "jsonl"])
                .arg(f)
                .output()
                .expect("imscan on a -w file");
            projection(&String::from_utf8_lossy(&o.stdout))
        };
        assert_eq!(events_of(&evidence_rotated), before);
        assert_eq!(events_of(&evidence), after);
    }
}

/// A small tmpfs mounted in a mount namespace made for the test, kept alive
/// by a holder process (`sleep`): imscan runs in that namespace, the test
/// reaches the files through `/proc/<holder>/root`, and nothing is mounted
/// on the host. `None`, with the reason printed, where that cannot be.
struct SmallDisk {
    holder: Child,
    /// The mount point (the same path inside the namespace).
    at: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(test: &str, size_kib: u32) -> Option<SmallDisk> {
        for tool in ["unshare", "nsenter", "mount"] {
            if !have(tool) {
                eprintln!("skipping {test}: `{tool}` is not installed");
                return None;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("disk");
        std::fs::create_dir(&at).unwrap();
        let script = format!(
            "mount -t tmpfs -o size={size_kib}k imscan-test \"$0\" && mkdir \"$0/tree\" && echo ready && exec sleep 600"
        );
        let mut holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .arg(&at)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting unshare");
        let mut ready = String::new();
        let _ = BufReader::new(holder.stdout.take().unwrap()).read_line(&mut ready);
        if ready.trim() != "ready" {
            let _ = holder.kill();
            let out = holder.wait_with_output().expect("unshare output");
            eprintln!(
                "skipping {test}: cannot mount a tmpfs in a mount namespace of its own: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(SmallDisk {
            holder,
            at,
            _dir: dir,
        })
    }

    /// A path on the disk as imscan sees it.
    fn inside(&self, rel: &str) -> PathBuf {
        self.at.join(rel)
    }

    /// The same path as the test reaches it.
    fn outside(&self, rel: &str) -> PathBuf {
        let mut p = PathBuf::from(format!("/proc/{}/root", self.holder.id()));
        p.push(self.at.strip_prefix("/").unwrap());
        p.join(rel)
    }

    /// Fills the disk to the last byte with a file of its own.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.outside("filler")).unwrap();
        let block = [0u8; 4096];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(28), "filling the disk: {e}");
                    break;
                }
            }
        }
        // What is left of the last block, byte by byte.
        while f.write(&[0]).is_ok_and(|n| n == 1) {}
    }

    fn free(&self) {
        std::fs::remove_file(self.outside("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// What a full disk does to a live run writing `format` to the small disk
/// (and `-w` there too), in four phases:
/// 1. IRC is replayed and written.
/// 2. The disk is filled to the last byte; IRC and XMPP_SESSION are
///    replayed. Their lines go partly into the room left in the last page
///    of a file (a real partial write); the rest (new files, new pages)
///    fails: the error is said, and what the output took waits (events
///    that come after the failure was seen are counted instead).
/// 3. XMPP is replayed while writing fails: its events are counted as not
///    written.
/// 4. Room is made; writing resumes; XMPP_SESSION is replayed again and its
///    events reach the output before the stop.
///
/// Every event must then be in the output exactly once or counted as not
/// written, with no half line anywhere. `read` gives the output's events,
/// `offline` those of a file run on fixtures, in the same (sorted) form.
fn full_disk_run(
    test: &str,
    format: &str,
    read: impl Fn(&Path) -> Vec<String>,
    offline: impl Fn(&[&str]) -> Vec<String>,
) {
    let Some(ns) = Netns::new(test) else { return };
    let Some(disk) = SmallDisk::new(test, 512) else {
        return;
    };
    let output = if format == "imspector" { "tree" } else { "out" };
    let mut imscan = ns.imscan_on(
        Some(&disk),
        &[
            "-F",
            format,
            "-o",
            disk.inside(output).to_str().unwrap(),
            "-w",
            disk.inside("ev.pcap").to_str().unwrap(),
            "--stats",
        ],
        &[],
    );
    // 1.
    ns.replay(IRC, 1);
    std::thread::sleep(Duration::from_millis(1000));
    let size = || std::fs::metadata(disk.outside(output)).map_or(0, |m| m.len());
    let before = size();
    // 2.
    disk.fill();
    ns.replay(IRC, 1);
    ns.replay(XMPP_SESSION, 1);
    assert!(
        imscan.wait_for(
            "writing output: No space left on device",
            Duration::from_secs(5)
        ),
        "no write error said: {:?}",
        imscan.lines
    );
    if format == "jsonl" {
        // The write filled the rest of the file's last page, then failed.
        assert!(before % 4096 != 0 && size() > before, "no partial write");
    }
    assert!(
        imscan.wait_for("ev.pcap: No space left on device", Duration::from_secs(3)),
        "no -w write error said: {:?}",
        imscan.lines
    );
    // 3. Processed while the disk is still full (a batch waits at most
    // 0.1 s before processing).
    ns.replay(XMPP, 1);
    std::thread::sleep(Duration::from_millis(1000));
    // 4.
    disk.free();
    assert!(
        imscan.wait_for("writing output works again", Duration::from_secs(5)),
        "writing did not resume: {:?}",
        imscan.lines
    );
    ns.replay(XMPP_SESSION, 1);
    // Written without a stop, within the second.
    std::thread::sleep(Duration::from_millis(1500));
    // Phase 1 and 4 are there (phase 2 is too, unless the failure was
    // seen between its two replays: then part of it is counted instead).
    let resumed = read(&disk.outside(output));
    assert!(
        is_part_of(&offline(&[IRC, XMPP_SESSION]), &resumed),
        "events written before the failure or after it are missing before the stop"
    );
    let (code, stderr) = imscan.stop();
    let c = counters(&stderr);
    let live = &c["live"];
    // Capture never stopped: received = processed + dropped.
    assert_eq!(
        n(live, "received"),
        n(live, "processed") + n(live, "dropped"),
        "{live}"
    );
    assert!(n(&c, "output_write_errors") >= 1, "{c}");
    assert!(n(&c, "events_unwritten") > 0, "{c}");
    assert_eq!(n(&c, "output_bytes_lost"), 0, "{c}");
    assert_exit_follows_losses(code, &stderr);
    assert!(
        stderr.contains("events not written (the output failed)"),
        "{stderr}"
    );
    let got = read(&disk.outside(output));
    // Every event is in the output once or counted as not written: what
    // waited during the failure was neither lost nor repeated.
    let total = n(&stats_events(&stderr), "total");
    assert_eq!(got.len() as u64 + n(&c, "events_unwritten"), total, "{c}");
    let all = offline(&[IRC, IRC, XMPP_SESSION, XMPP, XMPP_SESSION]);
    assert!(
        is_part_of(&got, &all),
        "an event the offline runs lack, or one twice"
    );
    if n(live, "dropped") + n(live, "kernel_dropped") + n(live, "interface_dropped") == 0 {
        assert_eq!(total, all.len() as u64, "{c}");
    }
    // -w: the disk error was counted, the file is a whole pcap (no half
    // record) holding every packet the writer kept.
    assert!(n(live, "write_errors") >= 1, "{live}");
    assert_eq!(
        n(live, "written") + n(live, "write_dropped"),
        n(live, "received"),
        "{live}"
    );
    assert_eq!(pcap_frames(&disk.outside("ev.pcap")), n(live, "written"));
}

/// Whether every element of `part` is in `whole`, counting repeats (both
/// sorted).
fn is_part_of(part: &[String], whole: &[String]) -> bool {
    let mut rest = whole.iter();
    part.iter().all(|p| rest.any(|w| w == p))
}

/// The `"events"` object of `--stats` on stderr.
fn stats_events(stderr: &str) -> serde_json::Value {
    let start = stderr.find("\n{").map(|i| i + 1).unwrap_or(0);
    let json = &stderr[start..];
    let end = json.find("\n}").expect("end of the stats JSON") + 2;
    let v: serde_json::Value = serde_json::from_str(&json[..end]).expect("stats JSON");
    v["events"].clone()
}

#[test]
fn full_disk_under_jsonl_is_counted_and_writing_resumes() {
    let read = |p: &Path| {
        let text = std::fs::read_to_string(p).unwrap();
        // Whole lines only: projection parses every one.
        assert!(text.is_empty() || text.ends_with('\n'), "a half line");
        projection(&text)
    };
    full_disk_run("fulljsonl", "jsonl", read, offline);
}

/// IMSpector lines of a tree as `protocol/local/remote|line without its
/// timestamp`, sorted: what a live run and a file run must share.
fn tree_projection(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            // Day files only (protocol/local/remote/day), not the manifest.
            if rel.split('/').count() != 4 {
                continue;
            }
            let conv = rel
                .rsplit_once('/')
                .map_or(rel.as_str(), |(c, _)| c)
                .to_string();
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                bytes.is_empty() || bytes.ends_with(b"\n"),
                "{rel}: a half line"
            );
            for line in String::from_utf8_lossy(&bytes).lines() {
                // clientaddress,timestamp,outgoing,type,filtered,categories,eventdata
                let f: Vec<&str> = line.splitn(7, ',').collect();
                assert_eq!(f.len(), 7, "{rel}: {line}");
                assert!(f[1].parse::<i64>().is_ok(), "{rel}: {line}");
                v.push(format!("{conv}|{},{}", f[0], f[2..].join(",")));
            }
        }
    }
    v.sort();
    v
}

fn offline_tree(files: &[&str]) -> Vec<String> {
    let mut all = Vec::new();
    for f in files {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(IMSCAN)
            .args(["-F", "imspector", "-o"])
            .arg(dir.path())
            .arg(fixture(f))
            .output()
            .expect("offline imscan");
        assert_eq!(out.status.code(), Some(0), "offline run of {f}");
        all.extend(tree_projection(dir.path()));
    }
    all.sort();
    all
}

#[test]
fn full_disk_under_the_imspector_tree_is_counted_and_writing_resumes() {
    full_disk_run("fulltree", "imspector", tree_projection, offline_tree);
}

/// Every IMSpector line of a tree: (path below the tree, line).
fn tree_lines(dir: &Path) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                // Day files only (protocol/local/remote/day), not the manifest.
                if rel.split('/').count() != 4 {
                    continue;
                }
                for line in std::fs::read_to_string(&path).unwrap().lines() {
                    v.push((rel.clone(), line.to_string()));
                }
            }
        }
    }
    v.sort();
    v
}

#[test]
fn imspector_day_files_roll_over_at_the_zones_midnight_by_capture_time() {
    // Offline, on a generated IRC conversation whose frames are 4 s apart
    // and straddle 2009-07-20T22:00:00Z, which is midnight at +02:00 (and
    // in Berlin, on summer time). The live run uses the same path from the
    // engine's events to the day files.
    use support::packet::{pcap_of, Conversation, Side};
    const MIDNIGHT: i64 = 1_248_127_200;
    let mut c = Conversation::between("10.0.0.7:40000", "10.0.0.1:6667").start_at(
        imscan::time::Timestamp::from_secs_nanos(MIDNIGHT - 30, 0),
        4_000_000_000,
    );
    c.handshake();
    for (client, text) in [
        (true, "NICK dave\r\nUSER dave 0 * :D\r\n"),
        (true, "PRIVMSG erin :before\r\n"),
        (false, ":erin!e@h PRIVMSG dave :around\r\n"),
        (true, "PRIVMSG erin :after\r\n"),
        (false, ":erin!e@h PRIVMSG dave :reply\r\n"),
    ] {
        let side = Side::of(client);
        c.send(side, text.as_bytes(), 1460);
        c.ack(side.peer());
    }
    c.close();
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("midnight.pcap");
    std::fs::write(&capture, pcap_of([&c])).unwrap();
    let run = |tz: &str| {
        let tree = tempfile::tempdir().unwrap();
        let out = Command::new(IMSCAN)
            .args(["-F", "imspector", "--tz", tz, "-o"])
            .arg(tree.path())
            .arg(&capture)
            .output()
            .expect("imscan");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tree_lines(tree.path())
    };
    let line = |secs: i64, outgoing: u8, text: &str| {
        format!("10.0.0.7:40000,{secs},{outgoing},1,0,,{text}")
    };
    let (before, around, after, reply) = (
        line(MIDNIGHT - 10, 1, "before"),
        line(MIDNIGHT - 2, 0, "around"),
        line(MIDNIGHT + 6, 1, "after"),
        line(MIDNIGHT + 14, 0, "reply"),
    );
    let at = |day: &str, l: &String| (format!("IRC/dave/erin/{day}"), l.clone());
    let sorted = |mut v: Vec<(String, String)>| {
        v.sort();
        v
    };
    let split = sorted(vec![
        at("2009-07-20", &before),
        at("2009-07-20", &around),
        at("2009-07-21", &after),
        at("2009-07-21", &reply),
    ]);
    assert_eq!(run("+02:00"), split);
    assert_eq!(run("Europe/Berlin"), split);
    assert_eq!(
        run("utc"),
        sorted(vec![
            at("2009-07-20", &before),
            at("2009-07-20", &around),
            at("2009-07-20", &after),
            at("2009-07-20", &reply),
        ])
    );
}

#[test]
fn imspector_day_files_roll_over_at_midnight_during_a_live_run() {
    // Live frames carry the host clock, so the test picks a zone whose
    // midnight comes a few seconds from now (a POSIX TZ offset to the
    // second, read through `--tz local`), replays IRC before it and XMPP
    // after it, and looks at the day files before stopping.
    let Some(ns) = Netns::new("midnight") else {
        return;
    };
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
    };
    let midnight = unix_now().as_secs() as i64 + 6;
    // The zone's offset east of UTC (|offset| <= 12 h) that puts its
    // midnight at `midnight`; POSIX TZ strings count west of UTC.
    let mut east = (-midnight).rem_euclid(86_400);
    if east > 43_200 {
        east -= 86_400;
    }
    let west = -east;
    let tz = format!(
        "IMS{}{:02}:{:02}:{:02}",
        if west < 0 { '-' } else { '+' },
        west.abs() / 3600,
        west.abs() / 60 % 60,
        west.abs() % 60
    );
    let day = |secs: i64| {
        let (y, m, d, ..) = imscan::time::civil_from_secs(secs + east);
        format!("{y:04}-{m:02}-{d:02}")
    };
    let (day_before, day_after) = (day(midnight - 1), day(midnight));
    assert_ne!(day_before, day_after);
    let dir = tempfile::tempdir().unwrap();
    let imscan = ns.imscan(
        &[
            "-F",
            "imspector",
            "-o",
            dir.path().to_str().unwrap(),
            "--tz",
            "local",
            "--stats",
        ],
        &[("TZ", &tz)],
    );
    ns.replay(IRC, 1);
    assert!(
        (unix_now().as_secs() as i64) < midnight,
        "the IRC replay ended after the zone's midnight: too slow a machine for this test"
    );
    let wait = Duration::from_secs(midnight as u64) + Duration::from_millis(300);
    std::thread::sleep(wait.saturating_sub(unix_now()));
    ns.replay(XMPP, 1);
    // Before any stop, within the flush interval: a quiet link holds no
    // line back, on either side of midnight.
    std::thread::sleep(Duration::from_millis(1500));
    let seen = tree_lines(dir.path());
    let (code, stderr) = imscan.stop();
    let lost = assert_exit_follows_losses(code, &stderr);
    let mut irc = 0;
    let mut xmpp = 0;
    for (rel, line) in &seen {
        let secs: i64 = line.split(',').nth(1).unwrap().parse().unwrap();
        let want = if secs < midnight {
            &day_before
        } else {
            &day_after
        };
        assert!(
            rel.ends_with(want.as_str()),
            "{rel}: {line} (midnight {midnight}, TZ={tz})"
        );
        if rel.starts_with("IRC/") {
            assert!(rel.ends_with(day_before.as_str()), "{rel}");
            irc += 1;
        } else if rel.starts_with("Jabber/") {
            assert!(rel.ends_with(day_after.as_str()), "{rel}");
            xmpp += 1;
        }
    }
    assert!(irc > 0 && xmpp > 0, "{seen:?}");
    if lost == 0 {
        assert_eq!(irc, offline(&[IRC]).len());
        assert_eq!(xmpp, offline(&[XMPP]).len());
        // The stop added nothing: every line was out before it.
        assert_eq!(tree_lines(dir.path()), seen);
    }
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
    let (code, stderr) = imscan.stop();
    assert_exit_follows_losses(code, &stderr);
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
