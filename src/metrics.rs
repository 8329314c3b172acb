//! Prometheus metrics for the controller.
//!
//! NOTE for the metrics engineer: this minimal file was created by the controller work
//! (issue 4) to fix the contract early; it is yours to extend. The controller relies on
//! exactly `Metrics::new()` and `Metrics::render()` (Prometheus text format) and serves
//! the result on `/metrics`. Add recording methods freely.

use prometheus::{Encoder, Registry, TextEncoder};

/// The controller's metrics registry.
pub struct Metrics {
    pub registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            registry: Registry::new(),
        }
    }

    /// Everything registered, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for I/O reasons; a metric family that cannot
        // be encoded is dropped rather than failing the scrape.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
