//! Registered agents: identity, capabilities and token family.

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

use proto::rest::Capabilities;

use super::txn::{Db, JsonTable, put_json};
use super::{Store, StoreError};

pub(super) const AGENTS: JsonTable = JsonTable::new("agents");

/// The in-memory copy of [`AGENTS`].
pub(super) type Mirror = RwLock<HashMap<String, AgentRecord>>;

pub(super) fn load(db: &Db) -> Result<Mirror, StoreError> {
    Ok(RwLock::new(db.load_json(AGENTS)?))
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRecord {
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub port: u16,
    pub capabilities: Capabilities,
    /// Unix seconds.
    pub registered_at: u64,
    pub tokens: TokenFamily,
    /// Extension (node health): labels given at registration, matched by constraints.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extension (node health): drained by an operator — no new servers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
}

/// The agent's token family: every token issued to it carries `family`; only the refresh
/// token whose `jti` is `refresh_jti` may be used, once. Revocation kills the whole family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenFamily {
    pub family: String,
    pub refresh_jti: String,
    pub revoked: bool,
    /// Unix seconds of the last issue (registration or rotation).
    pub issued_at: u64,
}

/// Result of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current; the family now expects `new_jti`.
    Rotated,
    /// The token was valid once but already used: the family is now revoked.
    ReuseDetected,
    /// The family was already revoked, or belongs to an older registration.
    Revoked,
}

impl Store {
    pub fn put_agent(&self, rec: &AgentRecord) -> Result<(), StoreError> {
        let w = self.db.writer();
        w.commit(|txn| put_json(txn, AGENTS, &rec.id, rec))?;
        self.agents.write().insert(rec.id.clone(), rec.clone());
        Ok(())
    }

    pub fn agent(&self, id: &str) -> Option<AgentRecord> {
        self.agents.read().get(id).cloned()
    }

    /// Whether `id` is a registered agent (no copy of its record).
    pub fn has_agent(&self, id: &str) -> bool {
        self.agents.read().contains_key(id)
    }

    /// `f` of every agent, in no particular order, under the read lock: for loops that
    /// visit every agent each tick and need a few fields (no record copies, no sort).
    pub fn map_agents<T>(&self, f: impl FnMut(&AgentRecord) -> T) -> Vec<T> {
        self.agents.read().values().map(f).collect()
    }

    /// Every agent, ordered by registration time then id.
    pub fn agents(&self) -> Vec<AgentRecord> {
        let mut v: Vec<_> = self.agents.read().values().cloned().collect();
        v.sort_by(|a, b| (a.registered_at, &a.id).cmp(&(b.registered_at, &b.id)));
        v
    }

    /// Sets (durably) whether the agent is draining; `None` if there is no such agent.
    pub fn set_draining(
        &self,
        id: &str,
        draining: bool,
    ) -> Result<Option<AgentRecord>, StoreError> {
        let w = self.db.writer();
        let Some(mut rec) = self.agent(id) else {
            return Ok(None);
        };
        rec.draining = draining;
        w.commit(|txn| put_json(txn, AGENTS, &rec.id, &rec))?;
        self.agents.write().insert(rec.id.clone(), rec.clone());
        Ok(Some(rec))
    }

    /// Whether tokens of `family` are still honoured for `agent_id`.
    pub fn family_active(&self, agent_id: &str, family: &str) -> bool {
        self.agents
            .read()
            .get(agent_id)
            .is_some_and(|a| !a.tokens.revoked && a.tokens.family == family)
    }

    /// Presents refresh token `jti` of `family`: if it is the current one, `new_jti` becomes
    /// current (durably) and [`Rotation::Rotated`] is returned; if it is an older one the whole
    /// family is revoked (durably).
    pub fn rotate_refresh(
        &self,
        agent_id: &str,
        family: &str,
        jti: &str,
        new_jti: &str,
        now: u64,
    ) -> Result<Rotation, StoreError> {
        let w = self.db.writer();
        let Some(mut rec) = self.agent(agent_id) else {
            return Err(StoreError::UnknownAgent(agent_id.to_owned()));
        };
        if rec.tokens.revoked || rec.tokens.family != family {
            return Ok(Rotation::Revoked);
        }
        let outcome = if rec.tokens.refresh_jti == jti {
            rec.tokens.refresh_jti = new_jti.to_owned();
            rec.tokens.issued_at = now;
            Rotation::Rotated
        } else {
            rec.tokens.revoked = true;
            Rotation::ReuseDetected
        };
        w.commit(|txn| put_json(txn, AGENTS, &rec.id, &rec))?;
        self.agents.write().insert(rec.id.clone(), rec);
        Ok(outcome)
    }
}
