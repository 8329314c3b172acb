//! The Kubernetes shell around the decision core: custom resources, conversion of API
//! objects, the in-memory indexes the watches fill, leader election and the table of API
//! calls the controller makes (for RBAC).

pub mod convert;
pub mod crd;
pub mod lease;
pub mod metered;
pub mod pod_index;
pub mod rbac;
pub mod state;
pub mod watch;

/// Seconds since the Unix epoch on the wall clock: the only place the controller reads
/// it, and only at the shell; decisions get it passed in.
pub fn wall_clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// RFC 3339 for a time in seconds since the Unix epoch (condition and event times).
pub fn rfc3339(t: f64) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond((t * 1000.0) as i64)
        .map(|ts| ts.to_string())
        .unwrap_or_default()
}
