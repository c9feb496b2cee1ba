//! Command-line flags (hand-parsed: a dozen flags do not need a parser crate).

use std::path::PathBuf;
use std::time::Duration;

pub use crate::viewers::SubscriberAuth;

pub const USAGE: &str = "\
usage: loadtest --panel URL --admin-token T --agents N --duration SECS
                [--ca-cert PEM] [--events-per-sec R] [--log-bytes B] [--subscribers K]
                [--command-rate C] [--connect-rate X] [--json FILE]
                [--panel-pid PID] [--storm] [--agents-file FILE] [--servers S]
                [--name-prefix P] [--no-resumption] [--filtered-subscribers F]
                [--subscriber-auth session|key|admin] [--rights-only] [--login-rate L]
                [--agent-threads T] [--mix] [--quiet]
       loadtest --panel URL --mix         (the busy evening, see below)

  --panel URL          panel base URL, e.g. https://127.0.0.1:8443
  --admin-token T      operator token (default: $PANEL_ADMIN_TOKEN)
  --agents N           simulated agents, all on one executor thread (see --agent-threads)
  --agent-threads T    executor threads the simulated agents are spread over, default 1
  --duration SECS      measured phase after every agent connected
  --ca-cert PEM        CA to trust (the panel's DATA/tls/panel.crt); default: system CAs
  --events-per-sec R   events per second in total (resource_update + server_log), default 0
  --log-bytes B        length of each server_log message, default 100
  --subscribers K      /api/events subscribers checking every event arrives, default 1
  --filtered-subscribers F
                       /api/events subscribers each filtered to one server (?serverId=, the
                       emitting agents' servers in turn), each checking it receives exactly
                       that server's events, default 0
  --subscriber-auth A  how each filtered subscriber authenticates: `session` (default: a
                       user of its own per subscriber, created for the run, subuser with
                       console.read of exactly its server, logged in; the socket carries the
                       session cookie and the panel's Origin, like a console tab), `key` (the
                       same users, each with an API key), `admin` (the admin token for all,
                       the pre-users mode, for comparison). The users are deleted afterwards
  --rights-only        the filtered subscribers' users open /api/events without ?serverId=:
                       the panel's rights check alone must keep other servers' events away
                       (misrouted must stay 0); needs session or key
  --command-rate C     operator REST commands per second (get_status, power), default 0
  --login-rate L       browser logins (POST /api/auth/login) per second over 20 users
                       created for the run (needs the panel's users routes), default 0
  --mix                the busy evening: defaults --agents 10000 --duration 60
                       --events-per-sec 100000 --filtered-subscribers 1000
                       --command-rate 100 --login-rate 20 (each flag given wins)
  --connect-rate X     new agent connections per second, default unlimited
  --json FILE          write the summary as JSON
  --panel-pid PID      panel process for RSS/CPU; default: found by the panel's port
  --storm              after the measured phase, drop every agent at once and time the recovery
  --agents-file FILE   reuse the registered agents saved there (registering and saving the rest)
  --servers S          agents that get a server (events and commands need one), default min(N, 1000)
  --name-prefix P      agent names are P-<i>, default \"lt\"
  --no-resumption      every agent connect is a full TLS handshake (default: each agent
                       resumes with the TLS 1.3 tickets the panel sent it)
  --quiet              no progress lines
";

/// Everything a run needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub panel: String,
    pub admin_token: String,
    pub agents: usize,
    pub agent_threads: usize,
    pub duration: Duration,
    pub ca_cert: Option<PathBuf>,
    pub events_per_sec: f64,
    pub log_bytes: usize,
    pub subscribers: usize,
    pub filtered_subscribers: usize,
    pub subscriber_auth: SubscriberAuth,
    pub rights_only: bool,
    pub login_rate: f64,
    pub command_rate: f64,
    pub connect_rate: f64,
    pub json: Option<PathBuf>,
    pub panel_pid: Option<u32>,
    pub storm: bool,
    pub agents_file: Option<PathBuf>,
    pub servers: usize,
    pub name_prefix: String,
    pub no_resumption: bool,
    pub quiet: bool,
}

impl Config {
    /// Parses the arguments after the program name. `env_token` is `$PANEL_ADMIN_TOKEN`.
    pub fn parse<I: IntoIterator<Item = String>>(
        args: I,
        env_token: Option<String>,
    ) -> Result<Config, String> {
        let mut panel = None;
        let mut admin_token = env_token.filter(|t| !t.is_empty());
        let mut agents = None;
        let mut duration = None;
        let mut c = Config {
            panel: String::new(),
            admin_token: String::new(),
            agents: 0,
            agent_threads: 1,
            duration: Duration::ZERO,
            ca_cert: None,
            events_per_sec: 0.0,
            log_bytes: 100,
            subscribers: 1,
            filtered_subscribers: 0,
            subscriber_auth: SubscriberAuth::Session,
            rights_only: false,
            login_rate: 0.0,
            command_rate: 0.0,
            connect_rate: 0.0,
            json: None,
            panel_pid: None,
            storm: false,
            agents_file: None,
            servers: usize::MAX,
            name_prefix: "lt".into(),
            no_resumption: false,
            quiet: false,
        };
        let mut mix = false;
        // Flags given explicitly (a `--mix` default never overrides one).
        let mut given = std::collections::HashSet::new();
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
                _ => (flag.clone(), None),
            };
            given.insert(name.clone());
            let mut value = || -> Result<String, String> {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match name.as_str() {
                "--panel" => panel = Some(value()?),
                "--admin-token" => admin_token = Some(value()?),
                "--agents" => agents = Some(num::<usize>(&name, &value()?)?),
                "--duration" => {
                    let secs = num::<f64>(&name, &value()?)?;
                    if !(secs.is_finite() && secs >= 0.0) {
                        return Err("--duration must be a number of seconds >= 0".into());
                    }
                    duration = Some(Duration::from_secs_f64(secs));
                }
                "--ca-cert" => c.ca_cert = Some(value()?.into()),
                "--events-per-sec" => c.events_per_sec = rate(&name, &value()?)?,
                "--log-bytes" => c.log_bytes = num(&name, &value()?)?,
                "--subscribers" => c.subscribers = num(&name, &value()?)?,
                "--filtered-subscribers" => c.filtered_subscribers = num(&name, &value()?)?,
                "--subscriber-auth" => {
                    let v = value()?;
                    c.subscriber_auth = SubscriberAuth::parse(&v).ok_or_else(|| {
                        format!("--subscriber-auth: {v:?} is not session, key or admin")
                    })?;
                }
                "--rights-only" => c.rights_only = true,
                "--agent-threads" => {
                    c.agent_threads = num(&name, &value()?)?;
                    if !(1..=64).contains(&c.agent_threads) {
                        return Err("--agent-threads must be 1 to 64".into());
                    }
                }
                "--command-rate" => c.command_rate = rate(&name, &value()?)?,
                "--login-rate" => c.login_rate = rate(&name, &value()?)?,
                "--mix" => mix = true,
                "--connect-rate" => c.connect_rate = rate(&name, &value()?)?,
                "--json" => c.json = Some(value()?.into()),
                "--panel-pid" => c.panel_pid = Some(num(&name, &value()?)?),
                "--agents-file" => c.agents_file = Some(value()?.into()),
                "--servers" => c.servers = num(&name, &value()?)?,
                "--name-prefix" => {
                    let p = value()?;
                    let ok = !p.is_empty()
                        && p.len() <= 40
                        && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                    if !ok {
                        return Err("--name-prefix: 1 to 40 letters, digits or '-'".into());
                    }
                    c.name_prefix = p;
                }
                "--storm" => c.storm = true,
                "--no-resumption" => c.no_resumption = true,
                "--quiet" => c.quiet = true,
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown flag {other}\n\n{USAGE}")),
            }
        }
        if mix {
            let unset = |f: &str| !given.contains(f);
            agents = agents.or(Some(10_000));
            duration = duration.or(Some(Duration::from_secs(60)));
            if unset("--events-per-sec") {
                c.events_per_sec = 100_000.0;
            }
            if unset("--filtered-subscribers") {
                c.filtered_subscribers = 1000;
            }
            if unset("--command-rate") {
                c.command_rate = 100.0;
            }
            if unset("--login-rate") {
                c.login_rate = 20.0;
            }
        }
        c.panel = panel.ok_or("--panel is required")?;
        c.admin_token = admin_token.ok_or("--admin-token (or $PANEL_ADMIN_TOKEN) is required")?;
        c.agents = agents.ok_or("--agents is required")?;
        c.duration = duration.ok_or("--duration is required")?;
        if c.agents == 0 {
            return Err("--agents must be at least 1".into());
        }
        if c.servers == usize::MAX {
            c.servers = c.agents.min(1000);
        }
        c.servers = c.servers.min(c.agents);
        if (c.events_per_sec > 0.0 || c.command_rate > 0.0) && c.servers == 0 {
            return Err("events and commands need --servers of at least 1".into());
        }
        if c.rights_only && c.subscriber_auth == SubscriberAuth::Admin {
            return Err("--rights-only needs users (--subscriber-auth session or key)".into());
        }
        if c.log_bytes > 512 * 1024 {
            return Err("--log-bytes must be at most 524288 (the frame limit is 1 MiB)".into());
        }
        Ok(c)
    }
}

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: {v:?} is not a valid number"))
}

fn rate(flag: &str, v: &str) -> Result<f64, String> {
    let r: f64 = num(flag, v)?;
    if !(r.is_finite() && r >= 0.0) {
        return Err(format!("{flag} must be >= 0"));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, String> {
        Config::parse(s.split_whitespace().map(String::from), None)
    }

    #[test]
    fn mix_fills_what_was_not_given() {
        let c = Config::parse(
            "--panel https://h --admin-token t --mix --command-rate 5"
                .split_whitespace()
                .map(String::from),
            None,
        )
        .unwrap();
        assert_eq!((c.agents, c.duration), (10_000, Duration::from_secs(60)));
        assert_eq!(c.events_per_sec, 100_000.0);
        assert_eq!(c.filtered_subscribers, 1000);
        assert_eq!((c.command_rate, c.login_rate), (5.0, 20.0));
        let plain = Config::parse(
            "--panel https://h --admin-token t --agents 3 --duration 1"
                .split_whitespace()
                .map(String::from),
            None,
        )
        .unwrap();
        assert_eq!((plain.filtered_subscribers, plain.login_rate), (0, 0.0));
    }

    #[test]
    fn minimal_and_defaults() {
        let c = parse("--panel https://127.0.0.1:8443 --admin-token t --agents 5 --duration 2")
            .unwrap();
        assert_eq!(c.agents, 5);
        assert_eq!(c.duration, Duration::from_secs(2));
        assert_eq!(c.subscribers, 1);
        assert_eq!(c.servers, 5);
        assert_eq!(c.connect_rate, 0.0);
        assert!(!c.storm);
        assert_eq!(c.subscriber_auth, SubscriberAuth::Session);
        assert_eq!(c.agent_threads, 1);
    }

    #[test]
    fn every_flag() {
        let c = parse(
            "--panel=https://h:1 --admin-token x --agents 10000 --duration 30 --ca-cert /c.pem \
             --events-per-sec 100000 --log-bytes 200 --subscribers 2 --command-rate 50 \
             --connect-rate 1000 --json out.json --panel-pid 42 --storm --agents-file a.json \
             --servers 2000 --name-prefix bench --quiet --subscriber-auth key --agent-threads 2",
        )
        .unwrap();
        assert_eq!(c.panel, "https://h:1");
        assert_eq!(c.ca_cert, Some("/c.pem".into()));
        assert_eq!(c.events_per_sec, 100000.0);
        assert_eq!((c.log_bytes, c.subscribers), (200, 2));
        assert_eq!((c.command_rate, c.connect_rate), (50.0, 1000.0));
        assert_eq!(c.json, Some("out.json".into()));
        assert_eq!(c.panel_pid, Some(42));
        assert!(c.storm && c.quiet);
        assert_eq!(c.agents_file, Some("a.json".into()));
        assert_eq!(c.servers, 2000);
        assert_eq!(c.name_prefix, "bench");
        assert_eq!(c.subscriber_auth, SubscriberAuth::Key);
        assert!(!c.rights_only);
        assert_eq!(c.agent_threads, 2);
        let r = parse("--panel https://h --admin-token t --agents 1 --duration 1 --rights-only")
            .unwrap();
        assert!(r.rights_only && r.subscriber_auth == SubscriberAuth::Session);
    }

    #[test]
    fn token_from_env() {
        let c = Config::parse(
            "--panel https://h --agents 1 --duration 1"
                .split_whitespace()
                .map(String::from),
            Some("envtok".into()),
        )
        .unwrap();
        assert_eq!(c.admin_token, "envtok");
    }

    #[test]
    fn errors() {
        for bad in [
            "--agents 1 --duration 1 --admin-token t",
            "--panel https://h --agents 1 --duration 1",
            "--panel https://h --admin-token t --agents 0 --duration 1",
            "--panel https://h --admin-token t --agents x --duration 1",
            "--panel https://h --admin-token t --agents 1 --duration -1",
            "--panel https://h --admin-token t --agents 1 --duration 1 --events-per-sec -5",
            "--panel https://h --admin-token t --agents 1 --duration 1 --bogus",
            "--panel https://h --admin-token t --agents 1 --duration 1 --json",
            "--panel https://h --admin-token t --agents 1 --duration 1 --servers 0 --command-rate 1",
            "--panel https://h --admin-token t --agents 1 --duration 1 --name-prefix a_b",
            "--panel https://h --admin-token t --agents 1 --duration 1 --subscriber-auth x",
            "--panel https://h --admin-token t --agents 1 --duration 1 --agent-threads 0",
            "--panel https://h --admin-token t --agents 1 --duration 1 --subscriber-auth admin --rights-only",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
