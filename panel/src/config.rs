//! Command-line flags → [`Config`].
//!
//! The flags and defaults of `interfaces.md` (`--listen`, `--data-dir`, `--public-url`,
//! `--tls-cert/--tls-key`, `--heartbeat-secs`, `--command-timeout-secs`) plus the limits an
//! operator may need to tune (frame size, rate limits, connections per IP, queue depths).
//! Parsing is hand-written: a handful of flags does not justify a dependency, and every bad
//! value gets a message naming the flag.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the panel needs to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address the HTTPS/WSS listener binds (port 0 = any free port).
    pub listen: SocketAddr,
    /// Where `panel.redb`, `jwt.key` and `tls/` live.
    pub data_dir: PathBuf,
    /// Base URL agents and operators reach the panel at (`https://host:port`); defaults to
    /// `https://<listen address>`. Its host is added to the self-signed certificate.
    pub public_url: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub heartbeat: Duration,
    pub command_timeout: Duration,
    /// Largest WebSocket message accepted from an agent (bytes).
    pub max_frame_bytes: usize,
    /// Frames per second each agent connection may send (token bucket rate).
    pub agent_rate: f64,
    /// Burst size of the per-agent bucket.
    pub agent_burst: f64,
    /// Operator API requests per second per client IP.
    pub admin_rate: f64,
    pub admin_burst: f64,
    /// Simultaneous TCP connections per client IP (0 = unlimited).
    pub max_conns_per_ip: usize,
    /// Largest file upload (`PUT …/files/upload`), bytes; streamed, never held whole.
    pub max_upload_bytes: u64,
    /// Frames buffered per events subscriber before the oldest are dropped. Allocated as
    /// frames queue up (56 B a slot plus the frame it keeps alive), so the default is deep
    /// enough to absorb scheduling hiccups at 100k events/s without costing idle subscribers.
    pub event_queue: usize,
    /// Frames buffered per agent writer before command senders wait (pings and error replies
    /// are dropped instead). Allocated as frames queue up: an idle agent's queue is empty.
    pub agent_queue: usize,
    /// Offline this long, an agent is `dead` (node health).
    pub dead_after: Duration,
    /// How servers are placed when the request names no agent.
    pub placement: crate::placement::Strategy,
    /// Seconds per point of the last-hour resource history (a day's points are 12 steps).
    pub history_step_secs: u64,
    /// When login sessions end (idle and absolute).
    pub sessions: crate::users::SessionPolicy,
    /// Create an admin user on the first start and print its password (`panel up`).
    pub first_admin: bool,

    /// Backups kept per server in `DATA/backups/` (the oldest go after a new one).
    pub backup_keep: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            data_dir: PathBuf::from("./data"),
            public_url: None,
            tls_cert: None,
            tls_key: None,
            heartbeat: Duration::from_secs(15),
            command_timeout: Duration::from_secs(30),
            max_frame_bytes: proto::codec::DEFAULT_MAX_FRAME,
            // Five times one server's console throttle (200 lines/s, burst 400 in the
            // agent): a flooding server or two must not push its agent over the budget,
            // where the panel would drop lines with the `dropped` counts they carry.
            agent_rate: 1000.0,
            agent_burst: 2000.0,
            admin_rate: 50.0,
            admin_burst: 100.0,
            max_conns_per_ip: 256,
            max_upload_bytes: 1 << 30,
            event_queue: 16384,
            agent_queue: 64,
            dead_after: Duration::from_secs(300),
            placement: crate::placement::Strategy::Spread,
            history_step_secs: 5,
            sessions: crate::users::SessionPolicy::default(),
            first_admin: false,

            backup_keep: 5,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// `panel [flags]`: run the panel.
    Run(Config),
    /// `panel up [flags]`: the panel plus a local agent.
    Up(Config),
    /// `panel user ...`: manage users in the data dir (the panel must be stopped).
    User(UserCommand),
    /// `panel --help`.
    Help,
}

/// What `panel user` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAction {
    /// `add NAME [--admin] [--password-stdin]`
    Add {
        name: String,
        admin: bool,
        password_stdin: bool,
    },
    /// `passwd NAME [--password-stdin]`
    Passwd { name: String, password_stdin: bool },
    /// `list`
    List,
}

/// `panel user ACTION [--data-dir DIR]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCommand {
    pub action: UserAction,
    pub data_dir: PathBuf,
}

/// A command line that cannot be used; the message names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}\n\n{USAGE}")]
pub struct ConfigError(String);

pub const USAGE: &str = "\
usage: panel user add NAME [--admin] [--password-stdin] [--data-dir DIR]
       panel user passwd NAME [--password-stdin] [--data-dir DIR]
       panel user list [--data-dir DIR]
       panel [up] [--listen ADDR] [--data-dir DIR] [--public-url URL]
             [--tls-cert PEM --tls-key PEM]
             [--heartbeat-secs N] [--command-timeout-secs N]
             [--max-frame-bytes N] [--agent-rate N] [--agent-burst N]
             [--admin-rate N] [--admin-burst N] [--max-conns-per-ip N]
             [--event-queue N] [--agent-queue N] [--max-upload-bytes N]
             [--dead-after-secs N] [--placement spread|binpack] [--history-step-secs N]
             [--session-idle-secs N] [--session-max-secs N]

             [--backup-keep N]

  up                       run the panel and one local agent (quickstart)
  --listen ADDR            HTTPS/WSS listen address        [127.0.0.1:8443]
  --data-dir DIR           storage, keys, certificate       [./data]
  --public-url URL         URL agents use to reach the panel [https://LISTEN]
  --tls-cert/--tls-key     PEM files; default: self-signed in DIR/tls
  --heartbeat-secs N       agent ping interval (3 missed = offline) [15]
  --command-timeout-secs N wait for an agent's response    [30]
  --max-frame-bytes N      largest agent WebSocket message [1048576]
  --agent-rate N           frames/s per agent connection   [1000]
  --agent-burst N          burst of the agent bucket       [2000]
  --admin-rate N           API requests/s per client IP    [50]
  --admin-burst N          burst of the API bucket         [100]
  --max-conns-per-ip N     TCP connections per IP, 0 = any [256]
  --event-queue N          frames buffered per events subscriber (the oldest are
                           dropped beyond) [16384]; allocated as used: 56 B per
                           queued frame plus the frame (shared between subscribers)
  --agent-queue N          frames buffered per agent writer (commands wait beyond,
                           pings are dropped) [64]; allocated as used, 56 B a frame
  --max-upload-bytes N     largest file upload, streamed to the agent [1073741824]
  --dead-after-secs N      an agent offline this long is `dead` [300]
  --placement S            spread (most headroom first) or binpack (fullest that
                           fits first) for servers created without an agentId [spread]
  --history-step-secs N    resource history resolution: the last 720 steps at N s,
                           the last 1440 at 12·N s [5]
  --session-idle-secs N    a login session ends after this long unused [43200]
  --session-max-secs N     ... and this long after login in any case  [604800]
  user add|passwd|list     manage users (run while the panel is stopped); a
                           generated password is printed once unless
                           --password-stdin reads one

  --backup-keep N          backups kept per server in DATA/backups (oldest removed) [5]

environment: PANEL_ADMIN_TOKEN sets the admin token (else one is generated once).";

impl Config {
    /// The URL agents and operators use: `--public-url`, else `https://<listen>`. A wildcard
    /// listen address (`0.0.0.0`, `::`) is not a place anyone can connect to, and the
    /// self-signed certificate does not cover it, so it becomes the loopback address of the
    /// same family; agents on other hosts need `--public-url` (see [`Config::needs_public_url`]).
    pub fn base_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => {
                let mut shown = bound;
                if bound.ip().is_unspecified() {
                    shown.set_ip(match bound {
                        SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                        SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                    });
                }
                format!("https://{shown}")
            }
        }
    }

    /// True when the panel listens on every interface but was not told the URL remote
    /// agents should use: registration then hands out a loopback `websocketUrl`.
    pub fn needs_public_url(&self, bound: SocketAddr) -> bool {
        self.public_url.is_none() && bound.ip().is_unspecified()
    }

    /// The host of `--public-url`, for the self-signed certificate.
    pub fn public_host(&self) -> Option<String> {
        let url = self.public_url.as_deref()?;
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or(rest);
        let host = if let Some(v6) = authority.strip_prefix('[') {
            v6.split(']').next().unwrap_or(v6)
        } else {
            authority.rsplit_once(':').map_or(authority, |(h, _)| h)
        };
        (!host.is_empty()).then(|| host.to_owned())
    }
}

/// Parses the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Invocation, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut cfg = Config::default();
    let mut up = false;
    let mut args = args.into_iter().map(Into::into).peekable();
    if args.peek().is_some_and(|a| a == "user") {
        args.next();
        return parse_user(args).map(Invocation::User);
    }
    let mut first = true;
    while let Some(arg) = args.next() {
        if first && arg == "up" {
            up = true;
            first = false;
            continue;
        }
        first = false;
        if arg == "-h" || arg == "--help" || arg == "help" {
            return Ok(Invocation::Help);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        if !flag.starts_with("--") {
            return Err(ConfigError(format!("unexpected argument `{arg}`")));
        }
        let mut value = || -> Result<String, ConfigError> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => args
                    .next()
                    .ok_or_else(|| ConfigError(format!("{flag} needs a value"))),
            }
        };
        match flag.as_str() {
            "--listen" => {
                let v = value()?;
                cfg.listen = v.parse().map_err(|_| {
                    ConfigError(format!(
                        "--listen: `{v}` is not an IP:port address (e.g. 127.0.0.1:8443)"
                    ))
                })?;
            }
            "--data-dir" => cfg.data_dir = PathBuf::from(non_empty(&flag, value()?)?),
            "--public-url" => {
                let v = value()?;
                if !(v.starts_with("https://") && v.len() > "https://".len()) {
                    return Err(ConfigError(format!(
                        "--public-url: `{v}` must be an https:// URL (the panel speaks TLS only)"
                    )));
                }
                cfg.public_url = Some(v);
            }
            "--tls-cert" => cfg.tls_cert = Some(PathBuf::from(non_empty(&flag, value()?)?)),
            "--tls-key" => cfg.tls_key = Some(PathBuf::from(non_empty(&flag, value()?)?)),
            "--heartbeat-secs" => {
                cfg.heartbeat = Duration::from_secs(positive(&flag, &value()?, 86_400)?)
            }
            "--command-timeout-secs" => {
                cfg.command_timeout = Duration::from_secs(positive(&flag, &value()?, 86_400)?)
            }
            "--max-frame-bytes" => {
                cfg.max_frame_bytes = positive(&flag, &value()?, 64 << 20)? as usize
            }
            "--agent-rate" => cfg.agent_rate = rate(&flag, &value()?)?,
            "--agent-burst" => cfg.agent_burst = rate(&flag, &value()?)?,
            "--admin-rate" => cfg.admin_rate = rate(&flag, &value()?)?,
            "--admin-burst" => cfg.admin_burst = rate(&flag, &value()?)?,
            "--max-conns-per-ip" => {
                let v = value()?;
                cfg.max_conns_per_ip = v.parse().map_err(|_| {
                    ConfigError(format!("--max-conns-per-ip: `{v}` is not a whole number"))
                })?;
            }
            "--event-queue" => cfg.event_queue = positive(&flag, &value()?, 1 << 20)? as usize,
            "--agent-queue" => cfg.agent_queue = positive(&flag, &value()?, 1 << 20)? as usize,
            "--max-upload-bytes" => cfg.max_upload_bytes = positive(&flag, &value()?, 1 << 40)?,
            "--dead-after-secs" => {
                cfg.dead_after = Duration::from_secs(positive(&flag, &value()?, 30 * 86_400)?)
            }
            "--placement" => {
                let v = value()?;
                cfg.placement = crate::placement::Strategy::parse(&v).ok_or_else(|| {
                    ConfigError(format!("--placement: `{v}` is not spread or binpack"))
                })?;
            }
            "--history-step-secs" => cfg.history_step_secs = positive(&flag, &value()?, 3600)?,
            "--session-idle-secs" => {
                cfg.sessions.idle = Duration::from_secs(positive(&flag, &value()?, 1 << 32)?)
            }
            "--session-max-secs" => {
                cfg.sessions.absolute = Duration::from_secs(positive(&flag, &value()?, 1 << 32)?)
            }

            "--backup-keep" => cfg.backup_keep = positive(&flag, &value()?, 1000)? as usize,
            _ => return Err(ConfigError(format!("unknown flag `{flag}`"))),
        }
    }
    if cfg.tls_cert.is_some() != cfg.tls_key.is_some() {
        return Err(ConfigError(
            "--tls-cert and --tls-key must be given together".into(),
        ));
    }
    Ok(if up {
        cfg.first_admin = true;
        Invocation::Up(cfg)
    } else {
        Invocation::Run(cfg)
    })
}

/// `panel user ...` after the word `user`.
fn parse_user(args: impl Iterator<Item = String>) -> Result<UserCommand, ConfigError> {
    let mut words = Vec::new();
    let (mut admin, mut stdin) = (false, false);
    let mut data_dir = PathBuf::from("./data");
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--admin" => admin = true,
            "--password-stdin" => stdin = true,
            "--data-dir" => {
                let v = args
                    .next()
                    .ok_or_else(|| ConfigError("--data-dir needs a value".into()))?;
                data_dir = PathBuf::from(non_empty("--data-dir", v)?);
            }
            f if f.starts_with("--data-dir=") => {
                data_dir = PathBuf::from(non_empty("--data-dir", f["--data-dir=".len()..].into())?)
            }
            f if f.starts_with('-') => {
                return Err(ConfigError(format!("panel user: unknown flag `{f}`")));
            }
            _ => words.push(a),
        }
    }
    let action = match words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["add", name] => UserAction::Add {
            name: name.to_owned(),
            admin,
            password_stdin: stdin,
        },
        ["passwd", name] if !admin => UserAction::Passwd {
            name: name.to_owned(),
            password_stdin: stdin,
        },
        ["list"] if !admin && !stdin => UserAction::List,
        _ => {
            return Err(ConfigError(
                "panel user: expected `add NAME`, `passwd NAME` or `list`".into(),
            ));
        }
    };
    Ok(UserCommand { action, data_dir })
}

fn non_empty(flag: &str, v: String) -> Result<String, ConfigError> {
    if v.is_empty() {
        Err(ConfigError(format!("{flag} must not be empty")))
    } else {
        Ok(v)
    }
}

fn positive(flag: &str, v: &str, max: u64) -> Result<u64, ConfigError> {
    match v.parse::<u64>() {
        Ok(n) if n >= 1 && n <= max => Ok(n),
        _ => Err(ConfigError(format!(
            "{flag}: `{v}` must be a whole number from 1 to {max}"
        ))),
    }
}

fn rate(flag: &str, v: &str) -> Result<f64, ConfigError> {
    match v.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 && n <= 1e9 => Ok(n),
        _ => Err(ConfigError(format!(
            "{flag}: `{v}` must be a positive number"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn run(args: &[&str]) -> Config {
        match parse(args.iter().copied()).unwrap() {
            Invocation::Run(c) => c,
            other => panic!("expected Run, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_interface_contract() {
        let c = run(&[]);
        assert_eq!(c.listen, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.heartbeat, Duration::from_secs(15));
        assert_eq!(c.command_timeout, Duration::from_secs(30));
        assert_eq!(c.dead_after, Duration::from_secs(300));
        assert_eq!(c.placement, crate::placement::Strategy::Spread);
        assert_eq!(c.history_step_secs, 5);
    }

    #[test]
    fn node_health_flags() {
        let c = run(&[
            "--dead-after-secs",
            "7",
            "--placement=binpack",
            "--history-step-secs",
            "1",
        ]);
        assert_eq!(c.dead_after, Duration::from_secs(7));
        assert_eq!(c.placement, crate::placement::Strategy::Binpack);
        assert_eq!(c.history_step_secs, 1);
        for bad in [["--placement", "random"], ["--dead-after-secs", "0"]] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad[0]), "{e}");
        }
    }

    #[test]
    fn flags_in_both_spellings() {
        let c = run(&[
            "--listen",
            "127.0.0.1:0",
            "--data-dir=/tmp/x",
            "--heartbeat-secs",
            "2",
            "--command-timeout-secs=3",
            "--max-frame-bytes",
            "4096",
            "--agent-rate",
            "5",
            "--admin-rate=7.5",
            "--max-conns-per-ip",
            "0",
            "--max-upload-bytes=1048576",
            "--public-url",
            "https://panel.example.com:8443",
        ]);
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.heartbeat, Duration::from_secs(2));
        assert_eq!(c.command_timeout, Duration::from_secs(3));
        assert_eq!(c.max_frame_bytes, 4096);
        assert_eq!(c.agent_rate, 5.0);
        assert_eq!(c.admin_rate, 7.5);
        assert_eq!(c.max_conns_per_ip, 0);
        assert_eq!(c.max_upload_bytes, 1 << 20);
        assert_eq!(c.public_host().as_deref(), Some("panel.example.com"));
        assert_eq!(
            c.base_url("127.0.0.1:1".parse().unwrap()),
            "https://panel.example.com:8443"
        );
    }

    #[test]
    fn up_is_a_subcommand() {
        assert!(matches!(
            parse(["up", "--data-dir", "d"]).unwrap(),
            Invocation::Up(c) if c.data_dir == Path::new("d")
        ));
        assert_eq!(parse(["--help"]).unwrap(), Invocation::Help);
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, needle) in [
            (vec!["--listen", "nope"], "--listen"),
            (vec!["--heartbeat-secs", "0"], "--heartbeat-secs"),
            (vec!["--agent-rate", "-1"], "--agent-rate"),
            (vec!["--tls-cert", "a.pem"], "--tls-key"),
            (vec!["--public-url", "http://x"], "https://"),
            (vec!["--frobnicate"], "--frobnicate"),
            (vec!["--listen"], "needs a value"),
            (vec!["stray"], "stray"),
        ] {
            let err = parse(args.clone()).unwrap_err().to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn wildcard_listen_gives_a_loopback_base_url() {
        let c = Config::default();
        let v4: SocketAddr = "0.0.0.0:8443".parse().unwrap();
        assert_eq!(c.base_url(v4), "https://127.0.0.1:8443");
        assert!(c.needs_public_url(v4));
        let v6: SocketAddr = "[::]:8443".parse().unwrap();
        assert_eq!(c.base_url(v6), "https://[::1]:8443");
        let lo: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        assert!(!c.needs_public_url(lo));
        let c = Config {
            public_url: Some("https://panel.example:8443".into()),
            ..Config::default()
        };
        assert_eq!(c.base_url(v4), "https://panel.example:8443");
        assert!(!c.needs_public_url(v4));
    }

    #[test]
    fn public_host_handles_ipv6_and_paths() {
        let mut c = Config {
            public_url: Some("https://[::1]:8443/base".into()),
            ..Config::default()
        };
        assert_eq!(c.public_host().as_deref(), Some("::1"));
        c.public_url = Some("https://host.local/".into());
        assert_eq!(c.public_host().as_deref(), Some("host.local"));
        c.public_url = None;
        assert_eq!(c.public_host(), None);
    }
}
