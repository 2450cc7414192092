//! Named environments: what each asks for, its lock and the state of its latest build.

use o16n_types::RuntimeType;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::on_unique_violation;
use crate::{Store, StoreError};

/// Where an environment's latest build stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvironmentState {
    /// Asked for; no compute node has started it yet.
    Pending,
    /// A compute node is building it.
    Building,
    /// Built; its lock is the one sessions and services use.
    Ready,
    /// The latest build failed; its log says why. A lock from an earlier build stays in use.
    Failed,
}

impl EnvironmentState {
    /// The name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            EnvironmentState::Pending => "Pending",
            EnvironmentState::Building => "Building",
            EnvironmentState::Ready => "Ready",
            EnvironmentState::Failed => "Failed",
        }
    }

    fn parse(text: &str) -> Option<EnvironmentState> {
        [
            EnvironmentState::Pending,
            EnvironmentState::Building,
            EnvironmentState::Ready,
            EnvironmentState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// A named environment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentRecord {
    /// Its name.
    pub name: String,
    /// The runtime it is for.
    pub runtime: RuntimeType,
    /// Who created it.
    pub owner: String,
    /// What it asks for (the compute interface's spec, as JSON).
    pub spec: String,
    /// Where the latest build stands.
    pub state: EnvironmentState,
    /// The exact packages of the last successful build; what nodes build from.
    pub lock: Option<String>,
    /// The lock's packages and versions, as JSON.
    pub packages: Option<String>,
    /// The latest build's log.
    pub log: String,
    /// How many builds were asked for.
    pub generation: i64,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// When the state last changed, Unix seconds.
    pub updated_at: i64,
}

const COLUMNS: &str =
    "name, runtime, owner, spec, state, lock, packages, log, generation, created_at, updated_at";

fn environment_from_row(row: &AnyRow) -> Result<EnvironmentRecord, StoreError> {
    let runtime: String = row.try_get("runtime")?;
    let state: String = row.try_get("state")?;
    Ok(EnvironmentRecord {
        name: row.try_get("name")?,
        runtime: runtime
            .parse()
            .map_err(|err| StoreError::Corrupt(format!("environment runtime: {err}")))?,
        owner: row.try_get("owner")?,
        spec: row.try_get("spec")?,
        state: EnvironmentState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("environment state `{state}`")))?,
        lock: row.try_get("lock")?,
        packages: row.try_get("packages")?,
        log: row.try_get("log")?,
        generation: row.try_get("generation")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// What a build reports when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentBuildOutcome {
    /// `Ready` or `Failed` (or `Building` when it starts).
    pub state: EnvironmentState,
    /// The new lock and its packages (JSON), when the build succeeded.
    pub lock: Option<(String, String)>,
    /// The build's log.
    pub log: String,
}

impl Store {
    /// Records a new environment (generation 1, pending); [`StoreError::Conflict`] when the
    /// name is taken.
    pub async fn insert_environment(&self, record: &EnvironmentRecord) -> Result<(), StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO environments ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        )))
        .bind(&record.name)
        .bind(record.runtime.as_str())
        .bind(&record.owner)
        .bind(&record.spec)
        .bind(record.state.as_str())
        .bind(record.lock.as_deref())
        .bind(record.packages.as_deref())
        .bind(&record.log)
        .bind(record.generation)
        .bind(record.created_at)
        .bind(record.updated_at)
        .execute(&self.pool)
        .await
        .map_err(on_unique_violation("environment"))?;
        Ok(())
    }

    /// One environment.
    pub async fn find_environment(
        &self,
        name: &str,
    ) -> Result<Option<EnvironmentRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM environments WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(environment_from_row).transpose()
    }

    /// Every environment, by name.
    pub async fn list_environments(&self) -> Result<Vec<EnvironmentRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM environments ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(environment_from_row).collect()
    }

    /// Asks for a new build of an existing environment with `spec`: pending, the next
    /// generation, the lock of the last good build kept. Returns the new generation, or `None`
    /// when the environment does not exist.
    pub async fn rebuild_environment(
        &self,
        name: &str,
        spec: &str,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "UPDATE environments SET spec = $1, state = $2, log = '', generation = generation + 1, \
             updated_at = $3 WHERE name = $4 RETURNING generation",
        )
        .bind(spec)
        .bind(EnvironmentState::Pending.as_str())
        .bind(now)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| row.try_get("generation")).transpose()?)
    }

    /// Records how build `generation` of an environment stands; ignored (returns false) when
    /// a newer build was asked for meanwhile or the environment is gone. A failure keeps the
    /// lock of the last good build.
    pub async fn record_environment_build(
        &self,
        name: &str,
        generation: i64,
        outcome: &EnvironmentBuildOutcome,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (lock, packages) = match &outcome.lock {
            Some((lock, packages)) => (Some(lock.as_str()), Some(packages.as_str())),
            None => (None, None),
        };
        let result = sqlx::query(
            "UPDATE environments SET state = $1, log = $2, lock = COALESCE($3, lock), \
             packages = COALESCE($4, packages), updated_at = $5 WHERE name = $6 AND generation = $7",
        )
        .bind(outcome.state.as_str())
        .bind(&outcome.log)
        .bind(lock)
        .bind(packages)
        .bind(now)
        .bind(name)
        .bind(generation)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Claims the oldest pending build, or a build whose claim was made before `stale_before`
    /// by a web node that then stopped: marked `Building` now. `None` when there is none, or
    /// when another node claimed it first.
    pub async fn claim_environment_build(
        &self,
        now: i64,
        stale_before: i64,
    ) -> Result<Option<EnvironmentRecord>, StoreError> {
        let candidate = sqlx::query(
            "SELECT name, generation FROM environments \
             WHERE state = $1 OR (state = $2 AND updated_at < $3) ORDER BY updated_at LIMIT 1",
        )
        .bind(EnvironmentState::Pending.as_str())
        .bind(EnvironmentState::Building.as_str())
        .bind(stale_before)
        .fetch_optional(&self.pool)
        .await?;
        let Some(candidate) = candidate else {
            return Ok(None);
        };
        let name: String = candidate.try_get("name")?;
        let generation: i64 = candidate.try_get("generation")?;
        let claimed = sqlx::query(
            "UPDATE environments SET state = $1, updated_at = $2 WHERE name = $3 AND generation = $4 \
             AND (state = $5 OR (state = $1 AND updated_at < $6))",
        )
        .bind(EnvironmentState::Building.as_str())
        .bind(now)
        .bind(&name)
        .bind(generation)
        .bind(EnvironmentState::Pending.as_str())
        .bind(stale_before)
        .execute(&self.pool)
        .await?;
        if claimed.rows_affected() == 0 {
            return Ok(None);
        }
        self.find_environment(&name).await
    }

    /// Deletes an environment unless a service version runs in it, in one statement so that a
    /// service published meanwhile cannot be left without its environment. Returns whether it
    /// was deleted; the caller tells "in use" from "unknown" with [`Store::services_in_environment`].
    pub async fn delete_environment(&self, name: &str) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "DELETE FROM environments WHERE name = $1 \
             AND NOT EXISTS (SELECT 1 FROM services WHERE environment = $1)",
        )
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    /// The service versions (`name/version`) that run in an environment.
    pub async fn services_in_environment(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, version FROM services WHERE environment = $1 ORDER BY name, version",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(format!(
                    "{}/{}",
                    row.try_get::<String, _>("name")?,
                    row.try_get::<String, _>("version")?
                ))
            })
            .collect()
    }
}
