//! The command line, exactly as `interfaces.md` fixes it:
//!
//! ```text
//! agent register --panel URL --admin-token TOKEN --name NAME [--ca-cert PEM] [--config PATH]
//! agent register --panel URL --token REGISTRATION_TOKEN --name NAME ...
//! agent run [--config PATH] [--docker-socket PATH] [--data-dir DIR]
//! ```
//!
//! plus `agent run --node-config PATH` (the operator's node policy, see `node.rs`) and
//! `--name-prefix P` (containers are named `P<serverId>`, default `ctrl-`) and
//! `--fence-after-secs N` (self-fencing of failover servers, default 120, 0 off).
//!
//! Hand-parsed (`--flag value` or `--flag=value`): two sub-commands do not justify a
//! dependency. `main.rs` only calls [`main`].

use crate::config::RunOptions;
use crate::register::{DEFAULT_REPORTED_PORT, RegisterArgs};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage:
  agent register --panel URL (--admin-token TOKEN | --token T) --name NAME
                 [--ca-cert PEM] [--config PATH] [--docker-socket PATH] [--hostname HOST]
                 [--label KEY=VALUE]...
  agent run [--config PATH] [--docker-socket PATH] [--data-dir DIR] [--node-config PATH]
            [--name-prefix P] [--fence-after-secs N]

  register  detects this node's capabilities, registers it with the panel and writes the
            identity and tokens to --config (default ./agent.json, mode 0600);
            --token takes a single-use registration token from the panel
            (POST /api/agents/registration-tokens) instead of the admin token
            --label (repeatable) tags the node for placement constraints
  run       connects to the panel and runs its game servers in Docker
            (default socket /var/run/docker.sock or DOCKER_HOST=unix://..., data ./agent-data);
            --node-config names a JSON file with the node's policy (caps, allowed
            registries, network, rate limits; see agent/README.md); containers are named
            <name-prefix><serverId> (default ctrl-), so agents can share one Docker Engine;
            --fence-after-secs: without the panel for N s, stop the failover-enabled
            servers (default 120, must stay below the panel's --dead-after-secs; 0 off)

  AGENT_LOG=error|warn|info|debug sets the log level (default info)";

/// A parsed command line.
#[derive(Debug, Clone)]
pub enum Cli {
    Register(RegisterArgs),
    Run(RunOptions),
    Help,
}

/// Splits `--flag value` / `--flag=value` pairs, refusing unknown flags and repeats.
fn flags(args: &[String], allowed: &[&str]) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument `{arg}`"));
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_owned(), v.to_owned()),
            None => {
                i += 1;
                let v = args
                    .get(i)
                    .ok_or_else(|| format!("--{flag} needs a value"))?
                    .clone();
                (flag.to_owned(), v)
            }
        };
        if !allowed.contains(&name.as_str()) {
            return Err(format!("unknown option --{name}"));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(format!("--{name} given twice"));
        }
        out.push((name, value));
        i += 1;
    }
    Ok(out)
}

/// Takes every `--label KEY=VALUE` (the one repeatable flag) out of `args`; the labels are
/// checked as the panel checks them.
fn labels(args: &[String]) -> Result<(BTreeMap<String, String>, Vec<String>), String> {
    let mut labels = BTreeMap::new();
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let value = if let Some(v) = args[i].strip_prefix("--label=") {
            v.to_owned()
        } else if args[i] == "--label" {
            i += 1;
            args.get(i)
                .ok_or_else(|| "--label needs KEY=VALUE".to_owned())?
                .clone()
        } else {
            rest.push(args[i].clone());
            i += 1;
            continue;
        };
        let (k, v) = value
            .split_once('=')
            .ok_or_else(|| format!("--label `{value}`: expected KEY=VALUE"))?;
        if labels.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(format!("--label {k} given twice"));
        }
        i += 1;
    }
    proto::rest::validate_labels("--label", &labels).map_err(|e| e.to_string())?;
    Ok((labels, rest))
}

fn take(flags: &mut Vec<(String, String)>, name: &str) -> Option<String> {
    let i = flags.iter().position(|(n, _)| n == name)?;
    Some(flags.remove(i).1)
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Cli, String> {
    let Some((sub, rest)) = args.split_first() else {
        return Err("missing sub-command".into());
    };
    match sub.as_str() {
        "-h" | "--help" | "help" => Ok(Cli::Help),
        "register" => {
            let (labels, rest) = labels(rest)?;
            let mut f = flags(
                &rest,
                &[
                    "panel",
                    "admin-token",
                    "token",
                    "name",
                    "ca-cert",
                    "config",
                    "docker-socket",
                    "hostname",
                ],
            )?;
            let need = |f: &mut Vec<(String, String)>, n: &str| {
                take(f, n)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("register needs --{n}"))
            };
            let panel = need(&mut f, "panel")?;
            // The bearer credential: the admin token or a registration token.
            let admin_token = match (take(&mut f, "admin-token"), take(&mut f, "token")) {
                (Some(t), None) | (None, Some(t)) if !t.is_empty() => t,
                (Some(_), Some(_)) => {
                    return Err("register takes --admin-token or --token, not both".into());
                }
                _ => return Err("register needs --admin-token (or --token)".into()),
            };
            let name = need(&mut f, "name")?;
            let docker_socket = match take(&mut f, "docker-socket") {
                Some(p) => PathBuf::from(p),
                None => crate::docker::socket_from_env().map_err(|e| e.to_string())?,
            };
            Ok(Cli::Register(RegisterArgs {
                panel,
                admin_token,
                name,
                ca_cert: take(&mut f, "ca-cert").map(PathBuf::from),
                config: PathBuf::from(
                    take(&mut f, "config").unwrap_or_else(|| crate::config::DEFAULT_CONFIG.into()),
                ),
                docker_socket,
                hostname: take(&mut f, "hostname"),
                port: DEFAULT_REPORTED_PORT,
                labels,
            }))
        }
        "run" => {
            let mut f = flags(
                rest,
                &[
                    "config",
                    "docker-socket",
                    "data-dir",
                    "node-config",
                    "name-prefix",
                    "fence-after-secs",
                ],
            )?;
            let mut opts = RunOptions::with_defaults().map_err(|e| e.to_string())?;
            if let Some(p) = take(&mut f, "config") {
                opts.config_path = PathBuf::from(p);
            }
            if let Some(p) = take(&mut f, "docker-socket") {
                opts.docker_socket = PathBuf::from(p);
            }
            if let Some(p) = take(&mut f, "data-dir") {
                opts.data_dir = PathBuf::from(p);
            }
            opts.node_config = take(&mut f, "node-config").map(PathBuf::from);
            if let Some(p) = take(&mut f, "name-prefix") {
                crate::servers::check_prefix(&p)?;
                opts.name_prefix = p;
            }
            if let Some(n) = take(&mut f, "fence-after-secs") {
                let secs: u64 =
                    n.parse().ok().filter(|s| *s <= 86_400).ok_or_else(|| {
                        format!("--fence-after-secs must be 0..=86400, not `{n}`")
                    })?;
                opts.fence_after = std::time::Duration::from_secs(secs);
            }
            Ok(Cli::Run(opts))
        }
        other => Err(format!("unknown sub-command `{other}`")),
    }
}

/// The whole program: parse, run, map the outcome to an exit code (0 ok, 1 failure,
/// 2 usage).
pub fn main(args: Vec<String>) -> i32 {
    ctrl_io::logger::init("AGENT_LOG", "agent");
    let cli = match parse(&args) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("agent: {e}\n{USAGE}");
            return 2;
        }
    };
    match cli {
        Cli::Help => {
            // A closed stdout (`agent --help | head`) is not worth a panic.
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            0
        }
        Cli::Register(args) => match smol::block_on(crate::register::register(&args)) {
            Ok(cfg) => {
                let _ = writeln!(
                    std::io::stdout(),
                    "registered as agent {} ({}); identity written to {}",
                    cfg.id,
                    cfg.name,
                    args.config.display()
                );
                0
            }
            Err(e) => {
                eprintln!("agent register: {e}");
                1
            }
        },
        Cli::Run(opts) => match crate::run::run(opts) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("agent run: {e}");
                1
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn register_needs_its_three_flags() {
        let Cli::Register(r) = parse(&args(
            "register --panel https://p:8443 --admin-token t --name node-01 --ca-cert ca.pem",
        ))
        .unwrap() else {
            panic!("not register")
        };
        assert_eq!(
            (r.panel.as_str(), r.admin_token.as_str(), r.name.as_str()),
            ("https://p:8443", "t", "node-01")
        );
        assert_eq!(r.ca_cert, Some(PathBuf::from("ca.pem")));
        assert_eq!(r.config, PathBuf::from("./agent.json"));
        let e = parse(&args("register --panel https://p --name n")).unwrap_err();
        assert!(e.contains("--admin-token"), "{e}");
        let Cli::Register(r) = parse(&args(
            "register --panel https://p:8443 --token rt_abc --name n1",
        ))
        .unwrap() else {
            panic!("register expected")
        };
        assert_eq!(r.admin_token, "rt_abc");
        let e = parse(&args(
            "register --panel https://p --token a --admin-token b --name n",
        ))
        .unwrap_err();
        assert!(e.contains("not both"), "{e}");
        assert!(
            parse(&args("register --panel"))
                .unwrap_err()
                .contains("needs a value")
        );
    }

    #[test]
    fn labels_repeat_and_are_checked() {
        let Cli::Register(r) = parse(&args(
            "register --panel https://p --admin-token t --name n --label region=eu --label=tier=gold",
        ))
        .unwrap() else {
            panic!("not register")
        };
        assert_eq!(r.labels.len(), 2);
        assert_eq!(r.labels["region"], "eu");
        assert_eq!(r.labels["tier"], "gold");
        let base = "register --panel https://p --admin-token t --name n";
        for bad in [
            "--label region",
            "--label a=1 --label a=2",
            "--label bad key=x",
            "--label",
        ] {
            assert!(parse(&args(&format!("{base} {bad}"))).is_err(), "{bad}");
        }
    }

    #[test]
    fn run_has_defaults_and_accepts_equals_form() {
        let Cli::Run(o) = parse(&args("run --data-dir=/d --docker-socket /s.sock")).unwrap() else {
            panic!("not run")
        };
        assert_eq!(o.data_dir, PathBuf::from("/d"));
        assert_eq!(o.docker_socket, PathBuf::from("/s.sock"));
        assert_eq!(o.config_path, PathBuf::from("./agent.json"));
        assert_eq!(o.node_config, None);
        assert_eq!(o.name_prefix, "ctrl-");
        let Cli::Run(o) = parse(&args(
            "run --node-config /etc/ctrl/node.json --name-prefix b-",
        ))
        .unwrap() else {
            panic!("not run")
        };
        assert_eq!(o.node_config, Some(PathBuf::from("/etc/ctrl/node.json")));
        assert_eq!(o.name_prefix, "b-");
        assert_eq!(o.fence_after, crate::config::DEFAULT_FENCE_AFTER);
        let Ok(Cli::Run(o)) = parse(&args("run --fence-after-secs 7")) else {
            panic!("run")
        };
        assert_eq!(o.fence_after.as_secs(), 7);
        assert!(
            parse(&args("run --fence-after-secs -1"))
                .unwrap_err()
                .contains("--fence-after-secs")
        );
        assert!(
            parse(&args("run --name-prefix a.b"))
                .unwrap_err()
                .contains("--name-prefix")
        );
        assert!(
            parse(&args("run --bogus 1"))
                .unwrap_err()
                .contains("--bogus")
        );
        assert!(
            parse(&args("run --config a --config b"))
                .unwrap_err()
                .contains("twice")
        );
        assert!(parse(&args("fly")).is_err());
        assert!(parse(&[]).is_err());
        assert!(matches!(parse(&args("--help")), Ok(Cli::Help)));
    }
}
