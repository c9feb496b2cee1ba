//! The stored egg: one shape for our own eggs and for imported Pterodactyl/Pelican exports.
//!
//! This is what the panel keeps in its egg library and answers on `GET /api/eggs/{id}`, and
//! it is also "our own egg" format accepted by `POST /api/eggs` (an object without
//! `meta.version`). The parts the agent needs travel inside `create_server`'s `eggConfig`
//! ([`InstallScript`], [`ConfigFile`], done strings, stop).

use serde::{Deserialize, Serialize};

/// An egg in the library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredEgg {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub author: String,
    /// Docker images, in the egg's order; the first one is the default.
    pub images: Vec<EggImage>,
    /// Startup lines (Pelican: several, named); the first one is the default.
    pub startups: Vec<Startup>,
    #[serde(default)]
    pub variables: Vec<Variable>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Console substrings that mark the server as up (`starting` → `running`). Empty: the
    /// server counts as running as soon as its container is.
    #[serde(default)]
    pub done: Vec<String>,
    #[serde(default)]
    pub config_files: Vec<ConfigFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<InstallScript>,
    /// Panel feature flags of the source egg (`eula`, `java_version`, …), kept for display.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

impl StoredEgg {
    /// The default image (the first one).
    pub fn default_image(&self) -> &EggImage {
        &self.images[0]
    }

    /// An image by label or by reference.
    pub fn image(&self, label_or_ref: &str) -> Option<&EggImage> {
        self.images
            .iter()
            .find(|i| i.label == label_or_ref)
            .or_else(|| self.images.iter().find(|i| i.image == label_or_ref))
    }

    /// A startup line by name; `None` picks the default (the first one).
    pub fn startup(&self, name: Option<&str>) -> Option<&Startup> {
        match name {
            None => self.startups.first(),
            Some(n) => self.startups.iter().find(|s| s.name == n),
        }
    }
}

/// One Docker image choice: a label shown to users and the reference to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EggImage {
    pub label: String,
    pub image: String,
}

/// A named startup line (`{{VAR}}` placeholders name the egg's variables).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Startup {
    pub name: String,
    pub command: String,
}

/// A user-settable environment variable of the egg.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Variable {
    /// Display name.
    pub name: String,
    /// The environment variable (`SERVER_JARFILE`).
    pub env: String,
    #[serde(default)]
    pub default: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "yes")]
    pub user_viewable: bool,
    #[serde(default = "yes")]
    pub user_editable: bool,
    /// Laravel-style rules, one per element (`["required", "string", "max:20"]`); see
    /// [`super::rules`].
    #[serde(default)]
    pub rules: Vec<String>,
}

fn yes() -> bool {
    true
}

/// How the server is stopped: a console command, or a signal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Stop {
    /// A console line such as `stop`.
    Command(String),
    /// A signal name (`SIGINT`); Pterodactyl's `^C` is `SIGINT`.
    Signal(String),
}

/// A configuration file the agent edits before every start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Relative to the server root, normalised (`config/paper.yml`): no leading `/`, no `.`
    /// or `..` components.
    pub path: String,
    pub parser: ParserKind,
    pub edits: Vec<Edit>,
}

/// The file formats the public eggs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParserKind {
    Properties,
    #[serde(alias = "yml")]
    Yaml,
    Json,
    Ini,
    Xml,
    File,
}

impl ParserKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ParserKind::Properties => "properties",
            ParserKind::Yaml => "yaml",
            ParserKind::Json => "json",
            ParserKind::Ini => "ini",
            ParserKind::Xml => "xml",
            ParserKind::File => "file",
        }
    }

    /// Parses an egg's `parser` value (`yml` is Wings' alias of `yaml`).
    pub fn parse(s: &str) -> Option<ParserKind> {
        Some(match s {
            "properties" => ParserKind::Properties,
            "yaml" | "yml" => ParserKind::Yaml,
            "json" => ParserKind::Json,
            "ini" => ParserKind::Ini,
            "xml" => ParserKind::Xml,
            "file" => ParserKind::File,
            _ => return None,
        })
    }
}

/// One find/replace of a configuration file.
///
/// `match` is a key (`server-port`), a dotted path (`settings.port`, `listeners[0].host`,
/// `servers.*.address`) or, for the `file` parser, a line prefix. `value` may contain
/// placeholders (`{{server.allocations.default.port}}`, `{{env.NAME}}`). With `ifValue` the
/// edit applies only when the current value equals it, or, as `regex:<re>`, matches it (the
/// value then replaces the matches, `$1` naming groups).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Edit {
    #[serde(rename = "match")]
    pub key: String,
    pub value: EditValue,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_value: Option<String>,
}

/// A replacement value as the egg typed it: JSON/YAML targets write numbers and booleans
/// bare when the egg (or the existing value) says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EditValue {
    Bool(bool),
    Number(serde_json::Number),
    Text(String),
}

impl EditValue {
    /// The value as text (what `properties`, `ini` and `file` write).
    pub fn as_text(&self) -> String {
        match self {
            EditValue::Bool(b) => b.to_string(),
            EditValue::Number(n) => n.to_string(),
            EditValue::Text(s) => s.clone(),
        }
    }
}

impl From<&str> for EditValue {
    fn from(s: &str) -> Self {
        EditValue::Text(s.to_owned())
    }
}

/// The installation script, run once on create and on reinstall in its own container with
/// the server's volume at `/mnt/server`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallScript {
    /// The install container's image.
    pub image: String,
    /// The interpreter the script is handed to (`bash`, `ash`, `/bin/bash`).
    pub entrypoint: String,
    pub script: String,
}
