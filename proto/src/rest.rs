//! The REST bodies of the protocol: agent registration and token refresh, and the operator
//! API's error envelope.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::ErrorCode;
use crate::quantity::Bytes;
use crate::validate::ValidationError;

/// `POST /api/agents/register` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub name: String,
    pub hostname: String,
    pub port: u16,
    pub capabilities: Capabilities,
    /// Extension (node health): operator labels (`agent register --label region=eu`) that
    /// `"constraints"` on `POST /api/servers` match. See [`validate_labels`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Most labels (or constraints) one agent (or server) may carry.
pub const MAX_LABELS: usize = 32;

/// Labels and constraints: at most [`MAX_LABELS`]; keys 1 to 63 of letters, digits, `.`,
/// `_`, `-`, `/`; values 0 to 63 of letters, digits, `.`, `_`, `-`. `field` names the map in
/// the error (`labels`, `constraints`).
pub fn validate_labels(
    field: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(), RegistrationError> {
    if labels.len() > MAX_LABELS {
        return Err(RegistrationError(reg_err(
            field,
            &format!("at most {MAX_LABELS} entries"),
        )));
    }
    let ok = |s: &str, extra: &[u8]| {
        s.len() <= 63
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c) || extra.contains(&c))
    };
    for (k, v) in labels {
        if k.is_empty() || !ok(k, b"/") {
            return Err(RegistrationError(reg_err(
                &format!("{field}.{}", k.chars().take(63).collect::<String>()),
                "keys are 1 to 63 of letters, digits, '.', '_', '-' and '/'",
            )));
        }
        if !ok(v, b"") {
            return Err(RegistrationError(reg_err(
                &format!("{field}.{k}"),
                "values are at most 63 of letters, digits, '.', '_' and '-'",
            )));
        }
    }
    Ok(())
}

/// What a node offers, detected by `agent register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// A quantity such as `"16GB"`.
    pub max_memory: String,
    pub max_cpu_cores: u32,
    pub docker_version: String,
    pub supported_architectures: Vec<String>,
}

/// `POST /api/agents/register` success body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub success: bool,
    pub agent: RegisteredAgent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredAgent {
    pub id: String,
    pub token: String,
    pub websocket_url: String,
    pub refresh_token: String,
}

/// `POST /api/agents/refresh` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// `POST /api/agents/refresh` success body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshResponse {
    pub success: bool,
    pub agent: RefreshedAgent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshedAgent {
    pub id: String,
    pub token: String,
    pub refresh_token: String,
}

/// `{"success": false, "error": {"code", "message"}}` — every failed operator API call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub success: bool,
    pub error: ApiErrorBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            success: false,
            error: ApiErrorBody {
                code: code.as_str().to_owned(),
                message: message.into(),
            },
        }
    }
}

fn reg_err(field: &str, reason: &str) -> ValidationError {
    ValidationError::Egg {
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

impl RegisterRequest {
    /// Checks every field; errors map to `CONFIG_INVALID` with the field named.
    pub fn validate(&self) -> Result<(), RegistrationError> {
        let bad = |field: &str, reason: &str| Err(RegistrationError(reg_err(field, reason)));
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c));
        if !name_ok {
            return bad(
                "name",
                "must be 1 to 64 of letters, digits, '.', '_' and '-'",
            );
        }
        let host_ok = !self.hostname.is_empty()
            && self.hostname.len() <= 253
            && self
                .hostname
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b".-:[]".contains(&c));
        if !host_ok {
            return bad("hostname", "must be a host name or IP address");
        }
        if self.port == 0 {
            return bad("port", "must be 1..=65535");
        }
        let caps = &self.capabilities;
        match Bytes::parse(&caps.max_memory) {
            Ok(b) if b.0 > 0 => {}
            _ => {
                return bad(
                    "capabilities.maxMemory",
                    "must be a quantity such as \"16GB\"",
                );
            }
        }
        if caps.max_cpu_cores == 0 || caps.max_cpu_cores > 4096 {
            return bad("capabilities.maxCpuCores", "must be 1..=4096");
        }
        if caps.docker_version.is_empty() || caps.docker_version.len() > 64 {
            return bad("capabilities.dockerVersion", "must be 1 to 64 characters");
        }
        let arch_ok = caps.supported_architectures.len() <= 16
            && caps.supported_architectures.iter().all(|a| {
                !a.is_empty()
                    && a.len() <= 32
                    && a.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'/')
            });
        if !arch_ok {
            return bad(
                "capabilities.supportedArchitectures",
                "at most 16 names like \"amd64\"",
            );
        }
        validate_labels("labels", &self.labels)
    }
}

/// A registration body that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RegistrationError(pub ValidationError);

impl RegistrationError {
    pub fn code(&self) -> ErrorCode {
        ErrorCode::ConfigInvalid
    }
}
