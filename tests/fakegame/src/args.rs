//! Command line of the fake game server.
//!
//! The binary is installed as `/bin/sh` in its FROM-scratch image, so the agent's container
//! command `["/bin/sh", "-c", "<startup line>"]` reaches it: when called as `sh -c LINE`, the
//! line is split like a (very small) shell would — quotes and `$VAR`/`${VAR}` expansion — and
//! the leading program words (`fakegame`, `exec`, ...) are skipped. Every setting falls back to
//! the environment the agent provides (`SERVER_PORT`, `SERVER_MEMORY`).

use std::fmt;

/// Default Minecraft port when neither `--port` nor `SERVER_PORT` is given.
pub const DEFAULT_PORT: u16 = 25565;
/// Default player capacity.
pub const DEFAULT_MAX_PLAYERS: u32 = 20;

/// Parsed settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// TCP port for the Server List Ping listener (0 = any free port).
    pub port: u16,
    pub max_players: u32,
    /// Players online from the start.
    pub players: Vec<String>,
    /// Exit with code 3 after this many seconds.
    pub crash_after: Option<u64>,
    /// Log lines per second written to stdout (0 = none).
    pub spam: u32,
    /// MiB to allocate and touch at start.
    pub mem_mb: u64,
    /// File (relative to the working directory) written at start with [`FILE_CONTENT`].
    pub write_file: Option<String>,
    /// Symlinks `(link, target)` created at start in the working directory (for path-escape
    /// tests of the agent's file access).
    pub symlinks: Vec<(String, String)>,
    /// Log SIGTERM/SIGINT and keep running (to test stop timeouts).
    pub ignore_signals: bool,
    /// `SERVER_MEMORY` as the agent passed it (MiB), only reported.
    pub memory_limit_mb: Option<u64>,
}

/// Content of the file written by `--write-file`, so tests can compare it byte for byte.
pub const FILE_CONTENT: &str = "fakegame test file\nline two: ok\n";

/// A command line the server refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    UnknownFlag(String),
    MissingValue(String),
    BadValue { flag: String, value: String },
    BadShellLine(String),
    Usage,
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::UnknownFlag(s) => write!(f, "unknown flag {s:?}"),
            ArgError::MissingValue(s) => write!(f, "flag {s} needs a value"),
            ArgError::BadValue { flag, value } => write!(f, "bad value {value:?} for {flag}"),
            ArgError::BadShellLine(s) => write!(f, "cannot parse command line: {s}"),
            ArgError::Usage => write!(f, "usage: sh -c LINE"),
        }
    }
}

/// Looks up an environment variable (injected so tests need not touch the process env).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Parses the process arguments (`argv[0]` included).
pub fn from_argv(argv: &[String], env: Env<'_>) -> Result<Config, ArgError> {
    let invoked_as = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a))
        .unwrap_or("fakegame");
    if invoked_as == "sh" {
        // `sh -c LINE [name args...]`: only `-c LINE` is meaningful.
        match argv.get(1).map(String::as_str) {
            Some("-c") => {
                let line = argv.get(2).ok_or(ArgError::Usage)?;
                let words = split_shell(line, env)?;
                parse_flags(skip_program_words(&words), env)
            }
            _ => Err(ArgError::Usage),
        }
    } else {
        parse_flags(&argv[1.min(argv.len())..], env)
    }
}

/// Skips leading words that are not flags: the program name and wrappers like `exec`.
fn skip_program_words(words: &[String]) -> &[String] {
    let first_flag = words
        .iter()
        .position(|w| w.starts_with('-'))
        .unwrap_or(words.len());
    &words[first_flag..]
}

fn parse_num<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, ArgError> {
    value.parse().map_err(|_| ArgError::BadValue {
        flag: flag.to_owned(),
        value: value.to_owned(),
    })
}

/// Parses `--flag value` / `--flag=value` pairs.
pub fn parse_flags(args: &[String], env: Env<'_>) -> Result<Config, ArgError> {
    let port = match env("SERVER_PORT").filter(|v| !v.is_empty()) {
        Some(v) => parse_num("SERVER_PORT", &v)?,
        None => DEFAULT_PORT,
    };
    let memory_limit_mb = match env("SERVER_MEMORY").filter(|v| !v.is_empty()) {
        Some(v) => Some(parse_num("SERVER_MEMORY", &v)?),
        None => None,
    };
    let mut cfg = Config {
        port,
        max_players: DEFAULT_MAX_PLAYERS,
        players: Vec::new(),
        crash_after: None,
        spam: 0,
        mem_mb: 0,
        write_file: None,
        symlinks: Vec::new(),
        ignore_signals: false,
        memory_limit_mb,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--ignore-signals" {
            cfg.ignore_signals = true;
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let known = [
            "--port",
            "--max-players",
            "--players",
            "--crash-after",
            "--spam",
            "--mem-mb",
            "--write-file",
            "--symlink",
        ];
        if !known.contains(&flag) {
            return Err(ArgError::UnknownFlag(arg.clone()));
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| ArgError::MissingValue(flag.to_owned()))?,
        };
        match flag {
            "--port" => cfg.port = parse_num(flag, &value)?,
            "--max-players" => cfg.max_players = parse_num(flag, &value)?,
            "--players" => {
                cfg.players = value
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            "--crash-after" => cfg.crash_after = Some(parse_num(flag, &value)?),
            "--spam" => cfg.spam = parse_num(flag, &value)?,
            "--mem-mb" => cfg.mem_mb = parse_num(flag, &value)?,
            "--write-file" => {
                if value.is_empty() || value.contains('\0') {
                    return Err(ArgError::BadValue {
                        flag: flag.to_owned(),
                        value,
                    });
                }
                cfg.write_file = Some(value)
            }
            "--symlink" => match value.split_once('=') {
                Some((link, target)) if !link.is_empty() && !target.is_empty() => {
                    cfg.symlinks.push((link.to_owned(), target.to_owned()))
                }
                _ => {
                    return Err(ArgError::BadValue {
                        flag: flag.to_owned(),
                        value,
                    });
                }
            },
            _ => unreachable!("flag checked against the known list"),
        }
    }
    Ok(cfg)
}

/// Splits a shell line into words: whitespace separates, `'...'` is literal, `"..."` expands
/// variables, `\` escapes the next character outside single quotes, `$VAR`/`${VAR}` expand
/// (unset → empty). Anything fancier (pipes, `;`, redirections) is refused.
pub fn split_shell(line: &str, env: Env<'_>) -> Result<Vec<String>, ArgError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(ArgError::BadShellLine("unclosed '".into())),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c)
                            }
                            None => return Err(ArgError::BadShellLine("unclosed \"".into())),
                        },
                        Some('$') => expand_var(&mut chars, &mut cur, env)?,
                        Some(c) => cur.push(c),
                        None => return Err(ArgError::BadShellLine("unclosed \"".into())),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            '$' => {
                in_word = true;
                expand_var(&mut chars, &mut cur, env)?;
            }
            ';' | '|' | '&' | '<' | '>' | '`' | '(' | ')' => {
                return Err(ArgError::BadShellLine(format!(
                    "shell operator {c:?} is not supported"
                )));
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn expand_var(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    out: &mut String,
    env: Env<'_>,
) -> Result<(), ArgError> {
    let mut name = String::new();
    if chars.peek() == Some(&'{') {
        chars.next();
        loop {
            match chars.next() {
                Some('}') => break,
                Some(c) => name.push(c),
                None => return Err(ArgError::BadShellLine("unclosed ${".into())),
            }
        }
    } else {
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                chars.next();
            } else {
                break;
            }
        }
        if name.is_empty() {
            out.push('$');
            return Ok(());
        }
    }
    out.push_str(&env(&name).unwrap_or_default());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn argv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sh_dash_c_line_is_parsed_as_flags() {
        let cfg = from_argv(
            &argv(&[
                "/bin/sh",
                "-c",
                "fakegame --port 25570 --max-players 5 --players alice,bob --spam 3 --write-file out.txt --symlink esc=/etc --ignore-signals",
            ]),
            &no_env,
        )
        .unwrap();
        assert_eq!(cfg.port, 25570);
        assert_eq!(cfg.max_players, 5);
        assert_eq!(cfg.players, vec!["alice", "bob"]);
        assert_eq!(cfg.spam, 3);
        assert_eq!(cfg.write_file.as_deref(), Some("out.txt"));
        assert_eq!(cfg.crash_after, None);
        assert_eq!(cfg.symlinks, vec![("esc".to_owned(), "/etc".to_owned())]);
        assert!(cfg.ignore_signals);
    }

    #[test]
    fn environment_gives_defaults_and_flags_override() {
        let env = |k: &str| match k {
            "SERVER_PORT" => Some("30000".to_owned()),
            "SERVER_MEMORY" => Some("512".to_owned()),
            _ => None,
        };
        let cfg = from_argv(&argv(&["fakegame"]), &env).unwrap();
        assert_eq!(cfg.port, 30000);
        assert_eq!(cfg.memory_limit_mb, Some(512));
        let cfg = from_argv(&argv(&["fakegame", "--port=1234"]), &env).unwrap();
        assert_eq!(cfg.port, 1234);
    }

    #[test]
    fn variables_and_quotes_expand_like_sh() {
        let env = |k: &str| (k == "P").then(|| "7777".to_owned());
        let w = split_shell(
            r#"exec fakegame --port $P --write-file "a b" 'x$P' ${P}1"#,
            &env,
        )
        .unwrap();
        assert_eq!(
            w,
            argv(&[
                "exec",
                "fakegame",
                "--port",
                "7777",
                "--write-file",
                "a b",
                "x$P",
                "77771"
            ])
        );
    }

    #[test]
    fn bad_lines_are_refused_with_a_reason() {
        assert_eq!(
            from_argv(&argv(&["sh", "-c", "fakegame --bogus 1"]), &no_env),
            Err(ArgError::UnknownFlag("--bogus".into()))
        );
        assert_eq!(
            from_argv(&argv(&["sh", "-c", "fakegame --port"]), &no_env),
            Err(ArgError::MissingValue("--port".into()))
        );
        assert!(matches!(
            from_argv(&argv(&["sh", "-c", "fakegame --port 70000"]), &no_env),
            Err(ArgError::BadValue { .. })
        ));
        assert!(matches!(
            split_shell("fakegame; rm -rf /", &no_env),
            Err(ArgError::BadShellLine(_))
        ));
        assert_eq!(from_argv(&argv(&["sh"]), &no_env), Err(ArgError::Usage));
        assert!(split_shell("'open", &no_env).is_err());
    }
}
