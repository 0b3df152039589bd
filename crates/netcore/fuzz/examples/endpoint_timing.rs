//! Times the `endpoint` target's body outside libFuzzer: every input file in the directories
//! given, `NETCORE_TIMING_ROUNDS` times over (default 3), then the mean time per input. Built
//! without coverage instrumentation it shows what the body itself costs, and `perf record`
//! on it shows where (docs/RELIABILITY.md, "The endpoint target's speed"). From
//! `crates/netcore/fuzz` (its own target dir, so the fuzz builds' flags do not clash):
//!
//!   RUSTFLAGS="--cfg fuzzing" cargo +nightly run --release --target-dir target/timing \
//!       --example endpoint_timing -- seeds/endpoint corpus/endpoint
//!
//! `NETCORE_TIMING_OPS=1` prints the time per op kind and per end-of-input check instead;
//! `NETCORE_TIMING_TOP=N` adds the N slowest inputs, each with where its time went.
// A timing harness measures wall time; the sans-IO rule against `Instant` is for the library.
#![allow(clippy::disallowed_types)]

#[cfg(fuzzing)]
use std::time::Instant;

/// Without `--cfg fuzzing` the harness module it times does not exist.
#[cfg(not(fuzzing))]
fn main() {
    eprintln!("build with RUSTFLAGS=\"--cfg fuzzing\" (see the top of this file)");
    std::process::exit(2);
}

#[cfg(fuzzing)]
fn main() {
    let mut inputs = Vec::new();
    for dir in std::env::args().skip(1) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("cannot read {dir}");
            std::process::exit(2);
        };
        for e in entries.flatten() {
            if let Ok(bytes) = std::fs::read(e.path()) {
                inputs.push(bytes);
            }
        }
    }
    if inputs.is_empty() {
        eprintln!("usage: endpoint_timing DIR...");
        std::process::exit(2);
    }
    let rounds: usize = std::env::var("NETCORE_TIMING_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    if std::env::var("NETCORE_TIMING_OPS").is_ok() {
        netcore::endpoint::fuzz_checks::endpoint(&inputs[0]);
        by_op(&inputs);
        return;
    }
    // The first pass builds the thread's snapshot and fills the crypto memo.
    netcore::endpoint::fuzz_checks::endpoint(&inputs[0]);
    let started = Instant::now();
    for _ in 0..rounds {
        for i in &inputs {
            netcore::endpoint::fuzz_checks::endpoint(i);
        }
    }
    let n = rounds * inputs.len();
    let secs = started.elapsed().as_secs_f64();
    // The slowest inputs, once each, with where their time goes.
    if let Ok(top) = std::env::var("NETCORE_TIMING_TOP") {
        let top: usize = top.parse().unwrap_or(10);
        let mut each: Vec<(f64, usize)> = inputs
            .iter()
            .enumerate()
            .map(|(k, i)| {
                // The least of three: the machine is shared, and a preempted run says nothing.
                let us = (0..3)
                    .map(|_| {
                        let t = Instant::now();
                        netcore::endpoint::fuzz_checks::endpoint(i);
                        t.elapsed().as_secs_f64() * 1e6
                    })
                    .fold(f64::INFINITY, f64::min);
                (us, k)
            })
            .collect();
        each.sort_by(|a, b| b.0.total_cmp(&a.0));
        let total: f64 = each.iter().map(|e| e.0).sum();
        for (k, (us, i)) in each.iter().take(top).enumerate() {
            println!(
                "{k}: {us:.0} us, {} bytes: {}",
                inputs[*i].len(),
                hex(&inputs[*i])
            );
            phases(&inputs[*i]);
        }
        let top_share: f64 = each.iter().take(each.len() / 10).map(|e| e.0).sum();
        println!(
            "slowest tenth: {:.0} % of the time",
            100.0 * top_share / total
        );
    }
    println!(
        "{n} inputs ({} files) in {secs:.2} s: {:.1} us each, {:.0} inputs/s",
        inputs.len(),
        secs * 1e6 / n as f64,
        n as f64 / secs
    );
}

#[cfg(fuzzing)]
fn hex(b: &[u8]) -> String {
    b.iter().take(48).map(|x| format!("{x:02x}")).collect()
}

/// Where one input's time goes: its ops, then the final check (simulated time too).
#[cfg(fuzzing)]
fn phases(input: &[u8]) {
    use netcore::endpoint::fuzz_checks::{from_bytes, Harness};
    let (start, ops) = from_bytes(input);
    let t = Instant::now();
    let mut h = Harness::start(start);
    let sim0 = h.net.now;
    for op in &ops {
        h.play(op);
        h.check_bounds();
    }
    let t_ops = t.elapsed();
    let sim1 = h.net.now;
    let promised = h.liveness_promised();
    let t = Instant::now();
    h.finish();
    println!(
        "   {start:?}, {} ops: {:?} ({:?} simulated); promised {promised}; check {:?} ({:?} simulated)",
        ops.len(),
        t_ops,
        sim1.saturating_since(sim0),
        t.elapsed(),
        h.net.now.saturating_since(sim1),
    );
}

/// Time per op kind and per final phase over all inputs (NETCORE_TIMING_OPS=1).
#[cfg(fuzzing)]
fn by_op(inputs: &[Vec<u8>]) {
    use netcore::endpoint::fuzz_checks::{from_bytes, Harness};
    use std::collections::BTreeMap;
    let mut t: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    let mut c2: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut add = |k: &str, d: f64| {
        let e = t.entry(k.to_string()).or_default();
        e.0 += 1;
        e.1 += d;
    };
    for input in inputs {
        let c2 = &mut c2;
        let (start, ops) = from_bytes(input);
        let s = Instant::now();
        let mut h = Harness::start(start);
        add(&format!("start {start:?}"), s.elapsed().as_secs_f64());
        let counts = std::rc::Rc::new(std::cell::Cell::new((0u64, 0u64)));
        if let Some(mut inner) = h.net.tap.take() {
            let c = counts.clone();
            h.net.tap = Some(Box::new(move |dir, flight| {
                let (halves, datagrams) = c.get();
                c.set((halves + 1, datagrams + flight.len() as u64));
                inner(dir, flight)
            }));
        }
        let mut last = (0u64, 0u64);
        let mut count = |k: &str| {
            let now = counts.get();
            let e = c2.entry(k.to_string()).or_insert((0, 0));
            e.0 += now.0 - last.0;
            e.1 += now.1 - last.1;
            last = now;
        };
        for op in &ops {
            let name = format!("{op:?}");
            let name = name
                .split([' ', '{', '('])
                .next()
                .unwrap_or("?")
                .to_string();
            let s = Instant::now();
            h.play(op);
            add(&name, s.elapsed().as_secs_f64());
            count(&name);
            let s = Instant::now();
            h.check_bounds();
            add("check_bounds", s.elapsed().as_secs_f64());
        }
        let s = Instant::now();
        let what = if h.liveness_promised() {
            "finish: liveness"
        } else {
            "finish: no liveness"
        };
        h.finish();
        add(what, s.elapsed().as_secs_f64());
        count(what);
        let s = Instant::now();
        drop(h);
        add("drop", s.elapsed().as_secs_f64());
    }
    let total: f64 = t.values().map(|v| v.1).sum();
    for (k, (n, d)) in &t {
        let (halves, datagrams) = c2.get(k).copied().unwrap_or_default();
        println!(
            "{k:24} {n:8} x {:8.1} us = {:5.1} %; {:.1} rounds, {:.1} datagrams each",
            d * 1e6 / *n as f64,
            100.0 * d / total,
            halves as f64 / 2.0 / *n as f64,
            datagrams as f64 / *n as f64,
        );
    }
    println!("per input: {:.1} us", total * 1e6 / inputs.len() as f64);
}
