//! Arbitrary bytes (plain or gzip) into the trace reader: it must return, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(trace) = stevedore::trace::read_from(data, "fuzz.jsonl") {
        // Accepted traces honour the reader's promises.
        let mut last = 0.0;
        for ev in &trace.events {
            assert!(ev.t.is_finite() && ev.t >= last);
            last = ev.t;
            if let stevedore::trace::EventKind::PodAdded { pod, .. } = &ev.kind {
                assert_eq!(pod.requests.pods, 1);
                assert!(pod.requests.cpu_milli >= 0 && pod.requests.memory >= 0);
            }
        }
    }
});
