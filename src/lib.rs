//! stevedore: a Kubernetes node autoscaler. See README.md for the architecture tour.

pub mod catalog;
pub mod cloud;
#[cfg(feature = "controller")]
pub mod cluster;
pub mod config;
#[cfg(feature = "controller")]
pub mod controller;
pub mod core;
#[cfg(feature = "controller")]
pub mod metrics;
pub mod sim;
pub mod trace;
