//! Quantity strings into the core parsers: no panic, and every accepted value prints
//! back (as a plain integer) to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stevedore::core::quantity::{parse_cpu_milli, parse_units};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(n) = parse_units(s) {
        assert_eq!(parse_units(&n.to_string()), Ok(n), "units {s:?}");
        assert_eq!(
            parse_cpu_milli(&format!("{n}m")),
            Ok(n),
            "units {s:?} as millis"
        );
    }
    if let Ok(m) = parse_cpu_milli(s) {
        assert_eq!(parse_cpu_milli(&format!("{m}m")), Ok(m), "cpu {s:?}");
    }
});
