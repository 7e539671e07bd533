//! Writer throughput: 1 million events to JSON Lines (target ≤ 1 s on one
//! core) and to the IMSpector tree in a temporary directory (target ≤ 3 s),
//! plus CSV, the text transcript and the policy pass for comparison.
//!
//! The events are generated here: 200 conversations over six protocols,
//! interleaved, three capture days, 20–120 bytes of text each, a file offer
//! or typing event now and then.
//!
//! `cargo bench --bench sinks` (each benchmark takes about 10–20 s), or
//! `SINKS_CPU_TIME=1 cargo bench --bench sinks` for on-CPU seconds per
//! writer, which stay meaningful when other work shares the cores.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use imscan::capture::FrameRef;
use imscan::event::{Event, FlowId, Kind, LocalId, Protocol};
use imscan::policy::Policy;
use imscan::sink::{self, ImspectorOptions, Sink, SinkContext};
use imscan::time::Timestamp;

const EVENTS: usize = 1_000_000;
const CONVERSATIONS: usize = 200;

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn events() -> Vec<Event> {
    const WORDS: [&str; 12] = [
        "hello", "meeting", "at", "noon", "the", "build", "broke", "again,", "see", "you", "żółw",
        "ok?",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start = 1_248_000_000i64; // 2009-07-19, three days of traffic follow
    (0..EVENTS)
        .map(|i| {
            let conv = (rng.next() % CONVERSATIONS as u64) as usize;
            let protocol = Protocol::ALL[conv % 6];
            let r = rng.next();
            let kind = match r % 50 {
                0 => Kind::File,
                1 | 2 => Kind::Typing,
                _ => Kind::Message,
            };
            let client = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 0, (conv / 250) as u8, (conv % 250) as u8)),
                40_000 + conv as u16,
            );
            let server = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1 + (conv % 6) as u8)),
                5222,
            );
            let secs = start + (i as i64 * 3 * 86_400) / EVENTS as i64;
            let mut e = Event::new(
                Timestamp::from_secs_nanos(secs, (r % 1_000_000) as u32 * 1000),
                protocol,
                kind,
                r & 1 == 0,
                client,
                server,
            );
            e.local_id = LocalId::Known(format!("user{conv}@example.org").into());
            e.remote_id = format!("Peer{}@example.com", conv * 7 % 97).into();
            e.flow = FlowId(FrameRef {
                source: 0,
                index: 1 + conv as u64,
            });
            e.frames = (i as u64 * 2 + 1, i as u64 * 2 + 2);
            e.seq = i as u64;
            match kind {
                Kind::Message => {
                    let n = 4 + (r >> 8) % 16;
                    let text: Vec<&str> = (0..n)
                        .map(|k| WORDS[((r >> (k % 48)) % 12) as usize])
                        .collect();
                    e.text = Some(text.join(" "));
                    e.text_encoding = Some("utf-8");
                }
                Kind::File => {
                    e.file_name = Some(format!("report-{i}.pdf"));
                    e.file_size = Some(r % 10_000_000);
                }
                _ => {}
            }
            e
        })
        .collect()
}

fn ctx() -> SinkContext {
    SinkContext {
        inputs: vec!["bench.pcapng".into()],
        raw: false,
        color: false,
    }
}

fn run(mut s: Box<dyn Sink>, events: &[Event]) {
    for e in events {
        s.write(e).unwrap();
    }
    s.finish().unwrap();
}

fn bench_writers(c: &mut Criterion) {
    let events = events();
    let mut g = c.benchmark_group("sinks_1M_events");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(12));
    g.throughput(Throughput::Elements(EVENTS as u64));

    g.bench_function("jsonl", |b| {
        b.iter(|| run(sink::jsonl(Box::new(io::sink()), ctx()), &events))
    });
    g.bench_function("csv", |b| {
        b.iter(|| run(sink::csv(Box::new(io::sink()), ctx(), false), &events))
    });
    g.bench_function("text", |b| {
        b.iter(|| run(sink::text(Box::new(io::sink()), ctx()), &events))
    });
    g.bench_function("imspector_tree", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                run(
                    sink::imspector(dir.path(), ImspectorOptions::default()).unwrap(),
                    &events,
                );
                dir
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("imspector_tree_cache_thrashing_max_open_16", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                let opts = ImspectorOptions {
                    max_open: 16,
                    ..Default::default()
                };
                run(sink::imspector(dir.path(), opts).unwrap(), &events);
                dir
            },
            BatchSize::PerIteration,
        )
    });

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/imspector-examples");
    let policy = Policy::load(
        Some(&dir.join("badwords.txt")),
        2,
        Some(&dir.join("acl.txt")),
        true,
    )
    .unwrap();
    g.bench_function("policy_badwords_acl", |b| {
        b.iter_batched(
            || events.clone(),
            |mut evs| {
                for e in &mut evs {
                    policy.apply(e);
                }
                evs
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// On-CPU nanoseconds of this thread so far (user + system), from
/// `/proc/thread-self/schedstat`: unlike wall time it does not grow when
/// other processes share the cores.
fn thread_cpu_nanos() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// `SINKS_CPU_TIME=1 cargo bench --bench sinks`: each writer a few times,
/// best on-CPU time of one core, for a machine busy with other work.
fn cpu_time_report() {
    let events = events();
    let ctx = ctx();
    type Run<'a> = (&'static str, Box<dyn Fn() + 'a>);
    let runs: Vec<Run> = vec![
        (
            "jsonl",
            Box::new(|| run(sink::jsonl(Box::new(io::sink()), ctx.clone()), &events)),
        ),
        (
            "csv",
            Box::new(|| run(sink::csv(Box::new(io::sink()), ctx.clone(), false), &events)),
        ),
        (
            "text",
            Box::new(|| run(sink::text(Box::new(io::sink()), ctx.clone()), &events)),
        ),
        (
            "imspector_tree",
            Box::new(|| {
                let dir = tempfile::tempdir().unwrap();
                run(
                    sink::imspector(dir.path(), ImspectorOptions::default()).unwrap(),
                    &events,
                );
            }),
        ),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/imspector-examples");
    let policy = Policy::load(
        Some(&dir.join("badwords.txt")),
        2,
        Some(&dir.join("acl.txt")),
        true,
    )
    .unwrap();
    let mut runs = runs;
    runs.push((
        "policy_badwords_acl",
        Box::new(|| {
            let mut evs = events.clone();
            for e in &mut evs {
                policy.apply(e);
            }
        }),
    ));
    for (name, f) in runs {
        let mut best = u64::MAX;
        for _ in 0..3 {
            let t0 = thread_cpu_nanos().unwrap_or(0);
            f();
            best = best.min(thread_cpu_nanos().unwrap_or(0).saturating_sub(t0));
        }
        println!(
            "{name}: {:.3} s on-CPU for {EVENTS} events (best of 3)",
            best as f64 / 1e9
        );
    }
}

criterion_group!(benches, bench_writers);

fn main() {
    if std::env::var_os("SINKS_CPU_TIME").is_some() {
        cpu_time_report();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
