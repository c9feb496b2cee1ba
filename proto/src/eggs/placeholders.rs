//! `{{…}}` placeholders in config-file values, expanded from an explicit context only.
//!
//! Supported (the forms the public eggs use, README.md "Survey"): the default allocation's
//! port and IP (`server.allocations.default.port`, `server.build.default.port`, `…ip`), the
//! memory limit in MiB (`server.build.memory`, `server.build.memory_limit`), the egg's
//! environment (`env.NAME`, `server.build.env.NAME`, `server.environment.NAME`,
//! `server.build.environment.NAME`) and, when the agent supplies it,
//! `config.docker.interface`. Anything else is left in place and reported. Nothing is ever
//! read from the process environment (CVE-2026-52855): the context is the only source.

/// What placeholders may expand to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    pub ip: String,
    pub port: u16,
    /// Memory limit in MiB.
    pub memory_mib: u64,
    /// The server's environment (the egg's variables plus `SERVER_*`), in order.
    pub env: Vec<(String, String)>,
    /// The address game servers reach the host by (Wings' `config.docker.interface`).
    pub docker_interface: Option<String>,
}

impl Context {
    fn env(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of one placeholder name, if the context knows it.
    pub fn lookup(&self, key: &str) -> Option<String> {
        const ENV_PREFIXES: &[&str] = &[
            "env.",
            "server.build.env.",
            "server.environment.",
            "server.build.environment.",
        ];
        for p in ENV_PREFIXES {
            if let Some(name) = key.strip_prefix(p) {
                return self.env(name).map(str::to_owned);
            }
        }
        match key {
            "server.allocations.default.port" | "server.build.default.port" => {
                Some(self.port.to_string())
            }
            "server.allocations.default.ip" | "server.build.default.ip" => Some(self.ip.clone()),
            "server.build.memory" | "server.build.memory_limit" => {
                Some(self.memory_mib.to_string())
            }
            "config.docker.interface" | "config.docker.network.interface" => {
                self.docker_interface.clone()
            }
            _ => None,
        }
    }
}

/// Expands every known `{{ key }}` in `s`; unknown ones stay as written and their keys are
/// appended to `unknown` (once each).
pub fn expand(s: &str, ctx: &Context, unknown: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let key = after[..end].trim();
        match valid_key(key).then(|| ctx.lookup(key)).flatten() {
            Some(v) => out.push_str(&v),
            None => {
                out.push_str(&rest[start..start + 2 + end + 2]);
                if !unknown.iter().any(|u| u == key) {
                    unknown.push(key.chars().take(128).collect());
                }
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            ip: "0.0.0.0".into(),
            port: 25565,
            memory_mib: 2048,
            env: vec![("MAX_PLAYERS".into(), "20".into())],
            docker_interface: None,
        }
    }

    #[test]
    fn known_forms_expand() {
        let mut u = Vec::new();
        let s = "{{server.allocations.default.port}} {{server.build.default.ip}}:{{ server.build.default.port }} \
                 {{server.build.memory}} {{env.MAX_PLAYERS}} {{server.build.env.MAX_PLAYERS}} {{server.environment.MAX_PLAYERS}}";
        assert_eq!(
            expand(s, &ctx(), &mut u),
            "25565 0.0.0.0:25565 2048 20 20 20"
        );
        assert!(u.is_empty());
    }

    #[test]
    fn unknown_stay_and_are_reported_never_from_process_env() {
        // PATH and HOME are set in every test process: they must not leak in.
        let mut u = Vec::new();
        let s = "{{env.PATH}} {{env.HOME}} {{config.docker.interface}} {{server.uuid}} {{env.PATH}} {{ bad key }} {{";
        let out = expand(s, &ctx(), &mut u);
        assert_eq!(out, s);
        assert_eq!(
            u,
            [
                "env.PATH",
                "env.HOME",
                "config.docker.interface",
                "server.uuid",
                "bad key"
            ]
        );
    }

    #[test]
    fn docker_interface_only_when_given() {
        let mut c = ctx();
        c.docker_interface = Some("172.18.0.1".into());
        let mut u = Vec::new();
        assert_eq!(
            expand("{{config.docker.interface}}$2", &c, &mut u),
            "172.18.0.1$2"
        );
    }
}
