//! Criterion benchmark of a whole simulated replay: `sim::run` on the bundled
//! `config/traces/week-100k.jsonl.gz` trace (fleet mode, seed 1, consolidation on) with
//! the bundled configuration and the embedded catalog.
//!
//! The trace, the configuration and the catalog are loaded outside the timed loop. One
//! iteration takes many seconds, so the group uses Criterion's minimum of 10 samples,
//! flat sampling (one iteration per sample). Throughput is trace events per second.
//!
//! See `benches/README.md` for the figures and how to reproduce them.

use criterion::{black_box, criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use std::path::Path;
use std::time::{Duration, Instant};
use stevedore::config;
use stevedore::sim::{self, Mode, SimOptions};
use stevedore::trace;

const TRACE: &str = "config/traces/week-100k.jsonl.gz";
const SEED: u64 = 1;

fn replay(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(TRACE);
    let trace = trace::read_path(&path).expect("bundled trace");
    let config = config::bundled();
    let catalog = sim::setup::load_catalog(&config.settings).expect("embedded catalog");
    let opts = SimOptions {
        mode: Mode::Fleet,
        seed: SEED,
        progress: false,
        consolidation: true,
        ..SimOptions::default()
    };
    let run = || sim::run(&trace, TRACE, &config, &catalog, &opts).expect("replay");
    let start = Instant::now();
    run();
    println!(
        "[replay/week-100k] events {}: one untimed replay {:.1} s",
        trace.events.len(),
        start.elapsed().as_secs_f64()
    );
    let mut g = c.benchmark_group("replay");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(60))
        .throughput(Throughput::Elements(trace.events.len() as u64));
    g.bench_function("week-100k/fleet", |b| b.iter(|| black_box(run())));
    g.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
