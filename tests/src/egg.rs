//! Eggs for the fakegame image, with a free host port per server.

use serde_json::{Value, json};

use crate::{FAKEGAME_IMAGE, free_port};

/// Content `fakegame --write-file` writes.
pub const FILE_CONTENT: &str = "fakegame test file\nline two: ok\n";

/// A fakegame egg listening on a fresh port `P` mapped `P:P` (so `SERVER_PORT` is right
/// whether the agent passes the container or the host port), with `extra` flags appended
/// to the startup line, the Minecraft query on that port, and no `stop` section (so the
/// signal given to `stop_server` is what stops it).
pub fn fakegame(extra: &str) -> (Value, u16) {
    let port = free_port();
    let egg = json!({
        "name": "fakegame",
        "image": FAKEGAME_IMAGE,
        "ports": { port.to_string(): port },
        "environment": { "MAX_PLAYERS": "7" },
        "limits": { "memory": "128m", "cpu": "0.1", "disk": "1g" },
        "startup": format!("fakegame --port {{{{SERVER_PORT}}}} --max-players {{{{MAX_PLAYERS}}}} {extra}"),
        "query": { "type": "minecraft", "port": port }
    });
    (egg, port)
}

/// The repository's example egg, `tests/fakegame/egg.json`.
pub fn example() -> Value {
    let path = crate::repo_root().join("tests/fakegame/egg.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
