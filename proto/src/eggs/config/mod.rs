//! Config-file edits before each start: `apply(parser, original, edits, context)`.
//!
//! Pure functions over bytes: the agent reads the file beneath the volume, calls
//! [`apply`], and writes the result back atomically. Semantics follow Wings (find a key or
//! dotted path and set its value, creating it when missing; `file` replaces whole lines that
//! start with the match), with two deliberate differences: every parser edits the text in
//! place, so comments, order and formatting survive (Wings re-serialises most formats), and
//! placeholders come only from the explicit [`Context`].
//!
//! Problems with single edits (a path through a scalar, a value with a line break for a
//! line-based format, an unknown placeholder) do not fail the file: they are listed in the
//! [`Report`] and the rest is applied. Only an unreadable file fails.

mod file;
mod ini;
mod json;
mod properties;
pub(crate) mod tree;
mod xml;
mod yaml;

use regex::Regex;

use super::model::{Edit, EditValue, ParserKind};
use super::placeholders::{Context, expand};

/// Largest config file edited (Wings: 64 MiB; game configs are a few KiB).
pub const MAX_CONFIG_BYTES: usize = 4 << 20;

/// What happened besides the edits that were applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Placeholders left as written because the context does not know them.
    pub unknown_placeholders: Vec<String>,
    /// Edits not applied, each with the reason.
    pub skipped: Vec<String>,
}

/// Why a file could not be edited at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("config file is {size} bytes, more than the {max} bytes edited")]
    TooLarge { size: usize, max: usize },
    #[error("config file is not UTF-8 text")]
    NotUtf8,
    #[error("{parser} parser: {message}")]
    Parse {
        parser: &'static str,
        message: String,
    },
}

impl EditError {
    fn parse(parser: ParserKind, message: impl Into<String>) -> EditError {
        EditError::Parse {
            parser: parser.as_str(),
            message: message.into(),
        }
    }
}

/// When an edit applies.
#[derive(Debug)]
pub(crate) enum Cond {
    Always,
    Equals(String),
    Regex(Regex),
}

/// An edit with its value expanded and its condition compiled.
#[derive(Debug)]
pub(crate) struct Prepared<'e> {
    pub key: &'e str,
    pub value: EditValue,
    pub cond: Cond,
}

impl Prepared<'_> {
    /// The text to write given the current value (`None` when absent), or `None` when the
    /// condition says to leave it.
    pub fn new_text(&self, current: Option<&str>) -> Option<String> {
        let text = self.value.as_text();
        match &self.cond {
            Cond::Always => Some(text),
            Cond::Equals(want) => (current? == want).then_some(text),
            Cond::Regex(re) => {
                let cur = current?;
                re.is_match(cur)
                    .then(|| re.replace_all(cur, text.as_str()).into_owned())
            }
        }
    }

    pub fn skip(&self, report: &mut Report, why: impl std::fmt::Display) {
        let key: String = self.key.chars().take(128).collect();
        report.skipped.push(format!("`{key}`: {why}"));
    }
}

/// Applies `edits` to a config file's bytes. Returns the new bytes (equal to the original
/// when nothing changed) and what was left undone.
pub fn apply(
    parser: ParserKind,
    original: &[u8],
    edits: &[Edit],
    ctx: &Context,
) -> Result<(Vec<u8>, Report), EditError> {
    if original.len() > MAX_CONFIG_BYTES {
        return Err(EditError::TooLarge {
            size: original.len(),
            max: MAX_CONFIG_BYTES,
        });
    }
    let text = std::str::from_utf8(original).map_err(|_| EditError::NotUtf8)?;
    let (bom, body) = match text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", text),
    };
    let mut report = Report::default();
    let prepared = prepare(edits, ctx, &mut report);
    let out = match parser {
        ParserKind::Properties => properties::apply(body, &prepared, &mut report),
        ParserKind::File => file::apply(body, &prepared, &mut report),
        ParserKind::Ini => ini::apply(body, &prepared, &mut report),
        ParserKind::Json => json::apply(body, &prepared, &mut report)?,
        ParserKind::Yaml => yaml::apply(body, &prepared, &mut report)?,
        ParserKind::Xml => xml::apply(body, &prepared, &mut report)?,
    };
    let mut bytes = Vec::with_capacity(bom.len() + out.len());
    bytes.extend_from_slice(bom.as_bytes());
    bytes.extend_from_slice(out.as_bytes());
    Ok((bytes, report))
}

fn prepare<'e>(edits: &'e [Edit], ctx: &Context, report: &mut Report) -> Vec<Prepared<'e>> {
    let mut out = Vec::with_capacity(edits.len());
    for e in edits {
        let value = match &e.value {
            EditValue::Text(t) => EditValue::Text(expand(t, ctx, &mut report.unknown_placeholders)),
            other => other.clone(),
        };
        let cond = match e.if_value.as_deref() {
            None | Some("") => Cond::Always,
            Some(c) => match c.strip_prefix("regex:") {
                None => Cond::Equals(c.to_owned()),
                Some(re) => match super::rules::compile_regex(re) {
                    Ok(re) => Cond::Regex(re),
                    Err(why) => {
                        report.skipped.push(format!("`{}`: ifValue {why}", e.key));
                        continue;
                    }
                },
            },
        };
        out.push(Prepared {
            key: &e.key,
            value,
            cond,
        });
    }
    out
}

/// Whether a value would add lines to a line-based format.
pub(crate) fn multiline(s: &str) -> bool {
    s.contains(['\n', '\r', '\0'])
}

/// Splits text into lines keeping each line's terminator.
pub(crate) fn lines_with_ends(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.split_inclusive('\n').map(|l| {
        let body = match l.strip_suffix('\n') {
            Some(b) => b.strip_suffix('\r').unwrap_or(b),
            None => l,
        };
        (body, &l[body.len()..])
    })
}

/// The line terminator a file uses (`\r\n` if its first line has one).
pub(crate) fn newline_of(text: &str) -> &'static str {
    match text.find('\n') {
        Some(i) if i > 0 && text.as_bytes()[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

/// Appends `line` to `out` on a line of its own.
pub(crate) fn push_line(out: &mut String, line: &str, nl: &str) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push_str(nl);
    }
    out.push_str(line);
    out.push_str(nl);
}
