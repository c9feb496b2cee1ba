//! Limits and checks shared by egg import and by the `eggConfig` extensions on the wire.
//!
//! Each check names the field it refuses, so the panel can answer `CONFIG_INVALID` with a
//! message an operator can act on. The limits sit well above what the public eggs use (see
//! README.md, "Survey").

use super::model::{ConfigFile, Edit, EditValue, InstallScript};
use crate::validate;

/// Largest egg document accepted for import (JSON or YAML). The biggest public egg is
/// ~80 KB, most of it an inline icon.
pub const MAX_EGG_BYTES: usize = 1 << 20;
pub const MAX_NAME: usize = 128;
pub const MAX_DESCRIPTION: usize = 8 * 1024;
pub const MAX_IMAGES: usize = 32;
pub const MAX_LABEL: usize = 128;
pub const MAX_STARTUPS: usize = 16;
pub const MAX_STARTUP: usize = 8 * 1024;
pub const MAX_VARIABLES: usize = 128;
pub const MAX_VAR_DEFAULT: usize = 32 * 1024;
pub const MAX_RULES_LEN: usize = 4 * 1024;
pub const MAX_DONE: usize = 16;
pub const MAX_DONE_LEN: usize = 1024;
pub const MAX_CONFIG_FILES: usize = 32;
pub const MAX_EDITS: usize = 128;
pub const MAX_MATCH: usize = 1024;
pub const MAX_EDIT_VALUE: usize = 32 * 1024;
pub const MAX_PATH: usize = 1024;
pub const MAX_SCRIPT: usize = 64 * 1024;
pub const MAX_FEATURES: usize = 32;

/// A refused field: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

pub fn fail<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, FieldError> {
    Err(err(field, reason))
}

pub fn err(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A single-line text of at most `max` bytes (no control characters but tab).
pub fn line(field: &str, s: &str, max: usize) -> Result<(), FieldError> {
    if s.len() > max {
        return fail(field, format!("must be at most {max} bytes"));
    }
    if s.chars().any(|c| c.is_control() && c != '\t') {
        return fail(field, "must be one line without control characters");
    }
    Ok(())
}

/// Free text of at most `max` bytes without NUL.
pub fn text(field: &str, s: &str, max: usize) -> Result<(), FieldError> {
    if s.len() > max {
        return fail(field, format!("must be at most {max} bytes"));
    }
    if s.contains('\0') {
        return fail(field, "must not contain NUL");
    }
    Ok(())
}

/// Normalises a config file path to one relative to the server root.
///
/// Like Wings, a leading `/` means the server root (six public eggs write
/// `/properties/server.properties`), so no path can name anything outside the volume; `..`
/// components are refused outright rather than resolved. The agent still opens the result
/// beneath the volume with `RESOLVE_BENEATH`.
pub fn config_path(field: &str, path: &str) -> Result<String, FieldError> {
    if path.len() > MAX_PATH {
        return fail(field, format!("must be at most {MAX_PATH} bytes"));
    }
    if path.contains(['\0', '\\']) || path.chars().any(char::is_control) {
        return fail(
            field,
            "must not contain NUL, backslashes or control characters",
        );
    }
    let mut parts = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => return fail(field, format!("`{path}` must not contain `..`")),
            c if c.len() > 255 => return fail(field, "has a component longer than 255 bytes"),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return fail(field, "must name a file");
    }
    Ok(parts.join("/"))
}

/// Checks one config file entry; `path` must already be normalised.
pub fn config_file(field: &str, file: &ConfigFile) -> Result<(), FieldError> {
    let normal = config_path(&format!("{field}.path"), &file.path)?;
    if normal != file.path {
        return fail(
            format!("{field}.path"),
            format!("must be normalised (`{normal}`)"),
        );
    }
    if file.edits.len() > MAX_EDITS {
        return fail(
            format!("{field}.edits"),
            format!("at most {MAX_EDITS} edits"),
        );
    }
    for (i, edit) in file.edits.iter().enumerate() {
        self::edit(&format!("{field}.edits[{i}]"), edit)?;
    }
    Ok(())
}

fn edit(field: &str, edit: &Edit) -> Result<(), FieldError> {
    line(&format!("{field}.match"), &edit.key, MAX_MATCH)?;
    if let EditValue::Text(v) = &edit.value {
        text(&format!("{field}.value"), v, MAX_EDIT_VALUE)?;
    }
    if let Some(cond) = &edit.if_value {
        line(&format!("{field}.ifValue"), cond, MAX_MATCH)?;
        if let Some(re) = cond.strip_prefix("regex:") {
            super::rules::compile_regex(re)
                .map_err(|r| FieldError {
                    field: format!("{field}.ifValue"),
                    reason: r,
                })
                .map(drop)?;
        }
    }
    Ok(())
}

/// Checks the install script: a valid image reference, a plain interpreter name, a bounded
/// script. Nothing else is accepted (no privileges, mounts or users: install containers
/// run with the same confinement as game servers).
pub fn install(field: &str, install: &InstallScript) -> Result<(), FieldError> {
    validate::image_reference(&install.image).map_err(|r| FieldError {
        field: format!("{field}.image"),
        reason: r,
    })?;
    let ep = &install.entrypoint;
    let ok = !ep.is_empty()
        && ep.len() <= 255
        && ep
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"/._-".contains(&c));
    if !ok {
        return fail(
            format!("{field}.entrypoint"),
            "must be an interpreter such as `bash` or `/bin/ash` (letters, digits, `/._-`)",
        );
    }
    text(&format!("{field}.script"), &install.script, MAX_SCRIPT)?;
    if install.script.trim().is_empty() {
        return fail(format!("{field}.script"), "must not be empty");
    }
    Ok(())
}

/// Checks the done strings: at most [`MAX_DONE`], each a non-empty line.
pub fn done(field: &str, done: &[String]) -> Result<(), FieldError> {
    if done.len() > MAX_DONE {
        return fail(field, format!("at most {MAX_DONE} strings"));
    }
    for (i, d) in done.iter().enumerate() {
        if d.is_empty() {
            return fail(format!("{field}[{i}]"), "must not be empty");
        }
        // Escape sequences are allowed: Wine-based eggs match on ANSI-laden output.
        if d.len() > MAX_DONE_LEN || d.contains(['\n', '\r', '\0']) {
            return fail(
                format!("{field}[{i}]"),
                format!("must be one line of at most {MAX_DONE_LEN} bytes"),
            );
        }
    }
    Ok(())
}

/// Checks a list of config files.
pub fn config_files(field: &str, files: &[ConfigFile]) -> Result<(), FieldError> {
    if files.len() > MAX_CONFIG_FILES {
        return fail(field, format!("at most {MAX_CONFIG_FILES} files"));
    }
    for (i, f) in files.iter().enumerate() {
        config_file(&format!("{field}[{i}]"), f)?;
    }
    Ok(())
}

/// Checks the eggs extensions of an `eggConfig` (`install`, `configFiles`, `done`); field
/// names are relative to `eggConfig`.
pub fn wire(egg: &crate::egg::EggConfig<'_>) -> Result<(), FieldError> {
    if let Some(i) = &egg.install {
        install("install", i)?;
    }
    config_files("configFiles", &egg.config_files)?;
    done("done", &egg.done)
}
