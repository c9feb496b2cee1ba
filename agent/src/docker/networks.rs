//! Networks: the bridge network the agent's servers share, inspected and created on demand.

use super::http::encode;
use super::{DockerClient, DockerError, Missing, decode, to_json};
use http::Method;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The bridge option that turns inter-container traffic on the network off.
pub const ICC_OPTION: &str = "com.docker.network.bridge.enable_icc";

/// `GET /networks/{id}` (the fields the agent checks).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInspect {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub driver: String,
    #[serde(default, deserialize_with = "super::types::null_default")]
    pub options: HashMap<String, String>,
    #[serde(default, deserialize_with = "super::types::null_default")]
    pub labels: HashMap<String, String>,
}

impl NetworkInspect {
    /// Whether containers on this network cannot reach each other.
    pub fn isolates_containers(&self) -> bool {
        self.options.get(ICC_OPTION).map(String::as_str) == Some("false")
    }
}

/// The body of `POST /networks/create`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSpec {
    pub name: String,
    pub driver: String,
    pub check_duplicate: bool,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

impl NetworkSpec {
    /// A bridge network on which containers cannot reach each other.
    pub fn isolated_bridge(name: &str, labels: BTreeMap<String, String>) -> NetworkSpec {
        NetworkSpec {
            name: name.to_owned(),
            driver: "bridge".into(),
            check_duplicate: true,
            options: BTreeMap::from([(ICC_OPTION.to_owned(), "false".to_owned())]),
            labels,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Created {
    #[serde(default)]
    id: String,
}

impl DockerClient {
    /// `GET /networks/{name}`; `None` when there is no such network.
    pub async fn network_inspect(&self, name: &str) -> Result<Option<NetworkInspect>, DockerError> {
        if name.is_empty() {
            return Err(DockerError::InvalidArgument("empty network name".into()));
        }
        match self
            .get_json(&format!("/networks/{}", encode(name)), Missing::Other)
            .await
        {
            Ok(n) => Ok(Some(n)),
            Err(DockerError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /networks/create`; returns the new network's id. A name already taken is a
    /// `Conflict`.
    pub async fn network_create(&self, spec: &NetworkSpec) -> Result<String, DockerError> {
        let body = self
            .call(
                Method::POST,
                "/networks/create",
                Some(to_json(spec)?),
                Missing::Other,
                self.timeout,
            )
            .await?;
        let created: Created = decode("POST /networks/create", body)?;
        Ok(created.id)
    }
}
