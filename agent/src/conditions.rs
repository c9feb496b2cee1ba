//! Node conditions for the heartbeat (extension, node health): what is wrong with this node
//! right now, as short machine-readable codes with a human message. The panel turns a node
//! with any condition `degraded` and shows the messages; placement then avoids it.
//!
//! Pure: the inputs are what the load sampler and the Docker probe last saw.

use proto::{Condition, SystemLoad};

/// Data disk use (percent of the filesystem holding the data dir) from which the node is
/// `disk_full`.
pub const DISK_FULL_PERCENT: f64 = 90.0;
/// Host memory in use (MemTotal − MemAvailable) from which the node is `memory_pressure`.
pub const MEMORY_PRESSURE_PERCENT: f64 = 95.0;

/// The conditions of a node whose Docker Engine answered (`docker_error` is `None`) or not,
/// under `load`.
pub fn conditions(docker_error: Option<&str>, load: &SystemLoad) -> Vec<Condition> {
    let mut out = Vec::new();
    if let Some(e) = docker_error {
        out.push(Condition {
            code: "docker_unreachable".into(),
            message: format!("the Docker Engine does not answer: {e}"),
        });
    }
    if load.disk >= DISK_FULL_PERCENT {
        out.push(Condition {
            code: "disk_full".into(),
            message: format!(
                "the data disk is {:.1} % full (limit {DISK_FULL_PERCENT} %)",
                load.disk
            ),
        });
    }
    if load.memory >= MEMORY_PRESSURE_PERCENT {
        out.push(Condition {
            code: "memory_pressure".into(),
            message: format!(
                "{:.1} % of the host's memory is in use (limit {MEMORY_PRESSURE_PERCENT} %)",
                load.memory
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(memory: f64, disk: f64) -> SystemLoad {
        SystemLoad {
            cpu: 50.0,
            memory,
            disk,
        }
    }

    #[test]
    fn a_well_node_has_none() {
        assert!(conditions(None, &load(50.0, 50.0)).is_empty());
        assert!(conditions(None, &load(94.9, 89.9)).is_empty());
    }

    #[test]
    fn each_threshold_names_its_condition() {
        let codes = |c: Vec<Condition>| c.into_iter().map(|c| c.code).collect::<Vec<_>>();
        assert_eq!(
            codes(conditions(Some("connection refused"), &load(10.0, 10.0))),
            ["docker_unreachable"]
        );
        assert_eq!(codes(conditions(None, &load(10.0, 90.0))), ["disk_full"]);
        assert_eq!(
            codes(conditions(None, &load(95.0, 10.0))),
            ["memory_pressure"]
        );
        let all = conditions(Some("gone"), &load(99.0, 99.0));
        assert_eq!(
            codes(all.clone()),
            ["docker_unreachable", "disk_full", "memory_pressure"]
        );
        assert!(all[0].message.contains("gone"));
        assert!(all[1].message.contains("99.0 %"));
    }
}
