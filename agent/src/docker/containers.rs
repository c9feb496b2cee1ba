//! Container lifecycle, inspection, listing, stats and logs.

use super::events::LineSplitter;
use super::http::{ByteStream, Query, encode};
use super::mux::OutputStream;
use super::types::CreateResponse;
use super::{
    ApiVersion, ContainerInspect, ContainerSummary, CreateSpec, DockerClient, DockerError, Filters,
    LogsOptions, Missing, Stats, decode, to_json,
};
use futures_lite::StreamExt;
use http::Method;
use serde::Deserialize;
use std::time::Duration;

/// A container id or name as a path segment; empty is refused (it would hit another route).
fn segment(id: &str) -> Result<String, DockerError> {
    if id.is_empty() {
        return Err(DockerError::InvalidArgument(
            "empty container id or name".into(),
        ));
    }
    Ok(encode(id))
}

fn flag(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

impl DockerClient {
    /// `POST /containers/create?name=`; returns the new container's id. The spec is
    /// validated first (see [`CreateSpec::validate`]). A missing image is a
    /// `NotFound { what: Image }`, a taken name a `Conflict`.
    pub async fn container_create(
        &self,
        name: &str,
        spec: &CreateSpec,
    ) -> Result<String, DockerError> {
        spec.validate()?;
        let query = if name.is_empty() {
            Query::new()
        } else {
            Query::new().push("name", name)
        };
        let path = format!("/containers/create{}", query.as_str());
        let body = self
            .call(
                Method::POST,
                &path,
                Some(to_json(spec)?),
                Missing::Image,
                self.timeout,
            )
            .await?;
        let created: CreateResponse = decode("POST /containers/create", body)?;
        for warning in &created.warnings {
            log::warn!("Docker warning creating {name}: {warning}");
        }
        Ok(created.id)
    }

    /// `POST /containers/{id}/start`. Starting a running container succeeds (Docker's 304).
    pub async fn container_start(&self, id: &str) -> Result<(), DockerError> {
        let path = format!("/containers/{}/start", segment(id)?);
        self.call(Method::POST, &path, None, Missing::Container, self.timeout)
            .await
            .map(drop)
    }

    /// `POST /containers/{id}/stop?t=`: SIGTERM (or the image's stop signal), SIGKILL after
    /// `timeout_secs`. Waits that long plus the client timeout. Stopping a stopped
    /// container succeeds (Docker's 304).
    pub async fn container_stop(&self, id: &str, timeout_secs: u32) -> Result<(), DockerError> {
        let path = format!(
            "/containers/{}/stop{}",
            segment(id)?,
            Query::new().push("t", timeout_secs.to_string()).as_str()
        );
        let limit = self.timeout + Duration::from_secs(u64::from(timeout_secs));
        self.call(Method::POST, &path, None, Missing::Container, limit)
            .await
            .map(drop)
    }

    /// `POST /containers/{id}/kill?signal=` with a name ("SIGKILL", "SIGINT") or number.
    /// Docker answers `Conflict` when the container is not running.
    pub async fn container_kill(&self, id: &str, signal: &str) -> Result<(), DockerError> {
        let path = format!(
            "/containers/{}/kill{}",
            segment(id)?,
            Query::new().push("signal", signal).as_str()
        );
        self.call(Method::POST, &path, None, Missing::Container, self.timeout)
            .await
            .map(drop)
    }

    /// `DELETE /containers/{id}?force=&v=`. `force` kills a running container first;
    /// `volumes` also removes its anonymous volumes.
    pub async fn container_remove(
        &self,
        id: &str,
        force: bool,
        volumes: bool,
    ) -> Result<(), DockerError> {
        let path = format!(
            "/containers/{}{}",
            segment(id)?,
            Query::new()
                .push("force", flag(force))
                .push("v", flag(volumes))
                .as_str()
        );
        self.call(
            Method::DELETE,
            &path,
            None,
            Missing::Container,
            self.timeout,
        )
        .await
        .map(drop)
    }

    /// `GET /containers/{id}/json`.
    pub async fn container_inspect(&self, id: &str) -> Result<ContainerInspect, DockerError> {
        let path = format!("/containers/{}/json", segment(id)?);
        self.get_json(&path, Missing::Container).await
    }

    /// `GET /containers/json?all=1&filters=...`: running and stopped containers.
    pub async fn containers(
        &self,
        filters: &Filters,
    ) -> Result<Vec<ContainerSummary>, DockerError> {
        let mut query = Query::new().push("all", "1");
        if !filters.is_empty() {
            query = query.push("filters", filters.to_json());
        }
        let path = format!("/containers/json{}", query.as_str());
        // Docker has answered `null` for an empty list.
        let list: Option<Vec<ContainerSummary>> = self.get_json(&path, Missing::Other).await?;
        Ok(list.unwrap_or_default())
    }

    /// Every container carrying `label` (`key` or `key=value`), e.g. `ctrl.agent=<id>`.
    pub async fn containers_by_label(
        &self,
        label: &str,
    ) -> Result<Vec<ContainerSummary>, DockerError> {
        self.containers(&Filters::new().add("label", label)).await
    }

    /// `GET /containers/{id}/stats?stream=false`, one sample. On API ≥ 1.41 `one-shot=1`
    /// skips Docker's wait for a second CPU sample, so `precpu_stats` is empty: callers
    /// compute rates from two calls.
    pub async fn container_stats_once(&self, id: &str) -> Result<Stats, DockerError> {
        let one_shot = self.api
            >= (ApiVersion {
                major: 1,
                minor: 41,
            });
        let query = Query::new()
            .push("stream", "false")
            .push_opt("one-shot", one_shot.then_some("1"));
        let path = format!("/containers/{}/stats{}", segment(id)?, query.as_str());
        self.get_json(&path, Missing::Container).await
    }

    /// `GET /containers/{id}/logs` as demultiplexed `(StreamKind, bytes)` pieces (raw when
    /// the container has a TTY, which an inspect finds out). With `follow` the stream stays
    /// open until the container stops or the stream is dropped.
    pub async fn logs(&self, id: &str, opts: &LogsOptions) -> Result<OutputStream, DockerError> {
        let tty = self.container_inspect(id).await?.config.tty;
        let query = Query::new()
            .push("follow", flag(opts.follow))
            .push("stdout", flag(opts.stdout))
            .push("stderr", flag(opts.stderr))
            .push("timestamps", flag(opts.timestamps))
            .push_opt("since", opts.since.map(|s| s.to_string()))
            .push(
                "tail",
                opts.tail
                    .map_or_else(|| "all".to_string(), |n| n.to_string()),
            );
        let path = format!("/containers/{}/logs{}", segment(id)?, query.as_str());
        let body = self
            .open_stream(Method::GET, &path, Missing::Container)
            .await?;
        Ok(OutputStream::new(Box::pin(body), tty))
    }
}

/// One line of `POST /images/create` progress.
#[derive(Deserialize)]
struct PullLine {
    #[serde(default)]
    error: Option<String>,
    #[serde(rename = "errorDetail", default)]
    error_detail: Option<PullErrorDetail>,
}

#[derive(Deserialize)]
struct PullErrorDetail {
    #[serde(default)]
    message: Option<String>,
}

/// Pull progress lines are a few hundred bytes.
const MAX_PULL_LINE: usize = 256 * 1024;

/// Reads a pull's progress stream to its end; the first `error` line fails the pull.
pub(crate) async fn check_pull_progress(
    image: &str,
    mut body: ByteStream,
) -> Result<(), DockerError> {
    let mut lines = LineSplitter::new(MAX_PULL_LINE);
    let mut ended = false;
    loop {
        let line = match lines.next_line() {
            Some(line) => line?,
            None if ended => match lines.take_rest() {
                Some(rest) => rest,
                None => return Ok(()),
            },
            None => {
                match body.next().await {
                    Some(chunk) => lines.push(&chunk?),
                    None => ended = true,
                }
                continue;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let progress: PullLine = decode("the pull progress", line)?;
        let message = progress
            .error_detail
            .and_then(|d| d.message)
            .or(progress.error);
        if let Some(message) = message {
            return Err(DockerError::ImagePull {
                image: image.to_string(),
                failure: super::PullFailure::classify(image, &message),
            });
        }
    }
}
