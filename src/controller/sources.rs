//! What the controller acts through besides the API: the fleet cloud, an optional
//! interruption feed and, in node-groups mode, the groups; stand-ins for the absent ones.

use crate::cloud::{CloudError, Interruption, InterruptionSource, NodeGroupProvider};
use std::time::Duration;

/// What the controller acts through: the fleet cloud, an optional interruption feed and,
/// in node-groups mode, the groups.
pub struct Sources<P, I, G> {
    pub cloud: P,
    pub interruptions: Option<I>,
    pub groups: Option<G>,
}

/// For `start` without node groups.
pub struct NoGroups;

impl NodeGroupProvider for NoGroups {
    fn name(&self) -> &'static str {
        "none"
    }

    async fn groups(&self) -> Result<Vec<crate::cloud::NodeGroup>, CloudError> {
        Ok(Vec::new())
    }

    async fn set_desired(&self, group: &str, _: u32) -> Result<(), CloudError> {
        Err(CloudError::Invalid {
            operation: "set_desired".into(),
            message: format!("no node groups (group {group})"),
        })
    }

    async fn terminate_instance(&self, provider_id: &str) -> Result<(), CloudError> {
        Err(CloudError::NotFound {
            provider_id: provider_id.to_string(),
        })
    }
}

/// For providers without an interruption feed.
pub struct NoInterruptions;

impl InterruptionSource for NoInterruptions {
    async fn poll(&self) -> Result<Vec<Interruption>, CloudError> {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(Vec::new())
    }
}

pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
