//! `stevedore record`: the cluster's pod arrivals and departures as a trace (format v1),
//! written with the trace writer so the file always reads back. Pods present when
//! recording starts are added at `t = 0`; pods that do not convert are skipped (and so
//! are their deletions), with a warning.

use crate::trace::{RawEvent, RawEventKind, TraceHeader};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::Event;
use kube::ResourceExt;
use serde_json::Value;
use std::collections::HashSet;

#[derive(Default)]
pub struct Recorder {
    seen: HashSet<(String, String)>,
    /// The first list is complete: what it returned was there at the start.
    listed: bool,
    pub events: Vec<RawEvent>,
    pub skipped: usize,
}

/// The pod as recorded: what the API returned, without server bookkeeping or status.
fn clean(p: &Pod) -> Option<Value> {
    let mut v = serde_json::to_value(p).ok()?;
    let obj = v.as_object_mut()?;
    obj.remove("status");
    if let Some(md) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        md.remove("managedFields");
    }
    Some(v)
}

impl Recorder {
    /// Takes one watch event at `t` seconds since the start.
    pub fn observe(&mut self, event: Event<Pod>, t: f64) {
        match event {
            // The cluster as it was when recording started is the trace's t = 0.
            Event::InitApply(p) if !self.listed => self.added(&p, 0.0),
            Event::Apply(p) | Event::InitApply(p) => self.added(&p, t),
            Event::Delete(p) => {
                let key = (p.namespace().unwrap_or_default(), p.name_any());
                if self.seen.remove(&key) {
                    self.events.push(RawEvent {
                        t,
                        kind: RawEventKind::PodDeleted {
                            namespace: key.0,
                            name: key.1,
                        },
                    });
                }
            }
            Event::InitDone => self.listed = true,
            Event::Init => {}
        }
    }

    fn added(&mut self, p: &Pod, t: f64) {
        let key = (p.namespace().unwrap_or_default(), p.name_any());
        // DaemonSet pods and pods already seen (updates) are not arrivals.
        if self.seen.contains(&key) || p.metadata.deletion_timestamp.is_some() {
            return;
        }
        let Some(v) = clean(p) else {
            self.skipped += 1;
            return;
        };
        if let Err(e) = crate::trace::pod_from_json(&v) {
            tracing::warn!(pod = %format!("{}/{}", key.0, key.1), error = %e, "not recorded");
            self.skipped += 1;
            return;
        }
        self.seen.insert(key);
        self.events.push(RawEvent {
            t,
            kind: RawEventKind::PodAdded {
                pod: v,
                run_for_s: None,
            },
        });
    }

    pub fn write<W: std::io::Write>(&self, w: W, name: &str, start: &str) -> std::io::Result<()> {
        let mut header = TraceHeader::new(name);
        header.source = Some("stevedore record".into());
        header.start = Some(start.into());
        crate::trace::write_to(w, &header, &self.events)
    }
}

/// Records until `duration` passes (or Ctrl-C), then writes `out`.
pub async fn record(
    client: kube::Client,
    out: &std::path::Path,
    duration: Option<std::time::Duration>,
) -> Result<usize, super::ControllerError> {
    use futures::StreamExt;
    let api: kube::Api<Pod> = kube::Api::all(client);
    let stream = kube::runtime::watcher::watcher(api, Default::default());
    futures::pin_mut!(stream);
    let started = tokio::time::Instant::now();
    let start = crate::cluster::rfc3339(crate::cluster::wall_clock());
    let mut rec = Recorder::default();
    let stop = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            item = stream.next() => match item {
                Some(Ok(ev)) => rec.observe(ev, started.elapsed().as_secs_f64()),
                Some(Err(e)) => tracing::warn!(error = %e, "watch error; retrying"),
                None => break,
            },
        }
    }
    let file = std::fs::File::create(out)?;
    let name = out
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("recorded")
        .trim_end_matches(".jsonl");
    rec.write(file, name, &start)?;
    Ok(rec.events.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, cpu: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop", "managedFields": [{"manager": "kubectl"}]},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
            "status": {"phase": "Pending"}
        }))
        .unwrap()
    }

    #[test]
    fn arrivals_and_departures_round_trip_through_the_reader() {
        let mut r = Recorder::default();
        r.observe(Event::InitApply(pod("a", "1")), 0.0);
        r.observe(Event::InitDone, 0.0);
        r.observe(Event::Apply(pod("b", "500m")), 5.0);
        r.observe(Event::Apply(pod("b", "500m")), 6.0); // an update, not an arrival
        r.observe(Event::Apply(pod("bad", "lots")), 7.0);
        r.observe(Event::Delete(pod("a", "1")), 9.5);
        r.observe(Event::Delete(pod("never-seen", "1")), 10.0);
        assert_eq!(r.events.len(), 3);
        assert_eq!(r.skipped, 1);
        let mut buf = Vec::new();
        r.write(&mut buf, "rec", "2026-01-01T00:00:00Z").unwrap();
        let trace =
            crate::trace::read_from(std::io::BufReader::new(&buf[..]), "rec.jsonl").unwrap();
        assert_eq!(trace.events.len(), 3);
        assert!(!String::from_utf8(buf).unwrap().contains("managedFields"));
    }
}
