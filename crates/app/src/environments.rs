//! Named environments (an o16n extension): the packages a session or service needs beyond its
//! runtime's default.
//!
//! Creating or changing an environment records it as `Pending`; every web node runs a builder
//! that claims pending builds in the database (one node wins each), has a compute node resolve
//! the spec into a lock, and records the lock and the log. Sessions and services name an
//! environment; what travels to a compute node is its lock, from which the node builds it when
//! it has no build of that lock yet, so every node runs the same packages. A failed rebuild
//! keeps the lock of the last good build, so nothing running on it breaks.
//!
//! What a requirement may name is checked here, before anything is built: only packages from
//! the configured index and repositories, unless the operator allows other sources.

use std::time::Duration;

use o16n_compute::{
    ComputeCall, EnvironmentBuild, EnvironmentRef, EnvironmentSpec, ResolvedPackage,
};
use o16n_store::{EnvironmentBuildOutcome, EnvironmentRecord, EnvironmentState};
use o16n_types::{Role, RuntimeType};
use tokio_util::sync::CancellationToken;

use crate::{App, AppError, Principal};

/// The default environment of each runtime, by name: what sessions and services without an
/// environment run in.
pub const DEFAULT_ENVIRONMENTS: [(&str, RuntimeType); 2] = [
    ("python-default", RuntimeType::Python),
    ("r-default", RuntimeType::R),
];

/// The pinned packages of the default Python environment.
const DEFAULT_PYTHON_REQUIREMENTS: &str = include_str!("../../../workers/python/requirements.txt");

/// The longest requirements text accepted.
const MAX_REQUIREMENTS_BYTES: usize = 64 * 1024;
/// The most R packages one environment may ask for.
const MAX_R_PACKAGES: usize = 200;

/// What the operator allows environments to take packages from.
#[derive(Debug, Clone)]
pub struct EnvironmentPolicy {
    /// Whether requirement lines may point elsewhere than the configured index (URLs, VCS,
    /// paths, index options) and R environments name other repositories.
    pub allow_other_sources: bool,
    /// The R repositories configured on the compute nodes.
    pub r_repositories: Vec<String>,
    /// How long a build may run on a compute node; a build claimed longer ago than this (and
    /// a minute) by a web node that stopped is claimed again.
    pub build_timeout: Duration,
}

/// An environment as callers see it.
#[derive(Debug, Clone)]
pub struct EnvironmentView {
    /// Its name.
    pub name: String,
    /// Its runtime.
    pub runtime: RuntimeType,
    /// Who created it (`None` for the defaults).
    pub owner: Option<String>,
    /// Where its latest build stands.
    pub state: EnvironmentState,
    /// What it asks for.
    pub spec: Option<EnvironmentSpec>,
    /// The packages of its lock, with their versions.
    pub packages: Vec<ResolvedPackage>,
    /// The lock itself.
    pub lock: Option<String>,
    /// The latest build's log.
    pub log: String,
    /// Whether this is a runtime's default environment.
    pub is_default: bool,
    /// Creation and last change, Unix seconds.
    pub created_at: i64,
    /// When the state last changed, Unix seconds.
    pub updated_at: i64,
}

impl App {
    /// Creates an environment, or asks for a new build of an existing one with a new spec.
    /// Returns the environment and whether it was created.
    #[tracing::instrument(skip_all, fields(user = %caller.username, environment = name))]
    pub async fn put_environment(
        &self,
        caller: &Principal,
        name: &str,
        spec: EnvironmentSpec,
    ) -> Result<(EnvironmentView, bool), AppError> {
        check_name(name)?;
        if caller.role < Role::Contributor {
            return Err(AppError::Forbidden(
                "Readers cannot create or change environments".to_owned(),
            ));
        }
        check_spec(&spec, &self.config().environments)?;
        let spec_text = serde_json::to_string(&spec)
            .map_err(|err| AppError::Internal(format!("cannot encode a spec: {err}")))?;
        let now = self.now_unix();
        let created = match self.store().find_environment(name).await? {
            Some(existing) => {
                ensure_may_change(caller, &existing, "change")?;
                if existing.runtime != spec.runtime() {
                    return Err(AppError::InvalidInput(format!(
                        "environment `{name}` is for {}; its runtime cannot change to {}",
                        existing.runtime,
                        spec.runtime()
                    )));
                }
                if self
                    .store()
                    .rebuild_environment(name, &spec_text, now)
                    .await?
                    .is_none()
                {
                    return Err(environment_not_found(name));
                }
                false
            }
            None => {
                let record = EnvironmentRecord {
                    name: name.to_owned(),
                    runtime: spec.runtime(),
                    owner: caller.username.to_string(),
                    spec: spec_text,
                    state: EnvironmentState::Pending,
                    lock: None,
                    packages: None,
                    log: String::new(),
                    generation: 1,
                    created_at: now,
                    updated_at: now,
                };
                match self.store().insert_environment(&record).await {
                    Err(o16n_store::StoreError::Conflict(_)) => {
                        return Err(AppError::Conflict(format!(
                            "environment `{name}` was created meanwhile; send the request again to change it"
                        )));
                    }
                    other => other?,
                }
                true
            }
        };
        self.announce(&crate::events::Event::EnvironmentBuild).await;
        self.inner_environment_builds().notify_one();
        tracing::info!(created, "environment build asked for");
        Ok((self.environment(caller, name).await?, created))
    }

    /// Every environment, the runtimes' defaults first.
    pub async fn environments(
        &self,
        _caller: &Principal,
    ) -> Result<Vec<EnvironmentView>, AppError> {
        let mut views: Vec<EnvironmentView> = DEFAULT_ENVIRONMENTS
            .iter()
            .map(|(name, runtime)| default_view(name, *runtime))
            .collect();
        for record in self.store().list_environments().await? {
            views.push(view(record)?);
        }
        Ok(views)
    }

    /// One environment; everyone may read every environment.
    pub async fn environment(
        &self,
        _caller: &Principal,
        name: &str,
    ) -> Result<EnvironmentView, AppError> {
        if let Some((name, runtime)) = DEFAULT_ENVIRONMENTS
            .iter()
            .find(|(known, _)| *known == name)
        {
            return Ok(default_view(name, *runtime));
        }
        let record = self
            .store()
            .find_environment(name)
            .await?
            .ok_or_else(|| environment_not_found(name))?;
        view(record)
    }

    /// Deletes an environment nothing is published in. Compute nodes keep their builds (a
    /// session running in it goes on).
    #[tracing::instrument(skip_all, fields(user = %caller.username, environment = name))]
    pub async fn delete_environment(&self, caller: &Principal, name: &str) -> Result<(), AppError> {
        if DEFAULT_ENVIRONMENTS.iter().any(|(known, _)| *known == name) {
            return Err(AppError::InvalidInput(format!(
                "`{name}` is a runtime's default environment and cannot be deleted"
            )));
        }
        let record = self
            .store()
            .find_environment(name)
            .await?
            .ok_or_else(|| environment_not_found(name))?;
        ensure_may_change(caller, &record, "delete")?;
        if !self.store().delete_environment(name).await? {
            let users = self.store().services_in_environment(name).await?;
            if users.is_empty() {
                return Err(environment_not_found(name));
            }
            return Err(AppError::Conflict(format!(
                "environment `{name}` is used by the web services {}; delete them or move them to another environment first",
                users.join(", ")
            )));
        }
        tracing::info!("environment deleted");
        Ok(())
    }

    /// The environment a session or service asks to run in, as compute nodes get it: `None`
    /// for the runtime's default. Unknown is a bad request; not built yet is a conflict.
    pub(crate) async fn environment_for_use(
        &self,
        name: Option<&str>,
        runtime: RuntimeType,
    ) -> Result<Option<EnvironmentRef>, AppError> {
        let Some(name) = name else {
            return Ok(None);
        };
        if let Some((known, default_runtime)) = DEFAULT_ENVIRONMENTS
            .iter()
            .find(|(known, _)| *known == name)
        {
            if *default_runtime != runtime {
                return Err(wrong_runtime(known, *default_runtime, runtime));
            }
            return Ok(None);
        }
        let record = self.store().find_environment(name).await?.ok_or_else(|| {
            AppError::InvalidInput(format!(
                "there is no environment `{name}`; GET /environments lists them"
            ))
        })?;
        if record.runtime != runtime {
            return Err(wrong_runtime(name, record.runtime, runtime));
        }
        let Some(lock) = record.lock else {
            return Err(AppError::Conflict(format!(
                "environment `{name}` is not ready yet (it is {}); try again once GET /environments/{name} says Ready",
                record.state.as_str()
            )));
        };
        Ok(Some(EnvironmentRef {
            name: record.name,
            runtime,
            lock,
        }))
    }

    /// Runs the builds this web node claims until `stop`: woken when a build is asked for
    /// (here or, through an announcement, on another node) and every `poll` besides.
    pub async fn run_environment_builder(&self, poll: Duration, stop: CancellationToken) {
        loop {
            while let Some(record) = self.claim_environment_build().await {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = self.build_environment(record) => {}
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.inner_environment_builds().notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// A pending build (or one whose web node stopped) claimed for this node.
    async fn claim_environment_build(&self) -> Option<EnvironmentRecord> {
        let now = self.now_unix();
        let stale_before = now - self.config().environments.build_timeout.as_secs() as i64 - 60;
        match self
            .store()
            .claim_environment_build(now, stale_before)
            .await
        {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::warn!(error = %err, "cannot look for environment builds");
                None
            }
        }
    }

    /// Has a compute node resolve and build a claimed environment, and records the outcome.
    async fn build_environment(&self, record: EnvironmentRecord) {
        let outcome = match self.resolve_on_a_node(&record).await {
            Ok(report) if report.success => {
                let packages = serde_json::to_string(&report.packages).unwrap_or_default();
                EnvironmentBuildOutcome {
                    state: EnvironmentState::Ready,
                    lock: report.lock.map(|lock| (lock, packages)),
                    log: format!("{}\nbuilt in {} ms\n", report.log, report.duration_ms),
                }
            }
            Ok(report) => EnvironmentBuildOutcome {
                state: EnvironmentState::Failed,
                lock: None,
                log: format!("{}\nfailed after {} ms\n", report.log, report.duration_ms),
            },
            Err(err) => EnvironmentBuildOutcome {
                state: EnvironmentState::Failed,
                lock: None,
                log: format!("the build could not run: {err}\n"),
            },
        };
        tracing::info!(environment = %record.name, state = outcome.state.as_str(), "environment built");
        match self
            .store()
            .record_environment_build(&record.name, record.generation, &outcome, self.now_unix())
            .await
        {
            Ok(true) => {
                // Services in the environment pick the new lock up at once on every node.
                self.forget_all_services();
                self.announce(&crate::events::Event::EnvironmentBuilt).await;
            }
            Ok(false) => {
                tracing::info!(environment = %record.name, "a newer build was asked for; this one is not recorded");
            }
            Err(err) => {
                tracing::error!(environment = %record.name, error = %err, "cannot record an environment build");
            }
        }
    }

    async fn resolve_on_a_node(
        &self,
        record: &EnvironmentRecord,
    ) -> Result<o16n_compute::EnvironmentBuildReport, AppError> {
        let spec: EnvironmentSpec = serde_json::from_str(&record.spec)
            .map_err(|err| AppError::Internal(format!("environment spec: {err}")))?;
        let node = self.nodes().for_session(record.runtime)?;
        Ok(node
            .compute
            .ask(ComputeCall::BuildEnvironment(EnvironmentBuild {
                name: record.name.clone(),
                spec,
                lock: None,
            }))
            .await?)
    }
}

fn default_view(name: &str, runtime: RuntimeType) -> EnvironmentView {
    let (packages, log) = match runtime {
        RuntimeType::Python => (
            o16n_compute::lock_packages(RuntimeType::Python, DEFAULT_PYTHON_REQUIREMENTS),
            "the managed Python environment of every compute node (o16n runtime setup python)",
        ),
        RuntimeType::R => (
            Vec::new(),
            "the R installation of every compute node and the packages installed with it",
        ),
    };
    EnvironmentView {
        name: name.to_owned(),
        runtime,
        owner: None,
        state: EnvironmentState::Ready,
        spec: None,
        packages,
        lock: None,
        log: log.to_owned(),
        is_default: true,
        created_at: 0,
        updated_at: 0,
    }
}

fn view(record: EnvironmentRecord) -> Result<EnvironmentView, AppError> {
    let corrupt = |what: &str, err: serde_json::Error| {
        AppError::Internal(format!("environment `{}` {what}: {err}", record.name))
    };
    let spec = serde_json::from_str(&record.spec).map_err(|err| corrupt("spec", err))?;
    let packages = match &record.packages {
        Some(text) => serde_json::from_str(text).map_err(|err| corrupt("packages", err))?,
        None => Vec::new(),
    };
    Ok(EnvironmentView {
        name: record.name.clone(),
        runtime: record.runtime,
        owner: Some(record.owner),
        state: record.state,
        spec: Some(spec),
        packages,
        lock: record.lock,
        log: record.log,
        is_default: false,
        created_at: record.created_at,
        updated_at: record.updated_at,
    })
}

fn ensure_may_change(
    caller: &Principal,
    record: &EnvironmentRecord,
    what: &str,
) -> Result<(), AppError> {
    if caller.role == Role::Owner
        || (caller.role >= Role::Contributor && record.owner == caller.username.as_str())
    {
        return Ok(());
    }
    Err(AppError::Forbidden(format!(
        "environment `{}` belongs to another user; only they or an Owner may {what} it",
        record.name
    )))
}

fn environment_not_found(name: &str) -> AppError {
    AppError::NotFound(format!("there is no environment `{name}`"))
}

fn wrong_runtime(name: &str, environment: RuntimeType, asked: RuntimeType) -> AppError {
    AppError::InvalidInput(format!(
        "environment `{name}` is for {environment}, not {asked}"
    ))
}

/// Environment names: a letter or digit, then letters, digits, `.`, `_` and `-`, at most 64,
/// and not a default's name.
fn check_name(name: &str) -> Result<(), AppError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid {
        return Err(AppError::InvalidInput(
            "an environment name is 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit".to_owned(),
        ));
    }
    if DEFAULT_ENVIRONMENTS.iter().any(|(known, _)| *known == name) {
        return Err(AppError::InvalidInput(format!(
            "`{name}` is a runtime's default environment; it changes with the server, not through the API"
        )));
    }
    Ok(())
}

/// Checks what an environment asks for: well-formed, and only from the configured sources
/// unless the operator allows others.
pub(crate) fn check_spec(
    spec: &EnvironmentSpec,
    policy: &EnvironmentPolicy,
) -> Result<(), AppError> {
    match spec {
        EnvironmentSpec::Python { requirements } => {
            check_requirements(requirements, policy.allow_other_sources)
        }
        EnvironmentSpec::R {
            packages,
            repositories,
        } => {
            if packages.is_empty() || packages.len() > MAX_R_PACKAGES {
                return Err(AppError::InvalidInput(format!(
                    "an R environment names 1 to {MAX_R_PACKAGES} packages"
                )));
            }
            for package in packages {
                let valid = package.len() <= 100
                    && package
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic())
                    && package
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.');
                if !valid {
                    return Err(AppError::InvalidInput(format!(
                        "`{package}` is not an R package name"
                    )));
                }
            }
            let normal = |url: &str| url.trim_end_matches('/').to_owned();
            for repository in repositories {
                let known = policy
                    .r_repositories
                    .iter()
                    .any(|known| normal(known) == normal(repository));
                if !known && !policy.allow_other_sources {
                    return Err(AppError::InvalidInput(format!(
                        "the repository {repository} is not one this server takes R packages from ({})",
                        policy.r_repositories.join(", ")
                    )));
                }
            }
            Ok(())
        }
    }
}

/// Requirement lines are package names with extras, version specifiers and markers; lines
/// that name another source (options such as `--index-url` or `-e`, URLs, VCS, paths, direct
/// references with `@`) are refused unless allowed.
fn check_requirements(requirements: &str, allow_other_sources: bool) -> Result<(), AppError> {
    if requirements.len() > MAX_REQUIREMENTS_BYTES {
        return Err(AppError::InvalidInput(format!(
            "the requirements are longer than {} KiB",
            MAX_REQUIREMENTS_BYTES / 1024
        )));
    }
    let mut count = 0;
    for (number, raw) in requirements.lines().enumerate() {
        let line = match raw.find(" #").or_else(|| raw.starts_with('#').then_some(0)) {
            Some(comment) => &raw[..comment],
            None => raw,
        }
        .trim();
        if line.is_empty() {
            continue;
        }
        count += 1;
        let points_elsewhere = line.starts_with('-')
            || line.contains("://")
            || line.contains('@')
            || line.starts_with('.')
            || line.starts_with('/')
            || line.starts_with('~');
        if points_elsewhere && !allow_other_sources {
            return Err(AppError::InvalidInput(format!(
                "requirement line {} (`{line}`) points elsewhere than the configured package index; \
                 only package names with versions are accepted (the operator may allow other sources \
                 with environments.allow_other_sources)",
                number + 1
            )));
        }
        let starts_like_a_name = line
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        if !points_elsewhere && !starts_like_a_name {
            return Err(AppError::InvalidInput(format!(
                "requirement line {} (`{line}`) is not a package requirement",
                number + 1
            )));
        }
    }
    if count == 0 {
        return Err(AppError::InvalidInput(
            "the requirements name no package".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: bool) -> EnvironmentPolicy {
        EnvironmentPolicy {
            allow_other_sources: allow,
            r_repositories: vec!["https://cran.example.org".to_owned()],
            build_timeout: Duration::from_secs(60),
        }
    }

    fn python(requirements: &str) -> EnvironmentSpec {
        EnvironmentSpec::Python {
            requirements: requirements.to_owned(),
        }
    }

    #[test]
    fn names_versions_extras_and_markers_are_requirements() {
        let text = "# a comment\nlightgbm==4.5.0\nscikit-learn>=1.5,<2  # trailing\n\
                    requests[socks] ; python_version >= '3.8'\n";
        assert!(check_spec(&python(text), &policy(false)).is_ok());
    }

    #[test]
    fn other_sources_are_refused_unless_allowed() {
        for line in [
            "--index-url https://evil.example/simple",
            "-i https://evil.example/simple",
            "--extra-index-url https://evil.example/simple",
            "-e git+https://github.com/x/y",
            "git+https://github.com/x/y#egg=y",
            "y @ https://evil.example/y.whl",
            "./local/package",
            "/abs/path/y.whl",
            "-r other.txt",
        ] {
            let refused = check_spec(&python(line), &policy(false)).unwrap_err();
            assert!(
                refused.to_string().contains("points elsewhere"),
                "{line}: {refused}"
            );
            assert!(check_spec(&python(line), &policy(true)).is_ok(), "{line}");
        }
    }

    #[test]
    fn empty_and_garbage_requirements_are_refused() {
        assert!(check_spec(&python("# nothing\n\n"), &policy(false)).is_err());
        assert!(check_spec(&python("!!!"), &policy(false)).is_err());
        assert!(check_spec(&python(&"x\n".repeat(40_000)), &policy(false)).is_err());
    }

    #[test]
    fn r_packages_come_from_configured_repositories() {
        let spec = |packages: &[&str], repositories: &[&str]| EnvironmentSpec::R {
            packages: packages.iter().map(|p| p.to_string()).collect(),
            repositories: repositories.iter().map(|r| r.to_string()).collect(),
        };
        assert!(check_spec(&spec(&["data.table"], &[]), &policy(false)).is_ok());
        assert!(
            check_spec(
                &spec(&["x"], &["https://cran.example.org/"]),
                &policy(false)
            )
            .is_ok()
        );
        assert!(check_spec(&spec(&["x"], &["https://evil.example"]), &policy(false)).is_err());
        assert!(check_spec(&spec(&["x"], &["https://evil.example"]), &policy(true)).is_ok());
        assert!(check_spec(&spec(&["x; system('id')"], &[]), &policy(false)).is_err());
        assert!(check_spec(&spec(&[], &[]), &policy(false)).is_err());
    }

    #[test]
    fn default_names_and_bad_names_are_refused() {
        assert!(check_name("lightgbm-4").is_ok());
        for name in ["", "-x", "a/b", "a b", "python-default", &"x".repeat(65)] {
            assert!(check_name(name).is_err(), "{name}");
        }
    }
}
