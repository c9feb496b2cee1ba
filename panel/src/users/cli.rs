//! `panel user add|passwd|list`: user management on the data dir, for the first admin and
//! for recovery. redb locks the database, so these run while the panel is stopped (the
//! running panel has `POST /api/users` and `POST /api/users/{id}/password`).

use std::io::{BufRead, Write};
use std::sync::Arc;

use proto::time::unix_now;

use crate::config::{UserAction, UserCommand};
use crate::store::{Store, StoreError, UserRecord};

use super::password::{self, MAX_PASSWORD, MIN_PASSWORD};
use super::{secret, valid_name};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "cannot open the database in {dir} ({source}); is the panel running? Stop it, or use the API (POST /api/users)"
    )]
    Open { dir: String, source: StoreError },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid user name `{0}`: 1 to 64 letters, digits, dots, dashes or underscores")]
    BadName(String),
    #[error("a user named `{0}` exists")]
    Exists(String),
    #[error("no user named `{0}`")]
    NoUser(String),
    #[error("the password must have {MIN_PASSWORD} to {MAX_PASSWORD} bytes")]
    BadPassword,
    #[error("reading the password from stdin: {0}")]
    Stdin(std::io::Error),
}

/// The password: one line from stdin, or a generated one (`true`: print it).
fn choose(from_stdin: bool) -> Result<(String, bool), CliError> {
    if !from_stdin {
        return Ok((password::generate(), true));
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(CliError::Stdin)?;
    let p = line.trim_end_matches(['\n', '\r']).to_owned();
    if p.len() < MIN_PASSWORD || p.len() > MAX_PASSWORD {
        return Err(CliError::BadPassword);
    }
    Ok((p, false))
}

/// Creates a user with a new password hash; `false` when the name is taken.
pub fn create(store: &Store, name: &str, admin: bool, pw: &str) -> Result<UserRecord, CliError> {
    if !valid_name(name) {
        return Err(CliError::BadName(name.to_owned()));
    }
    let rec = UserRecord {
        id: secret::id("u-"),
        name: name.to_owned(),
        admin,
        password_hash: password::hash_now(pw),
        created_at: unix_now(),
    };
    if !store.insert_user(&rec)? {
        return Err(CliError::Exists(name.to_owned()));
    }
    Ok(rec)
}

/// Runs one `panel user` command, printing to `out`.
pub fn run(cmd: &UserCommand, out: &mut impl Write) -> Result<(), CliError> {
    std::fs::create_dir_all(&cmd.data_dir).ok();
    let store = Arc::new(Store::open(&cmd.data_dir).map_err(|source| CliError::Open {
        dir: cmd.data_dir.display().to_string(),
        source,
    })?);
    let say = |out: &mut dyn Write, s: String| {
        let _ = writeln!(out, "{s}");
    };
    match &cmd.action {
        UserAction::Add {
            name,
            admin,
            password_stdin,
        } => {
            let (pw, show) = choose(*password_stdin)?;
            let rec = create(&store, name, *admin, &pw)?;
            let role = if rec.admin { "admin" } else { "user" };
            say(out, format!("{role} {} created (id {})", rec.name, rec.id));
            if show {
                say(out, format!("password: {pw}"));
                say(
                    out,
                    "  (shown only now; only its Argon2id hash is stored)".into(),
                );
            }
        }
        UserAction::Passwd {
            name,
            password_stdin,
        } => {
            let user = store
                .user_by_name(name)
                .ok_or_else(|| CliError::NoUser(name.clone()))?;
            let (pw, show) = choose(*password_stdin)?;
            store.set_password_hash(&user.id, password::hash_now(&pw), None)?;
            say(
                out,
                format!("password of {name} changed; its sessions ended"),
            );
            if show {
                say(out, format!("password: {pw}"));
            }
        }
        UserAction::List => {
            for u in store.users() {
                let role = if u.admin { "admin" } else { "user" };
                say(out, format!("{}\t{}\t{role}", u.id, u.name));
            }
        }
    }
    Ok(())
}
