//! Import: a Pterodactyl/Pelican export (`meta.version` `PTDL_v1`, `PTDL_v2`, `PLCN_v1`..`v3`,
//! JSON or YAML) or our own egg (a [`StoredEgg`] document, no `meta`) → a checked
//! [`StoredEgg`].
//!
//! Everything is refused with the field it concerns, never silently truncated. Rules that
//! are not supported are kept (they are the egg's) but reported as warnings; see
//! [`super::rules`].

use super::check::{self, FieldError, fail};
use super::doc::Doc;
use super::model::*;
use super::rules::{self, RuleSet};
use crate::ErrorCode;
use crate::validate;

/// The formats `meta.version` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// Our own egg (no `meta`).
    Ctrl,
    PtdlV1,
    PtdlV2,
    PlcnV1,
    PlcnV2,
    PlcnV3,
}

impl SourceFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::Ctrl => "ctrl",
            SourceFormat::PtdlV1 => "PTDL_v1",
            SourceFormat::PtdlV2 => "PTDL_v2",
            SourceFormat::PlcnV1 => "PLCN_v1",
            SourceFormat::PlcnV2 => "PLCN_v2",
            SourceFormat::PlcnV3 => "PLCN_v3",
        }
    }
}

/// A successful import.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub egg: StoredEgg,
    pub format: SourceFormat,
    /// Rules ignored because they are not supported, each naming its variable.
    pub warnings: Vec<String>,
}

/// Why an egg was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("egg is {size} bytes, more than {max}")]
    TooLarge { size: usize, max: usize },
    #[error("egg is neither valid JSON nor valid YAML: {0}")]
    Syntax(String),
    #[error(
        "meta.version `{0}` is not a known egg format (PTDL_v1, PTDL_v2, PLCN_v1, PLCN_v2, PLCN_v3)"
    )]
    UnknownVersion(String),
    #[error("{0}")]
    Field(#[from] FieldError),
    #[error("variables.{variable}.rules: {source}")]
    Rule {
        variable: String,
        source: rules::RuleParseError,
    },
}

impl ImportError {
    /// The wire code: all `CONFIG_INVALID` except an oversized document.
    pub fn code(&self) -> ErrorCode {
        match self {
            ImportError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            _ => ErrorCode::ConfigInvalid,
        }
    }
}

/// Imports an egg document (JSON, or YAML when it is not JSON).
pub fn import(bytes: &[u8]) -> Result<Imported, ImportError> {
    if bytes.len() > check::MAX_EGG_BYTES {
        return Err(ImportError::TooLarge {
            size: bytes.len(),
            max: check::MAX_EGG_BYTES,
        });
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ImportError::Syntax("not UTF-8".into()))?
        .trim_start_matches('\u{feff}');
    let doc = match Doc::from_json(text) {
        Ok(d) => d,
        Err(json_err) if text.trim_start().starts_with(['{', '[']) => {
            return Err(ImportError::Syntax(json_err));
        }
        Err(_) => Doc::from_yaml(text).map_err(ImportError::Syntax)?,
    };
    import_doc(&doc)
}

fn import_doc(doc: &Doc) -> Result<Imported, ImportError> {
    if !matches!(doc, Doc::Map(_)) {
        return Err(check::err("egg", "must be an object").into());
    }
    let Some(meta) = doc.get("meta") else {
        return own_egg(doc);
    };
    let version = match meta.get("version") {
        Some(Doc::Str(v)) => v.as_str(),
        Some(other) => return Err(ImportError::UnknownVersion(other.kind().into())),
        None => return Err(ImportError::UnknownVersion("(missing)".into())),
    };
    let format = match version {
        "PTDL_v1" => SourceFormat::PtdlV1,
        "PTDL_v2" => SourceFormat::PtdlV2,
        "PLCN_v1" => SourceFormat::PlcnV1,
        "PLCN_v2" => SourceFormat::PlcnV2,
        "PLCN_v3" => SourceFormat::PlcnV3,
        other => {
            return Err(ImportError::UnknownVersion(
                other.chars().take(64).collect(),
            ));
        }
    };
    let mut warnings = Vec::new();
    let egg = panel_egg(doc, format, &mut warnings)?;
    finish(egg, format, warnings)
}

fn own_egg(doc: &Doc) -> Result<Imported, ImportError> {
    let json = to_json(doc);
    let egg: StoredEgg = serde_json::from_value(json).map_err(|e| FieldError {
        field: "egg".into(),
        reason: e.to_string(),
    })?;
    let mut egg = egg;
    for (i, f) in egg.config_files.iter_mut().enumerate() {
        f.path = check::config_path(&format!("configFiles[{i}].path"), &f.path)?;
    }
    finish(egg, SourceFormat::Ctrl, Vec::new())
}

fn to_json(doc: &Doc) -> serde_json::Value {
    use serde_json::Value;
    match doc {
        Doc::Null => Value::Null,
        Doc::Bool(b) => Value::Bool(*b),
        Doc::Number(n) => Value::Number(n.clone()),
        Doc::Str(s) => Value::String(s.clone()),
        Doc::List(l) => Value::Array(l.iter().map(to_json).collect()),
        Doc::Map(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
    }
}

/// Checks a stored egg completely and collects rule warnings.
fn finish(
    egg: StoredEgg,
    format: SourceFormat,
    mut warnings: Vec<String>,
) -> Result<Imported, ImportError> {
    warnings.extend(check_egg(&egg)?);
    Ok(Imported {
        egg,
        format,
        warnings,
    })
}

/// Checks every part of a stored egg; returns the rule warnings.
pub fn check_egg(egg: &StoredEgg) -> Result<Vec<String>, ImportError> {
    if egg.name.trim().is_empty() {
        return Err(check::err("name", "must not be empty").into());
    }
    check::line("name", &egg.name, check::MAX_NAME)?;
    check::text("description", &egg.description, check::MAX_DESCRIPTION)?;
    check::line("author", &egg.author, check::MAX_NAME)?;
    images(&egg.images)?;
    let mut warnings = Vec::new();
    startups(egg, &mut warnings)?;
    warnings.extend(variables(&egg.variables)?);
    if let Some(stop) = &egg.stop {
        match stop {
            Stop::Command(c) => validate::console_line(c).map_err(|e| FieldError {
                field: "stop.command".into(),
                reason: e.to_string(),
            })?,
            Stop::Signal(s) => {
                validate::signal(s).map_err(|e| FieldError {
                    field: "stop.signal".into(),
                    reason: e.to_string(),
                })?;
            }
        }
    }
    check::done("done", &egg.done)?;
    check::config_files("configFiles", &egg.config_files)?;
    if let Some(install) = &egg.install {
        check::install("install", install)?;
    }
    if egg.features.len() > check::MAX_FEATURES {
        return Err(check::err("features", "too many").into());
    }
    for f in &egg.features {
        check::line("features", f, check::MAX_LABEL)?;
    }
    Ok(warnings)
}

fn images(images: &[EggImage]) -> Result<(), FieldError> {
    if images.is_empty() {
        return fail("images", "at least one Docker image is needed");
    }
    if images.len() > check::MAX_IMAGES {
        return fail("images", format!("at most {} images", check::MAX_IMAGES));
    }
    for (i, img) in images.iter().enumerate() {
        let field = format!("images[{i}]");
        check::line(&format!("{field}.label"), &img.label, check::MAX_LABEL)?;
        validate::image_reference(&img.image).map_err(|r| FieldError {
            field: format!("{field}.image"),
            reason: format!("`{}`: {r}", clip(&img.image)),
        })?;
        if images[..i].iter().any(|o| o.label == img.label) {
            return fail(format!("{field}.label"), "is used twice");
        }
    }
    Ok(())
}

fn startups(egg: &StoredEgg, warnings: &mut Vec<String>) -> Result<(), FieldError> {
    if egg.startups.is_empty() {
        return fail("startups", "at least one startup command is needed");
    }
    if egg.startups.len() > check::MAX_STARTUPS {
        return fail("startups", format!("at most {}", check::MAX_STARTUPS));
    }
    for (i, s) in egg.startups.iter().enumerate() {
        let field = format!("startups[{i}]");
        check::line(&format!("{field}.name"), &s.name, check::MAX_LABEL)?;
        check::text(&format!("{field}.command"), &s.command, check::MAX_STARTUP)?;
        if s.command.trim().is_empty() {
            return fail(format!("{field}.command"), "must not be empty");
        }
        if egg.startups[..i].iter().any(|o| o.name == s.name) {
            return fail(format!("{field}.name"), "is used twice");
        }
        let names = validate::placeholders(&s.command).map_err(|r| FieldError {
            field: format!("{field}.command"),
            reason: r,
        })?;
        for n in names {
            let known =
                validate::RESERVED_ENV.contains(&n) || egg.variables.iter().any(|v| v.env == n);
            if !known {
                // Pterodactyl's images turn `{{X}}` into `${X}` for the shell, so an
                // undefined one runs as empty; `startup_command` does the same.
                warnings.push(format!(
                    "{field}.command: placeholder {{{{{n}}}}} names no variable of the egg; it will be empty"
                ));
            }
        }
    }
    Ok(())
}

fn variables(vars: &[Variable]) -> Result<Vec<String>, ImportError> {
    if vars.len() > check::MAX_VARIABLES {
        return Err(FieldError {
            field: "variables".into(),
            reason: format!("at most {} variables", check::MAX_VARIABLES),
        }
        .into());
    }
    let mut warnings = Vec::new();
    for (i, v) in vars.iter().enumerate() {
        let field = format!("variables[{i}]");
        if !validate::env_name(&v.env) {
            return Err(check::err(
                format!("{field}.env"),
                format!("`{}` must match [A-Za-z_][A-Za-z0-9_]*", clip(&v.env)),
            )
            .into());
        }
        if validate::RESERVED_ENV.contains(&v.env.as_str()) {
            return Err(check::err(
                format!("{field}.env"),
                format!("`{}` is set by the agent and cannot be a variable", v.env),
            )
            .into());
        }
        if vars[..i].iter().any(|o| o.env == v.env) {
            return Err(check::err(
                format!("{field}.env"),
                format!("`{}` is defined twice", v.env),
            )
            .into());
        }
        check::line(&format!("{field}.name"), &v.name, check::MAX_NAME)?;
        check::text(
            &format!("{field}.description"),
            &v.description,
            check::MAX_DESCRIPTION,
        )?;
        check::text(
            &format!("{field}.default"),
            &v.default,
            check::MAX_VAR_DEFAULT,
        )?;
        if v.rules.iter().map(String::len).sum::<usize>() > check::MAX_RULES_LEN {
            return Err(check::err(format!("{field}.rules"), "too long").into());
        }
        let (_, w) = RuleSet::parse(&v.rules).map_err(|source| ImportError::Rule {
            variable: v.env.clone(),
            source,
        })?;
        warnings.extend(w.into_iter().map(|w| format!("variables.{}: {w}", v.env)));
    }
    Ok(warnings)
}

fn clip(s: &str) -> String {
    s.chars().take(128).collect()
}

// ---- Pterodactyl / Pelican ----

fn panel_egg(
    doc: &Doc,
    format: SourceFormat,
    warnings: &mut Vec<String>,
) -> Result<StoredEgg, ImportError> {
    let config = embedded(doc.get("config"), "config")?;
    let cfg = |k: &str| config.as_ref().and_then(|c| c.get(k).cloned());
    let startup_cfg = embedded(cfg("startup").as_ref(), "config.startup")?;
    let files_cfg = embedded(cfg("files").as_ref(), "config.files")?;
    let variables = dedupe(panel_variables(doc.get("variables"))?, warnings);
    Ok(StoredEgg {
        name: req_str(doc, "name")?,
        description: opt_str(doc.get("description"), "description")?,
        author: opt_str(doc.get("author"), "author")?,
        images: panel_images(doc, format)?,
        startups: panel_startups(doc)?,
        variables,
        stop: panel_stop(cfg("stop").as_ref())?,
        done: panel_done(startup_cfg.as_ref())?,
        config_files: panel_files(files_cfg.as_ref())?,
        install: panel_install(doc.get("scripts"))?,
        features: str_list(doc.get("features"), "features")?,
    })
}

/// Pterodactyl JSON exports hold `config.*` as JSON-encoded strings; Pelican YAML ones as
/// objects. Both become a [`Doc`]; an empty string or `null` is "absent".
fn embedded(v: Option<&Doc>, field: &str) -> Result<Option<Doc>, FieldError> {
    match v {
        None | Some(Doc::Null) => Ok(None),
        Some(Doc::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(Doc::Str(s)) => Doc::from_json(s)
            .map(Some)
            .or_else(|e| fail(field, format!("embedded JSON is invalid: {e}"))),
        Some(other) => Ok(Some(other.clone())),
    }
}

fn req_str(doc: &Doc, key: &str) -> Result<String, FieldError> {
    match doc.get(key) {
        Some(Doc::Str(s)) => Ok(s.clone()),
        Some(other) => fail(key, format!("must be a string, not {}", other.kind())),
        None => fail(key, "is missing"),
    }
}

fn opt_str(v: Option<&Doc>, field: &str) -> Result<String, FieldError> {
    match v {
        None | Some(Doc::Null) => Ok(String::new()),
        Some(Doc::Str(s)) => Ok(s.clone()),
        Some(other) => fail(field, format!("must be a string, not {}", other.kind())),
    }
}

/// A scalar as text (defaults are sometimes numbers or booleans).
fn scalar_text(v: Option<&Doc>, field: &str) -> Result<String, FieldError> {
    match v {
        None | Some(Doc::Null) => Ok(String::new()),
        Some(Doc::Str(s)) => Ok(s.clone()),
        Some(Doc::Number(n)) => Ok(n.to_string()),
        Some(Doc::Bool(b)) => Ok(b.to_string()),
        Some(other) => fail(field, format!("must be a string, not {}", other.kind())),
    }
}

fn flag(v: Option<&Doc>, field: &str, default: bool) -> Result<bool, FieldError> {
    match v {
        None | Some(Doc::Null) => Ok(default),
        Some(Doc::Bool(b)) => Ok(*b),
        Some(Doc::Number(n)) => Ok(n.as_f64() != Some(0.0)),
        Some(Doc::Str(s)) => Ok(!matches!(s.as_str(), "" | "0" | "false")),
        Some(other) => fail(field, format!("must be a boolean, not {}", other.kind())),
    }
}

fn str_list(v: Option<&Doc>, field: &str) -> Result<Vec<String>, FieldError> {
    match v {
        None | Some(Doc::Null) => Ok(Vec::new()),
        Some(Doc::List(l)) => l
            .iter()
            .enumerate()
            .map(|(i, x)| scalar_text(Some(x), &format!("{field}[{i}]")))
            .collect(),
        Some(Doc::Map(m)) if m.is_empty() => Ok(Vec::new()),
        Some(other) => fail(field, format!("must be a list, not {}", other.kind())),
    }
}

fn panel_images(doc: &Doc, format: SourceFormat) -> Result<Vec<EggImage>, FieldError> {
    let image = |label: &str, image: &str| EggImage {
        label: label.to_owned(),
        image: image.to_owned(),
    };
    match doc.get("docker_images") {
        Some(Doc::Map(m)) => m
            .iter()
            .map(|(label, v)| match v {
                Doc::Str(r) => Ok(image(label, r)),
                other => fail(
                    format!("docker_images.{label}"),
                    format!("must be a string, not {}", other.kind()),
                ),
            })
            .collect(),
        Some(Doc::List(_)) => Ok(str_list(doc.get("docker_images"), "docker_images")?
            .iter()
            .map(|r| image(r, r))
            .collect()),
        Some(Doc::Null) | None => {
            // PTDL_v1: `images` (list) or `image` (string); PLCN's `image` is an icon.
            let mut refs = str_list(doc.get("images"), "images")?;
            if let (true, Some(Doc::Str(s))) = (format == SourceFormat::PtdlV1, doc.get("image")) {
                refs.push(s.clone());
            }
            Ok(refs.iter().map(|r| image(r, r)).collect())
        }
        Some(other) => fail(
            "docker_images",
            format!("must be an object of label → image, not {}", other.kind()),
        ),
    }
}

fn panel_startups(doc: &Doc) -> Result<Vec<Startup>, FieldError> {
    match doc.get("startup_commands") {
        Some(Doc::Map(m)) => m
            .iter()
            .map(|(name, v)| {
                Ok(Startup {
                    name: name.clone(),
                    command: opt_str(Some(v), &format!("startup_commands.{name}"))?,
                })
            })
            .collect(),
        Some(Doc::Null) | None => Ok(vec![Startup {
            name: "Default".into(),
            command: req_str(doc, "startup")?,
        }]),
        Some(other) => fail(
            "startup_commands",
            format!("must be an object of name → command, not {}", other.kind()),
        ),
    }
}

/// `^C` (and `^^C`, `^c`, `^SIGINT`) → SIGINT; `^SIGTERM`-style names map to themselves;
/// any other `^X` → SIGKILL (Wings' fallback); anything else is a console command.
fn panel_stop(v: Option<&Doc>) -> Result<Option<Stop>, FieldError> {
    let s = opt_str(v, "config.stop")?;
    let s = s.trim_end_matches(['\r', '\n']);
    if s.trim().is_empty() {
        return Ok(None);
    }
    let Some(sig) = s.strip_prefix('^') else {
        return Ok(Some(Stop::Command(s.to_owned())));
    };
    let sig = sig.trim_start_matches('^').to_ascii_uppercase();
    let name = match sig.as_str() {
        "C" => "SIGINT",
        other => validate::signal(other).map_or("SIGKILL", |(n, _)| n),
    };
    Ok(Some(Stop::Signal(name.into())))
}

fn panel_done(startup: Option<&Doc>) -> Result<Vec<String>, FieldError> {
    let done = startup.and_then(|s| s.get("done"));
    let list = match done {
        Some(Doc::List(_)) => str_list(done, "config.startup.done")?,
        other => vec![opt_str(other, "config.startup.done")?],
    };
    Ok(list.into_iter().filter(|d| !d.is_empty()).collect())
}

fn panel_files(files: Option<&Doc>) -> Result<Vec<ConfigFile>, FieldError> {
    let entries = match files {
        None => return Ok(Vec::new()),
        Some(Doc::Map(m)) => m,
        Some(Doc::List(l)) if l.is_empty() => return Ok(Vec::new()),
        Some(other) => {
            return fail(
                "config.files",
                format!("must be an object of path → parser, not {}", other.kind()),
            );
        }
    };
    let mut out = Vec::with_capacity(entries.len());
    for (path, spec) in entries {
        let field = format!("config.files[\"{}\"]", clip(path));
        let parser = match spec.get("parser") {
            Some(Doc::Str(p)) => ParserKind::parse(p).ok_or_else(|| FieldError {
                field: format!("{field}.parser"),
                reason: format!(
                    "`{}` is not supported (properties, yaml, json, ini, xml, file)",
                    clip(p)
                ),
            })?,
            _ => return fail(format!("{field}.parser"), "is missing"),
        };
        let mut edits = Vec::new();
        match spec.get("find") {
            None | Some(Doc::Null) => {}
            Some(Doc::Map(find)) => {
                for (key, value) in find {
                    panel_edit(&format!("{field}.find"), key, value, &mut edits)?;
                }
            }
            Some(Doc::List(l)) if l.is_empty() => {}
            Some(other) => {
                return fail(
                    format!("{field}.find"),
                    format!("must be an object, not {}", other.kind()),
                );
            }
        }
        out.push(ConfigFile {
            path: check::config_path(&field, path)?,
            parser,
            edits,
        });
    }
    Ok(out)
}

fn panel_edit(
    field: &str,
    key: &str,
    value: &Doc,
    edits: &mut Vec<Edit>,
) -> Result<(), FieldError> {
    let plain = |v: &Doc| -> Result<EditValue, FieldError> {
        Ok(match v {
            Doc::Bool(b) => EditValue::Bool(*b),
            Doc::Number(n) => EditValue::Number(n.clone()),
            Doc::Null => EditValue::Text(String::new()),
            Doc::Str(s) => EditValue::Text(s.clone()),
            other => {
                return fail(
                    format!("{field}.{}", clip(key)),
                    format!("must be a string, number or boolean, not {}", other.kind()),
                );
            }
        })
    };
    match value {
        // `{"<if value>": "<replacement>"}`: Wings' conditional replace.
        Doc::Map(conds) => {
            for (cond, v) in conds {
                edits.push(Edit {
                    key: key.to_owned(),
                    value: plain(v)?,
                    if_value: Some(cond.clone()),
                });
            }
        }
        v => edits.push(Edit {
            key: key.to_owned(),
            value: plain(v)?,
            if_value: None,
        }),
    }
    Ok(())
}

fn panel_install(scripts: Option<&Doc>) -> Result<Option<InstallScript>, FieldError> {
    let Some(inst) = scripts.and_then(|s| s.get("installation")) else {
        return Ok(None);
    };
    let inst = match inst {
        Doc::Null => return Ok(None),
        Doc::Str(s) => match Doc::from_json(s) {
            Ok(d) => d,
            Err(e) => {
                return fail(
                    "scripts.installation",
                    format!("embedded JSON is invalid: {e}"),
                );
            }
        },
        d => d.clone(),
    };
    if let Doc::Map(m) = &inst {
        for (k, _) in m {
            if !matches!(k.as_str(), "script" | "container" | "entrypoint") {
                return fail(
                    format!("scripts.installation.{}", clip(k)),
                    "is not supported: install containers run with the same confinement as servers",
                );
            }
        }
    }
    let script = opt_str(inst.get("script"), "scripts.installation.script")?.replace("\r\n", "\n");
    if script.trim().is_empty() {
        return Ok(None);
    }
    let image = opt_str(inst.get("container"), "scripts.installation.container")?;
    if image.is_empty() {
        return fail("scripts.installation.container", "is missing");
    }
    let entrypoint = opt_str(inst.get("entrypoint"), "scripts.installation.entrypoint")?;
    Ok(Some(InstallScript {
        image,
        entrypoint: if entrypoint.is_empty() {
            "bash".into()
        } else {
            entrypoint
        },
        script,
    }))
}

/// Pelican imports variables by `env_variable`, so a later duplicate replaces an earlier one;
/// the same here, with a warning.
fn dedupe(vars: Vec<Variable>, warnings: &mut Vec<String>) -> Vec<Variable> {
    let mut out: Vec<Variable> = Vec::with_capacity(vars.len());
    for v in vars {
        match out.iter_mut().find(|o| o.env == v.env) {
            Some(slot) => {
                warnings.push(format!(
                    "variables.{}: defined twice; the later definition is kept",
                    clip(&v.env)
                ));
                *slot = v;
            }
            None => out.push(v),
        }
    }
    out
}

fn panel_variables(v: Option<&Doc>) -> Result<Vec<Variable>, FieldError> {
    let list = match v {
        None | Some(Doc::Null) => return Ok(Vec::new()),
        Some(Doc::List(l)) => l,
        Some(other) => return fail("variables", format!("must be a list, not {}", other.kind())),
    };
    if list.len() > check::MAX_VARIABLES {
        return fail(
            "variables",
            format!("at most {} variables", check::MAX_VARIABLES),
        );
    }
    list.iter()
        .enumerate()
        .map(|(i, var)| {
            let field = format!("variables[{i}]");
            let rules = match var.get("rules") {
                None | Some(Doc::Null) => Vec::new(),
                Some(Doc::Str(s)) => {
                    if s.len() > check::MAX_RULES_LEN {
                        return fail(format!("{field}.rules"), "too long");
                    }
                    rules::split(s)
                }
                Some(Doc::List(_)) => str_list(var.get("rules"), &format!("{field}.rules"))?,
                Some(Doc::Map(m)) if m.is_empty() => Vec::new(),
                Some(other) => {
                    return fail(
                        format!("{field}.rules"),
                        format!("must be a string, not {}", other.kind()),
                    );
                }
            };
            Ok(Variable {
                name: opt_str(var.get("name"), &format!("{field}.name"))?,
                env: req_str(var, "env_variable").map_err(|e| FieldError {
                    field: format!("{field}.env_variable"),
                    reason: e.reason,
                })?,
                default: scalar_text(var.get("default_value"), &format!("{field}.default_value"))?,
                description: opt_str(var.get("description"), &format!("{field}.description"))?,
                user_viewable: flag(
                    var.get("user_viewable"),
                    &format!("{field}.user_viewable"),
                    true,
                )?,
                user_editable: flag(
                    var.get("user_editable"),
                    &format!("{field}.user_editable"),
                    true,
                )?,
                rules,
            })
        })
        .collect()
}
