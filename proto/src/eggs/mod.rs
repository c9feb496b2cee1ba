//! Pterodactyl/Pelican eggs, run unchanged: import, variable rules, config-file edits, and
//! the `eggConfig` extensions that carry them to the agent. Pure functions, no I/O; the
//! panel (egg library, create from an egg) and the agent (install containers, config edits
//! before start, done-line detection) call them. See `README.md` in this directory for the
//! survey of public eggs these choices rest on.
//!
//! - [`import()`]: JSON/YAML export or our own egg → [`StoredEgg`] (typed [`ImportError`]s,
//!   all `CONFIG_INVALID` but size).
//! - [`rules`]: the Laravel rule subset, with messages naming the variable.
//! - [`environment()`]: a create request's values checked against the rules, defaults filled.
//! - [`config::apply`]: edit a config file's bytes; [`placeholders`]: its `{{…}}` values.
//! - [`check`]: limits shared with the wire extensions ([`crate::egg::EggConfig`]).

pub mod check;
pub mod config;
mod doc;
pub mod import;
pub mod model;
pub mod placeholders;
pub mod rules;

pub use config::{EditError, Report, apply};
pub use import::{ImportError, Imported, SourceFormat, import};
pub use model::*;
pub use placeholders::Context;

use rules::{RuleError, RuleSet};

/// The environment for a server created from `egg`: every variable, in the egg's order,
/// with the value from `given` (checked against its rules) or its default. A name in `given`
/// that is not a variable of the egg is refused.
pub fn environment(
    egg: &StoredEgg,
    given: &[(String, String)],
) -> Result<Vec<(String, String)>, RuleError> {
    if let Some((k, _)) = given
        .iter()
        .find(|(k, _)| !egg.variables.iter().any(|v| v.env == *k))
    {
        return Err(RuleError {
            variable: k.chars().take(128).collect(),
            message: "is not a variable of this egg".into(),
        });
    }
    let mut out = Vec::with_capacity(egg.variables.len());
    for var in &egg.variables {
        let value = given
            .iter()
            .rev()
            .find(|(k, _)| *k == var.env)
            .map_or(var.default.as_str(), |(_, v)| v.as_str());
        // Rules were checked at import; a rule that no longer parses refuses nothing.
        let set = RuleSet::parse(&var.rules).map_or_else(|_| RuleSet::default(), |(s, _)| s);
        set.check(&var.env, value)?;
        out.push((var.env.clone(), value.to_owned()));
    }
    Ok(out)
}

/// The startup line `name` (default: the first) with every `{{X}}` that names neither a
/// variable of the egg nor an agent-set variable removed, the way Pterodactyl's images run
/// it (`{{X}}` becomes `${X}` for the shell, empty when undefined).
pub fn startup_command(egg: &StoredEgg, name: Option<&str>) -> Option<String> {
    let line = &egg.startup(name)?.command;
    let known = |n: &str| {
        crate::validate::RESERVED_ENV.contains(&n) || egg.variables.iter().any(|v| v.env == n)
    };
    let mut out = String::with_capacity(line.len());
    let mut rest = line.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) if !known(after[..end].trim()) => rest = &after[end + 2..],
            Some(end) => {
                out.push_str(&rest[start..start + 2 + end + 2]);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    Some(out)
}
