//! stevedore: a Kubernetes node autoscaler. See README.md for the architecture tour.

pub mod catalog;
pub mod cloud;
#[cfg(feature = "controller")]
pub mod cluster;
pub mod config;
pub mod core;
#[cfg(feature = "controller")]
pub mod controller;
#[cfg(feature = "controller")]
pub mod metrics;
pub mod sim;
pub mod trace;
