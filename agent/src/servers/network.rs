//! The Docker network the servers share: a bridge with inter-container traffic off, so a
//! server cannot reach its neighbours (Docker's default bridge lets it). Created on the
//! first create that needs it and re-used by every agent on the same Engine; a network of
//! that name that lets containers talk is refused rather than used.

use super::ServerError;
use crate::docker::{DockerClient, DockerError, NetworkSpec};
use std::collections::BTreeMap;

/// Label marking a network as created by an agent.
pub const LABEL_NETWORK: &str = "ctrl.network";

/// Makes sure `name` exists and isolates its containers.
pub(super) async fn ensure(docker: &DockerClient, name: &str) -> Result<(), ServerError> {
    let existing = match docker.network_inspect(name).await? {
        Some(n) => n,
        None => {
            let labels = BTreeMap::from([(LABEL_NETWORK.to_owned(), "servers".to_owned())]);
            match docker
                .network_create(&NetworkSpec::isolated_bridge(name, labels))
                .await
            {
                Ok(id) => {
                    log::info!("created the servers' network {name} ({id})");
                    return Ok(());
                }
                // Another agent on this Engine created it meanwhile: check theirs.
                Err(DockerError::Conflict { .. }) => docker
                    .network_inspect(name)
                    .await?
                    .ok_or_else(|| ServerError::Network {
                        name: name.to_owned(),
                        reason: "it vanished while being created".into(),
                    })?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    if existing.driver != "bridge" || !existing.isolates_containers() {
        return Err(ServerError::Network {
            name: name.to_owned(),
            reason: "it exists but lets containers reach each other (it must be a bridge \
                     with com.docker.network.bridge.enable_icc=false); remove it or name \
                     another network in the node config"
                .into(),
        });
    }
    Ok(())
}
