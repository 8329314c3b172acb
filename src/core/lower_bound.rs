//! Fluid lower bound on hourly cost (see docs/report). Implemented by the catalog helper.
