//! The mass-death brake (pure): when many nodes are `dead` at once, a fault between the
//! panel and the nodes (its own network, a switch, a firewall change) is far more likely
//! than that many machines dying together — and failing every server over would start
//! copies on the few nodes left while the "dead" ones may still run theirs. So failover
//! pauses and says so until the operator resumes it.
//!
//! The rule: more than one node dead and at least half of all registered nodes dead. A
//! resume holds for the dead nodes of that moment: failover pauses again only if still
//! more die; once fewer than the threshold are dead, the next mass death pauses anew.

use serde_json::{Value, json};

use proto::time::format_rfc3339;

/// Whether `dead` of `total` nodes is a mass death.
pub fn is_mass_death(dead: usize, total: usize) -> bool {
    dead > 1 && dead.saturating_mul(2) >= total
}

/// Failover's pause switch.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pause {
    /// Why failover is paused (`None`: it runs).
    pub reason: Option<String>,
    /// Unix seconds the pause began.
    pub since: Option<u64>,
    /// Dead nodes when the operator resumed (a resume holds until more die).
    resumed_at: Option<usize>,
    /// The last count seen.
    pub dead: usize,
    pub total: usize,
}

/// What one look at the node count changed.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    None,
    Paused,
}

impl Pause {
    pub fn is_paused(&self) -> bool {
        self.reason.is_some()
    }

    /// Takes the current count of dead and registered nodes at `now`.
    pub fn observe(&mut self, dead: usize, total: usize, now: u64) -> Change {
        self.dead = dead;
        self.total = total;
        if !is_mass_death(dead, total) {
            self.resumed_at = None;
            return Change::None;
        }
        if self.is_paused() || self.resumed_at.is_some_and(|r| dead <= r) {
            return Change::None;
        }
        self.resumed_at = None;
        self.reason = Some(format!(
            "{dead} of {total} nodes are dead at once: more likely a network fault near the \
             panel than that many machines failing; failover is paused until an operator \
             resumes it (POST /api/failover/resume)"
        ));
        self.since = Some(now);
        Change::Paused
    }

    /// The operator resumes: failover runs for the nodes dead now.
    pub fn resume(&mut self) -> bool {
        let was = self.is_paused();
        self.reason = None;
        self.since = None;
        if is_mass_death(self.dead, self.total) {
            self.resumed_at = Some(self.dead);
        }
        was
    }

    pub fn to_json(&self) -> Value {
        json!({
            "paused": self.is_paused(),
            "reason": self.reason,
            "since": self.since.map(format_rfc3339),
            "deadNodes": self.dead,
            "nodes": self.total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_dead_node_is_no_mass_death_but_half_of_several_is() {
        assert!(!is_mass_death(1, 2));
        assert!(!is_mass_death(1, 1));
        assert!(!is_mass_death(2, 5));
        assert!(is_mass_death(2, 4));
        assert!(is_mass_death(3, 3));
        assert!(!is_mass_death(0, 0));
    }

    #[test]
    fn a_mass_death_pauses_once_and_a_resume_holds_until_more_die() {
        let mut p = Pause::default();
        assert_eq!(p.observe(1, 4, 10), Change::None);
        assert_eq!(p.observe(2, 4, 11), Change::Paused);
        assert!(p.is_paused() && p.since == Some(11));
        assert_eq!(p.observe(2, 4, 12), Change::None, "reported once");
        assert!(p.resume());
        assert!(!p.is_paused());
        assert_eq!(p.observe(2, 4, 13), Change::None, "the resume holds");
        assert_eq!(p.observe(3, 4, 14), Change::Paused, "more died");
        assert!(p.resume());
        assert_eq!(p.observe(1, 4, 15), Change::None, "recovered");
        assert_eq!(p.observe(2, 4, 16), Change::Paused, "a new mass death");
        assert!(p.to_json()["paused"].as_bool().unwrap());
    }
}
