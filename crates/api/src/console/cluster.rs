//! The cluster page: the status components as `GET /status` reports them and every compute
//! node with each of its pools' idle, busy, starting and waiting counts, refreshing every two
//! seconds.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use o16n_app::{App, Health, PoolHealth};

use super::{Nav, PageError, Viewer, render};

pub(super) fn router() -> Router<App> {
    Router::new().route("/cluster", get(show))
}

fn health(health: Health) -> &'static str {
    match health {
        Health::Pass => "pass",
        Health::Warn => "warn",
        Health::Fail => "fail",
    }
}

struct PoolRow {
    name: String,
    state: String,
    idle: usize,
    busy: usize,
    starting: usize,
    waiting: usize,
    max: usize,
}

struct NodeCard {
    endpoint: String,
    health: &'static str,
    problem: String,
    isolation: String,
    sessions: usize,
    pools: Vec<PoolRow>,
}

#[derive(Template)]
#[template(path = "console/cluster.html")]
struct ClusterPage {
    nav: Nav,
    health: &'static str,
    version: &'static str,
    database: String,
    database_health: &'static str,
    authentication: String,
    authentication_health: &'static str,
    compute_health: &'static str,
    nodes: Vec<NodeCard>,
}

async fn show(State(app): State<App>, viewer: Viewer) -> Result<Response, PageError> {
    let status = app.status().await;
    let nodes = status
        .nodes
        .into_iter()
        .map(|node| {
            let (isolation, sessions, pools) = match node.status {
                Some(status) => (
                    status
                        .isolation
                        .unwrap_or_else(|| "none: user code is not isolated".to_owned()),
                    status.sessions,
                    status
                        .pools
                        .into_iter()
                        .map(|pool| PoolRow {
                            name: match (&pool.service, &pool.environment) {
                                (Some(service), _) => {
                                    format!("{} · {service}", pool.runtime.as_str())
                                }
                                (None, Some(environment)) => {
                                    format!("{} · environment {environment}", pool.runtime.as_str())
                                }
                                (None, None) => format!("{} · shared", pool.runtime.as_str()),
                            },
                            state: match pool.health {
                                PoolHealth::Ready => "ready".to_owned(),
                                PoolHealth::Preparing(why) => format!("preparing: {why}"),
                                PoolHealth::Unavailable(why) => format!("unavailable: {why}"),
                            },
                            idle: pool.idle,
                            busy: pool.busy,
                            starting: pool.starting,
                            waiting: pool.waiting,
                            max: pool.max_size,
                        })
                        .collect(),
                ),
                None => (String::new(), 0, Vec::new()),
            };
            NodeCard {
                endpoint: node.endpoint,
                health: health(node.health),
                problem: node.problem.unwrap_or_default(),
                isolation,
                sessions,
                pools,
            }
        })
        .collect();
    let auth = &status.authentication;
    Ok(render(&ClusterPage {
        nav: viewer.nav("cluster"),
        health: health(status.health),
        version: status.version,
        database: match &status.database.problem {
            Some(problem) => format!("{}: {problem}", status.database.backend),
            None => status.database.backend.to_owned(),
        },
        database_health: health(status.database.health),
        authentication: match &auth.problem {
            Some(problem) => format!("{}: {problem}", auth.method),
            None => auth.method.to_owned(),
        },
        authentication_health: health(auth.health),
        compute_health: health(status.compute_health),
        nodes,
    }))
}
