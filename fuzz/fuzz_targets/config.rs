//! Arbitrary bytes into the configuration loader: it never panics, and a rejected
//! input always says at least one thing that is wrong.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(errors) = stevedore::config::load_str(&text, "fuzz.yaml") {
        assert!(!errors.to_string().is_empty());
    }
});
