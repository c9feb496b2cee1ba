//! Pulling a missing image for a server, with `image_pull_progress` events.
//!
//! Only when the image is not on the node, and only from a registry the node allows
//! (`registry::check_pull`: no private addresses unless listed). Docker's progress lines
//! are summed over the image's layers and sent at most once a second per pull, plus once
//! when the pull ends, so a pull of hundreds of layers costs the panel a few events. A
//! failed pull is a `DOCKER_ERROR` naming the image, with the registry's own words when
//! they cannot carry another service's answer (`docker::registry_words`).

use super::server::event;
use super::{Inner, ServerError, registry};
use crate::docker::{DockerClient, PullStatus};
use proto::{EventKind, ImagePullProgress};
use std::borrow::Cow;
use std::time::{Duration, Instant};

/// Least time between two progress events of one pull.
const EVERY: Duration = Duration::from_secs(1);
/// Layers followed per pull; more are counted in no total (no image has this many).
const MAX_LAYERS: usize = 512;
/// Longest status text sent.
const MAX_STATUS: usize = 128;

/// Pulls `image` for server `sid` unless the node has it.
pub(super) async fn ensure_image(
    inner: &Inner,
    docker: &DockerClient,
    sid: &str,
    image: &str,
) -> Result<(), ServerError> {
    if docker.image_inspect(image).await?.is_some() {
        return Ok(());
    }
    registry::check_pull(image, &inner.cfg.policy.allowed_registries).await?;
    log::info!("server {sid}: pulling image {image}");
    let mut progress = Progress::new(image);
    let send = |p: ImagePullProgress<'static>| {
        let kind = EventKind::ImagePullProgress(ImagePullProgress {
            server_id: Cow::Owned(sid.to_owned()),
            ..p
        });
        inner.outbox.push(event(&inner.agent_id, sid, kind));
    };
    let result = docker
        .image_pull_with(image, &mut |status| {
            if let Some(p) = progress.update(status, Instant::now()) {
                send(p);
            }
        })
        .await;
    send(progress.finish(result.is_ok()));
    result.map_err(Into::into)
}

/// One layer as Docker reports it.
#[derive(Debug, Clone, Default)]
struct Layer {
    id: String,
    current: u64,
    total: u64,
    done: bool,
}

/// A pull's progress summed over its layers, and when it was last sent.
#[derive(Debug)]
pub struct Progress {
    image: String,
    status: String,
    layers: Vec<Layer>,
    last_sent: Option<Instant>,
}

impl Progress {
    pub fn new(image: &str) -> Progress {
        Progress {
            image: image.to_owned(),
            status: "Pulling".into(),
            layers: Vec::new(),
            last_sent: None,
        }
    }

    /// Takes one progress line; returns an event when one is due (the first one, then at
    /// most one per [`EVERY`]).
    pub fn update(&mut self, s: PullStatus, now: Instant) -> Option<ImagePullProgress<'static>> {
        self.status = s
            .status
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_STATUS)
            .collect();
        // "Pulling from library/x" names the tag in `id`, not a layer.
        if let Some(id) = s.layer.filter(|_| !s.status.starts_with("Pulling from")) {
            self.layer_line(id, &s.status, s.current, s.total);
        }
        let due = self
            .last_sent
            .is_none_or(|t| now.duration_since(t) >= EVERY);
        due.then(|| {
            self.last_sent = Some(now);
            self.snapshot(false)
        })
    }

    fn layer_line(&mut self, id: String, status: &str, current: Option<u64>, total: Option<u64>) {
        let index = match self.layers.iter().position(|l| l.id == id) {
            Some(i) => i,
            None if self.layers.len() < MAX_LAYERS => {
                self.layers.push(Layer {
                    id,
                    ..Layer::default()
                });
                self.layers.len() - 1
            }
            None => return,
        };
        let layer = &mut self.layers[index];
        match status {
            "Downloading" => {
                layer.total = total.unwrap_or(layer.total);
                layer.current = current.unwrap_or(layer.current).min(layer.total);
            }
            "Download complete" | "Verifying Checksum" | "Extracting" => {
                layer.current = layer.total;
            }
            "Pull complete" | "Already exists" => {
                layer.current = layer.total;
                layer.done = true;
            }
            _ => {}
        }
    }

    /// The last event of the pull.
    pub fn finish(&mut self, ok: bool) -> ImagePullProgress<'static> {
        self.status = if ok { "Pull complete" } else { "Pull failed" }.into();
        if ok {
            for l in &mut self.layers {
                l.current = l.total;
                l.done = true;
            }
        }
        self.snapshot(true)
    }

    fn snapshot(&self, done: bool) -> ImagePullProgress<'static> {
        let sum = |f: fn(&Layer) -> u64| {
            self.layers
                .iter()
                .map(f)
                .fold(0u64, |a, b| a.saturating_add(b))
        };
        ImagePullProgress {
            server_id: Cow::Borrowed(""),
            image: Cow::Owned(self.image.clone()),
            status: Cow::Owned(self.status.clone()),
            layers: self.layers.len() as u64,
            layers_done: self.layers.iter().filter(|l| l.done).count() as u64,
            current: sum(|l| l.current),
            total: sum(|l| l.total),
            done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(status: &str, layer: Option<&str>, cur: Option<u64>, tot: Option<u64>) -> PullStatus {
        PullStatus {
            status: status.into(),
            layer: layer.map(Into::into),
            current: cur,
            total: tot,
        }
    }

    #[test]
    fn layers_are_summed_and_events_come_at_most_once_a_second() {
        let t0 = Instant::now();
        let mut p = Progress::new("img:1");
        let first = p.update(line("Pulling from library/img", Some("1"), None, None), t0);
        assert_eq!(first.map(|e| e.layers), Some(0), "the tag is not a layer");
        let mut sent = 0;
        for i in 0..100u64 {
            let at = t0 + Duration::from_millis(i * 20);
            let a = p.update(line("Downloading", Some("a"), Some(i * 10), Some(1000)), at);
            let b = p.update(line("Downloading", Some("b"), Some(i), Some(100)), at);
            sent += usize::from(a.is_some()) + usize::from(b.is_some());
        }
        assert!((1..=2).contains(&sent), "{sent} events in 2 s");
        let e = p
            .update(
                line("Pull complete", Some("a"), None, None),
                t0 + Duration::from_secs(3),
            )
            .unwrap();
        assert_eq!((e.layers, e.layers_done), (2, 1));
        assert_eq!((e.current, e.total), (1000 + 99, 1100));
        assert!(!e.done);
        let end = p.finish(true);
        assert!(end.done && end.layers_done == 2 && end.current == end.total);
        assert_eq!(end.status, "Pull complete");
    }

    #[test]
    fn hostile_progress_stays_bounded() {
        let mut p = Progress::new("img");
        let t = Instant::now();
        for i in 0..(MAX_LAYERS + 50) {
            p.update(line("Waiting", Some(&format!("l{i}")), None, None), t);
        }
        let huge = format!("\u{1b}[2J{}", "s".repeat(10_000));
        let e = p
            .update(
                line(&huge, Some("l0"), Some(u64::MAX), Some(u64::MAX)),
                t + EVERY,
            )
            .unwrap();
        assert_eq!(e.layers, MAX_LAYERS as u64);
        assert!(e.status.len() <= MAX_STATUS && !e.status.contains('\u{1b}'));
        let e = p
            .update(
                line("Downloading", Some("l1"), Some(u64::MAX), Some(u64::MAX)),
                t + EVERY * 2,
            )
            .unwrap();
        assert_eq!(e.total, u64::MAX, "sums saturate");
        assert!(!p.finish(false).status.is_empty());
    }
}
