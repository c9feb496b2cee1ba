//! The egg library's logic, without I/O: what `POST /api/eggs` accepts, the example egg
//! offered on the first start, and the `eggConfig` a server created from a stored egg gets.
//!
//! Three kinds of document are accepted: a Pterodactyl/Pelican export (`meta.version`),
//! our own egg (`proto::eggs::StoredEgg`), both through `proto::eggs::import`; and an
//! `eggConfig` as `POST /api/servers` takes it (an object with `image` and `startup`, no
//! `meta`), which becomes a one-image, one-startup egg whose environment is its variables
//! and whose `ports`, `limits`, `query` and `user` are kept as defaults for new servers.
//! Field mapping: panel/README.md, "Eggs".

use proto::ErrorCode;
use proto::egg::EggConfig;
use proto::eggs::{self, EggImage, Startup, Stop, StoredEgg, Variable};
use serde_json::{Map, Value, json};

use crate::store::EggRecord;

/// The example egg (the fakegame test server), offered once, on the first start.
pub const EXAMPLE_EGG: &str = include_str!("../../tests/fakegame/egg.json");
/// Its id in the library.
pub const EXAMPLE_EGG_ID: &str = "egg-fakegame";

/// Limits of a server created from an egg that names none, when the request names none.
pub const DEFAULT_LIMITS: (&str, &str, &str) = ("1024m", "1", "5g");

/// The `eggConfig` fields a stored egg has no room for, kept as defaults.
const DEFAULT_KEYS: [&str; 4] = ["ports", "limits", "query", "user"];

/// A refused document or request: the wire code and a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: ErrorCode,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> Refused {
    Refused {
        code: ErrorCode::ConfigInvalid,
        message: message.into(),
    }
}

/// A document imported into an egg record (without id and time yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    pub egg: StoredEgg,
    pub source: String,
    pub warnings: Vec<String>,
    /// `ports`, `limits`, `query`, `user` of an `eggConfig` document.
    pub defaults: Option<Value>,
}

impl Import {
    pub fn into_record(self, id: String, created_at: u64) -> EggRecord {
        EggRecord {
            id,
            source: self.source,
            created_at,
            egg: self.egg,
            warnings: self.warnings,
            defaults: self.defaults,
        }
    }
}

/// Imports an egg document (see the module docs).
pub fn import(bytes: &[u8]) -> Result<Import, Refused> {
    if let Some(egg) = as_egg_config(bytes) {
        return from_egg_config(&egg?);
    }
    let imported = eggs::import(bytes).map_err(|e| Refused {
        code: e.code(),
        message: e.to_string(),
    })?;
    Ok(Import {
        egg: imported.egg,
        source: imported.format.as_str().to_owned(),
        warnings: imported.warnings,
        defaults: None,
    })
}

/// `Some` when the document is an `eggConfig` (a JSON object without `meta` whose `image`
/// and `startup` are strings): its decoded form, or why it does not decode.
fn as_egg_config(bytes: &[u8]) -> Option<Result<Value, Refused>> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let obj = v.as_object()?;
    let looks = !obj.contains_key("meta")
        && obj.get("image").is_some_and(Value::is_string)
        && obj.get("startup").is_some_and(Value::is_string);
    looks.then_some(Ok(v))
}

/// An `eggConfig` as a stored egg with defaults. It is validated exactly as a create
/// request would be, so what is stored can be created from.
pub fn from_egg_config(value: &Value) -> Result<Import, Refused> {
    let text = value.to_string();
    let egg: EggConfig<'_> =
        serde_json::from_str(&text).map_err(|e| invalid(format!("eggConfig: {e}")))?;
    proto::validate::egg(&egg).map_err(|e| Refused {
        code: e.code(),
        message: e.to_string(),
    })?;
    let stop = egg
        .stop
        .as_ref()
        .and_then(|s| match (&s.command, &s.signal) {
            (Some(c), _) => Some(Stop::Command(c.to_string())),
            (None, Some(sig)) => Some(Stop::Signal(sig.to_string())),
            (None, None) => None,
        });
    let stored = StoredEgg {
        name: egg.name.to_string(),
        description: String::new(),
        author: String::new(),
        images: vec![EggImage {
            label: egg.image.to_string(),
            image: egg.image.to_string(),
        }],
        startups: vec![Startup {
            name: "Default".into(),
            command: egg.startup.to_string(),
        }],
        variables: egg
            .environment
            .0
            .iter()
            .map(|(k, v)| Variable {
                name: k.to_string(),
                env: k.to_string(),
                default: v.to_string(),
                description: String::new(),
                user_viewable: true,
                user_editable: true,
                rules: Vec::new(),
            })
            .collect(),
        stop,
        done: egg.done.clone(),
        config_files: egg.config_files.clone(),
        install: egg.install.clone(),
        features: Vec::new(),
    };
    let warnings = eggs::import::check_egg(&stored).map_err(|e| Refused {
        code: e.code(),
        message: e.to_string(),
    })?;
    let defaults: Map<String, Value> = DEFAULT_KEYS
        .iter()
        .filter_map(|k| value.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    Ok(Import {
        egg: stored,
        source: "eggConfig".into(),
        warnings,
        defaults: (!defaults.is_empty()).then_some(Value::Object(defaults)),
    })
}

/// The example egg's record.
pub fn example(created_at: u64) -> Result<EggRecord, Refused> {
    Ok(import(EXAMPLE_EGG.as_bytes())?.into_record(EXAMPLE_EGG_ID.into(), created_at))
}

/// What `POST /api/servers` names when it creates from a stored egg.
#[derive(Debug, Clone, Default)]
pub struct FromEgg {
    /// An image of the egg, by label or reference (default: the first).
    pub image: Option<String>,
    /// A startup of the egg, by name (default: the first).
    pub startup: Option<String>,
    pub environment: Map<String, Value>,
    pub ports: Option<Value>,
    pub limits: Option<Value>,
}

/// The `eggConfig` (JSON) for a server created from `rec`: the request's choices checked
/// against the egg (variables against their rules, defaults filled, messages naming the
/// variable), the egg's install script, config files, done strings and stop. The caller
/// still validates the result as any `eggConfig` (`proto::validate::egg`).
pub fn egg_config(rec: &EggRecord, req: &FromEgg) -> Result<Value, Refused> {
    let egg = &rec.egg;
    let image = match &req.image {
        None => egg.default_image(),
        Some(want) => egg.image(want).ok_or_else(|| {
            let labels: Vec<&str> = egg.images.iter().map(|i| i.label.as_str()).collect();
            invalid(format!(
                "image: `{want}` is not an image of this egg (one of: {})",
                labels.join(", ")
            ))
        })?,
    };
    let startup = eggs::startup_command(egg, req.startup.as_deref()).ok_or_else(|| {
        let names: Vec<&str> = egg.startups.iter().map(|s| s.name.as_str()).collect();
        invalid(format!(
            "startup: `{}` is not a startup of this egg (one of: {})",
            req.startup.as_deref().unwrap_or_default(),
            names.join(", ")
        ))
    })?;
    let given = given_environment(&req.environment)?;
    let environment = eggs::environment(egg, &given).map_err(|e| invalid(e.to_string()))?;
    let defaults = rec.defaults.as_ref();
    let default = |k: &str| defaults.and_then(|d| d.get(k)).cloned();
    let ports = req
        .ports
        .clone()
        .or_else(|| default("ports"))
        .ok_or_else(|| invalid("ports: required (this egg names no default ports)"))?;
    let limits = req
        .limits
        .clone()
        .or_else(|| default("limits"))
        .unwrap_or_else(|| {
            let (memory, cpu, disk) = DEFAULT_LIMITS;
            json!({"memory": memory, "cpu": cpu, "disk": disk})
        });
    let mut out = json!({
        "name": config_name(&egg.name),
        "image": image.image,
        "ports": ports,
        "environment": environment
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect::<Map<String, Value>>(),
        "limits": limits,
        "startup": startup,
    });
    match &egg.stop {
        Some(Stop::Command(c)) => out["stop"] = json!({"command": c}),
        Some(Stop::Signal(s)) => out["stop"] = json!({"signal": s}),
        None => {}
    }
    for k in ["query", "user"] {
        if let Some(v) = default(k) {
            out[k] = v;
        }
    }
    if let Some(i) = &egg.install {
        out["install"] = json!(i);
    }
    if !egg.config_files.is_empty() {
        out["configFiles"] = json!(egg.config_files);
    }
    if !egg.done.is_empty() {
        out["done"] = json!(egg.done);
    }
    Ok(out)
}

/// The request's environment as strings (numbers and booleans as written).
fn given_environment(env: &Map<String, Value>) -> Result<Vec<(String, String)>, Refused> {
    env.iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => String::new(),
                _ => {
                    let name: String = k.chars().take(128).collect();
                    return Err(invalid(format!(
                        "environment.{name}: must be a string, number or boolean"
                    )));
                }
            };
            Ok((k.clone(), text))
        })
        .collect()
}

/// An egg's name as `eggConfig.name` takes it: letters, digits, spaces, `.`, `_`, `-`, at
/// most 64 bytes (Pelican names hold `/`, `:`, `(`, non-ASCII, ...). Anything else becomes
/// `-`; runs collapse; an empty result is `egg`.
pub fn config_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(64));
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || " ._".contains(c) {
            c
        } else {
            '-'
        };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
        if out.len() >= 64 {
            break;
        }
    }
    let trimmed = out.trim_matches([' ', '-']);
    if trimmed.is_empty() {
        "egg".into()
    } else {
        trimmed.to_owned()
    }
}

/// An egg record as the API shows it: the stored egg's fields (camelCase) with `id`,
/// `source`, `createdAt`, `warnings` and the defaults (`ports`, `limits`, ...). A summary
/// (`full: false`) leaves out the install script and config files, saying only whether
/// there are any.
pub fn to_json(rec: &EggRecord, full: bool) -> Value {
    let mut v = serde_json::to_value(&rec.egg).unwrap_or_else(|_| json!({}));
    v["id"] = json!(rec.id);
    v["source"] = json!(rec.source);
    v["createdAt"] = json!(proto::time::format_rfc3339(rec.created_at));
    v["warnings"] = json!(rec.warnings);
    if let Some(Value::Object(d)) = &rec.defaults {
        for (k, val) in d {
            v[k.as_str()] = val.clone();
        }
    }
    if !full && let Some(obj) = v.as_object_mut() {
        let install = obj.remove("install");
        obj.insert("hasInstall".into(), json!(install.is_some()));
        let files = obj.remove("configFiles");
        let count = files.as_ref().and_then(Value::as_array).map_or(0, Vec::len);
        obj.insert("configFileCount".into(), json!(count));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../proto/tests/fixtures/eggs/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).unwrap()
    }

    #[test]
    fn the_example_egg_imports_with_its_defaults() {
        let rec = example(1).unwrap();
        assert_eq!(rec.source, "eggConfig");
        assert_eq!(rec.egg.images[0].image, "ctrl-fakegame:latest");
        assert_eq!(rec.egg.variables[0].env, "MAX_PLAYERS");
        assert_eq!(rec.egg.stop, Some(Stop::Command("stop".into())));
        let d = rec.defaults.as_ref().unwrap();
        assert_eq!(d["ports"]["25565"], 25565);
        assert_eq!(d["query"]["type"], "minecraft");
        // Created from with no choices, it is the example egg again.
        let cfg = egg_config(&rec, &FromEgg::default()).unwrap();
        let original: Value = serde_json::from_str(EXAMPLE_EGG).unwrap();
        for k in [
            "name",
            "image",
            "ports",
            "environment",
            "limits",
            "startup",
            "stop",
            "query",
        ] {
            assert_eq!(cfg[k], original[k], "{k}");
        }
    }

    #[test]
    fn exports_in_both_formats_import_and_create() {
        for (file, source) in [("ptdl_v2.json", "PTDL_v2"), ("plcn_v3.yaml", "PLCN_v3")] {
            let imp = import(&fixture(file)).unwrap();
            assert_eq!(imp.source, source);
            let rec = imp.into_record("e1".into(), 1);
            let req = FromEgg {
                ports: Some(json!({"25565": 30000})),
                ..FromEgg::default()
            };
            let cfg = egg_config(&rec, &req).unwrap();
            let text = cfg.to_string();
            let egg: EggConfig<'_> = serde_json::from_str(&text).unwrap();
            proto::validate::egg(&egg).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(egg.install.is_some(), "{file}");
            assert!(!egg.config_files.is_empty(), "{file}");
            assert!(!egg.done.is_empty(), "{file}");
            assert_eq!(cfg["limits"]["memory"], DEFAULT_LIMITS.0);
        }
    }

    #[test]
    fn the_fakegame_eggs_in_both_formats_import_without_warnings() {
        for (file, source) in [
            ("fakegame-ptdl_v2.json", "PTDL_v2"),
            ("fakegame-plcn_v3.yaml", "PLCN_v3"),
        ] {
            let path = format!(
                "{}/../tests/fakegame/eggs/{file}",
                env!("CARGO_MANIFEST_DIR")
            );
            let imp =
                import(&std::fs::read(path).unwrap()).unwrap_or_else(|e| panic!("{file}: {e:?}"));
            assert_eq!(imp.source, source);
            assert!(imp.warnings.is_empty(), "{file}: {:?}", imp.warnings);
            assert_eq!(imp.egg.images[0].image, "ctrl-fakegame:latest");
            assert_eq!(
                imp.egg.install.as_ref().unwrap().image,
                "ctrl-installer:latest"
            );
        }
    }

    #[test]
    fn choices_are_checked_against_the_egg_and_messages_name_the_field() {
        let rec = import(&fixture("ptdl_v2.json"))
            .unwrap()
            .into_record("e".into(), 1);
        let base = || FromEgg {
            ports: Some(json!({"25565": 30000})),
            ..FromEgg::default()
        };
        let err = |req: FromEgg| egg_config(&rec, &req).unwrap_err().message;
        let mut r = base();
        r.environment.insert("MAX_PLAYERS".into(), json!(9999));
        assert!(err(r).starts_with("environment.MAX_PLAYERS:"));
        let mut r = base();
        r.environment
            .insert("SERVER_JARFILE".into(), json!("x.zip"));
        assert!(err(r).starts_with("environment.SERVER_JARFILE:"));
        let mut r = base();
        r.environment.insert("NOPE".into(), json!("1"));
        assert!(err(r).contains("NOPE"));
        let mut r = base();
        r.environment.insert("MAX_PLAYERS".into(), json!({"a": 1}));
        assert!(err(r).starts_with("environment.MAX_PLAYERS:"));
        let mut r = base();
        r.image = Some("nope".into());
        assert!(err(r).starts_with("image:"));
        let mut r = base();
        r.startup = Some("nope".into());
        assert!(err(r).starts_with("startup:"));
        assert!(err(FromEgg::default()).starts_with("ports:"));
        // Numbers and booleans are taken as written; the image by label.
        let mut r = base();
        r.environment.insert("MAX_PLAYERS".into(), json!(40));
        r.image = Some("Java 17".into());
        let cfg = egg_config(&rec, &r).unwrap();
        assert_eq!(cfg["environment"]["MAX_PLAYERS"], "40");
        assert_eq!(cfg["image"], "ghcr.io/example/yolks:java_17");
    }

    #[test]
    fn names_are_made_acceptable_to_egg_config() {
        assert_eq!(
            config_name("Paper (1.20) / Velocity: proxy"),
            "Paper -1.20- - Velocity- proxy"
        );
        assert_eq!(config_name("Ünïcode ✓"), "n-code");
        assert_eq!(config_name("///"), "egg");
        assert_eq!(config_name(&"a".repeat(100)).len(), 64);
        for n in [
            "Paper (1.20) / Velocity: proxy",
            "Ünïcode ✓",
            "///",
            "ok name_1.2",
        ] {
            let egg = json!({"name": config_name(n), "image": "i", "startup": "s",
                "limits": {"memory": "64m", "cpu": "1", "disk": "1g"}});
            let text = egg.to_string();
            let e: EggConfig<'_> = serde_json::from_str(&text).unwrap();
            proto::validate::egg(&e).unwrap();
        }
    }

    #[test]
    fn a_hostile_document_is_refused() {
        let e = import(br#"{"meta": {"version": "PTDL_v9"}}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::ConfigInvalid);
        let mut v: Value = serde_json::from_slice(&fixture("ptdl_v2.json")).unwrap();
        v["scripts"]["installation"]["privileged"] = json!(true);
        let e = import(v.to_string().as_bytes()).unwrap_err();
        assert!(e.message.contains("privileged"), "{}", e.message);
        let mut v: Value = serde_json::from_str(EXAMPLE_EGG).unwrap();
        v["configFiles"] = json!([{"path": "../x", "parser": "file", "edits": []}]);
        let e = import(v.to_string().as_bytes()).unwrap_err();
        assert!(e.message.contains("configFiles[0].path"), "{}", e.message);
        let mut v: Value = serde_json::from_str(EXAMPLE_EGG).unwrap();
        v["install"] =
            json!({"image": "i", "entrypoint": "ash", "script": "id", "privileged": true});
        let e = import(v.to_string().as_bytes()).unwrap_err();
        assert!(e.message.contains("privileged"), "{}", e.message);
    }

    #[test]
    fn summaries_leave_out_scripts_and_files() {
        let rec = import(&fixture("ptdl_v2.json"))
            .unwrap()
            .into_record("e".into(), 1);
        let full = to_json(&rec, true);
        assert!(full["install"]["script"].is_string());
        let short = to_json(&rec, false);
        assert!(short.get("install").is_none() && short["hasInstall"] == true);
        assert_eq!(short["configFileCount"], 2);
        assert_eq!(short["id"], "e");
        assert_eq!(short["source"], "PTDL_v2");
    }
}
