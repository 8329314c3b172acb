//! `/metrics`, `/healthz` and `/readyz` on one port (hyper 1).
//! `/readyz` answers 200 once every watch has listed once (the indexes are complete);
//! `/healthz` answers 500 while any loop is stuck ([`super::health::Liveness`]).

use super::health::Liveness;
use crate::cluster::watch::WatchSync;
use crate::metrics::Metrics;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

/// What `/healthz` and `/readyz` answer from.
#[derive(Clone)]
pub struct Health {
    pub sync: Arc<WatchSync>,
    pub liveness: Arc<Liveness>,
}

/// The answer to one request (no I/O; tested directly).
pub fn respond(path: &str, metrics: &Metrics, health: &Health) -> Response<Full<Bytes>> {
    let stuck = if path == "/healthz" {
        health.liveness.stuck()
    } else {
        Vec::new()
    };
    let (status, body, content_type) = match path {
        "/metrics" => (
            StatusCode::OK,
            metrics.render(),
            "text/plain; version=0.0.4",
        ),
        "/healthz" if stuck.is_empty() => (StatusCode::OK, "ok\n".to_string(), "text/plain"),
        "/healthz" => {
            let lines: Vec<String> = stuck
                .iter()
                .map(|(name, since)| {
                    format!("loop {name}: no iteration completed for {since:.0?}\n")
                })
                .collect();
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                lines.concat(),
                "text/plain",
            )
        }
        "/readyz" if health.sync.listed() => (StatusCode::OK, "ok\n".to_string(), "text/plain"),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "caches not synced\n".to_string(),
            "text/plain",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "not found\n".to_string(),
            "text/plain",
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// Serves until the listener fails. Binding errors are returned at once.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Health,
) -> Result<(), std::io::Error> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    serve_on(listener, metrics, health).await
}

pub async fn serve_on(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Health,
) -> Result<(), std::io::Error> {
    loop {
        let (stream, _) = listener.accept().await?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (m, r) = (metrics.clone(), health.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = respond(req.uri().path(), &m, &r);
                async move { Ok::<_, Infallible>(resp) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await
            {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn readyz_follows_the_sync_and_healthz_the_loops() {
        let m = Arc::new(Metrics::new());
        let health = Health {
            sync: Arc::new(WatchSync::default()),
            liveness: Arc::new(Liveness::new(m.clone())),
        };
        let status = |path| respond(path, &m, &health).status();
        assert_eq!(status("/readyz"), StatusCode::SERVICE_UNAVAILABLE);
        for k in crate::cluster::watch::WATCHED {
            health.sync.set(k, true);
        }
        assert_eq!(status("/readyz"), StatusCode::OK);
        health.liveness.register(
            "provisioning",
            std::time::Duration::from_secs(10),
            std::time::Duration::ZERO,
        );
        assert_eq!(status("/healthz"), StatusCode::OK);
        tokio::time::sleep(std::time::Duration::from_secs(31)).await;
        assert_eq!(status("/healthz"), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status("/metrics"), StatusCode::OK);
        assert_eq!(status("/nope"), StatusCode::NOT_FOUND);
    }
}
