//! `o16n admin diagnostic run`: checks a running server step by step as the reference's
//! diagnostic tests did (configuration, database, authentication, every compute node and
//! runtime, then a small R and a small Python service published, consumed and deleted), and
//! reports each step as passed or failed with the reason.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::remote::RemoteServer;

/// One step's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub step: String,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    fn pass(step: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            step: step.into(),
            passed: true,
            detail: detail.into(),
        }
    }

    fn fail(step: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            step: step.into(),
            passed: false,
            detail: detail.into(),
        }
    }
}

/// Runs every step, printing each as it completes. Steps after a failed sign-in are skipped.
pub async fn run(url: &str, user: &str, password: &str, configuration: String) -> Vec<Check> {
    let mut checks = vec![Check::pass("configuration", configuration)];
    print(checks.last());
    let server = match RemoteServer::sign_in(url, user, password).await {
        Ok(server) => {
            checks.push(Check::pass(
                "authentication",
                format!("signed in to {url} as {user}"),
            ));
            server
        }
        Err(err) => {
            checks.push(Check::fail("authentication", format!("{err:#}")));
            print(checks.last());
            return checks;
        }
    };
    print(checks.last());
    let status = match server.call(Method::GET, "/status", None).await {
        Ok(answer) if answer.status == StatusCode::OK => answer.body,
        Ok(answer) => {
            checks.push(Check::fail("status", answer.problem()));
            print(checks.last());
            return checks;
        }
        Err(err) => {
            checks.push(Check::fail("status", format!("{err:#}")));
            print(checks.last());
            return checks;
        }
    };
    for check in status_checks(&status) {
        checks.push(check);
        print(checks.last());
    }
    for (runtime, code) in [("R", "y <- x * 2"), ("Python", "y = x * 2")] {
        checks.push(service_check(&server, runtime, code).await);
        print(checks.last());
    }
    checks
}

fn print(check: Option<&Check>) {
    if let Some(check) = check {
        let verdict = if check.passed { "PASS" } else { "FAIL" };
        println!("{verdict}  {}: {}", check.step, check.detail);
    }
}

/// The database, and every compute node with its runtimes, from a `/status` answer.
fn status_checks(status: &Value) -> Vec<Check> {
    let components = &status["components"];
    let mut checks = Vec::new();
    let database = &components["database"];
    checks.push(component_check(
        "database",
        database,
        format!(
            "{} answers",
            database["details"]["type"]
                .as_str()
                .unwrap_or("the database")
        ),
    ));
    // A web node reports each compute node under `backends`; the one-box server its own
    // runtimes under `runtimes`.
    let nodes: Vec<(String, &Value)> = match components["backends"]["components"].as_object() {
        Some(nodes) => nodes
            .iter()
            .map(|(endpoint, node)| (endpoint.clone(), node))
            .collect(),
        None => vec![("local".to_owned(), &components["runtimes"])],
    };
    if nodes.is_empty() {
        checks.push(Check::fail(
            "compute nodes",
            "no compute node is registered (POST /computenodes)",
        ));
    }
    for (endpoint, node) in nodes {
        let state = node["details"]["state"].as_str();
        if node["statusCode"] == "fail"
            && node["components"].as_object().is_none_or(|c| c.is_empty())
        {
            checks.push(Check::fail(
                format!("compute node {endpoint}"),
                node["details"]["message"]
                    .as_str()
                    .or(state)
                    .unwrap_or("it does not answer"),
            ));
            continue;
        }
        checks.push(Check::pass(format!("compute node {endpoint}"), "answers"));
        for (key, runtime) in [("python", "Python"), ("r", "R")] {
            let pool = &node["components"][key];
            checks.push(component_check(
                &format!("{runtime} runtime on {endpoint}"),
                pool,
                format!(
                    "ready ({} of at most {} workers running)",
                    pool["details"]["currentSize"], pool["details"]["maxSize"]
                ),
            ));
        }
    }
    checks
}

/// A component that fails is a failed step with its message; `pass` and `warn` pass.
fn component_check(step: &str, component: &Value, passed: String) -> Check {
    match component["statusCode"].as_str() {
        Some("pass") => Check::pass(step, passed),
        Some("warn") => Check::pass(
            step,
            format!(
                "{passed}, with a warning: {}",
                component["details"]["message"]
                    .as_str()
                    .unwrap_or("degraded")
            ),
        ),
        _ => Check::fail(
            step,
            component["details"]["message"]
                .as_str()
                .unwrap_or("not reported")
                .to_owned(),
        ),
    }
}

/// Publishes a small service of `runtime`, consumes it, checks the answer and deletes it.
async fn service_check(server: &RemoteServer, runtime: &str, code: &str) -> Check {
    let step = format!("{runtime} service");
    let version = uuid::Uuid::new_v4().simple().to_string();
    let path = format!(
        "/services/o16n-diagnostic-{}/{version}",
        runtime.to_lowercase()
    );
    let definition = json!({
        "runtimeType": runtime,
        "code": code,
        "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
        "outputParameterDefinitions": [{"name": "y", "type": "numeric"}],
    });
    let outcome = async {
        let published = server.call(Method::POST, &path, Some(&definition)).await?;
        anyhow::ensure!(
            published.status == StatusCode::CREATED,
            "publishing failed: {}",
            published.problem()
        );
        let consume = path.replacen("/services/", "/api/", 1);
        let answer = server
            .call(Method::POST, &consume, Some(&json!({"x": 21})))
            .await?;
        anyhow::ensure!(
            answer.status == StatusCode::OK,
            "consuming failed: {}",
            answer.problem()
        );
        anyhow::ensure!(
            answer.body["success"] == true,
            "the code failed: {}",
            answer.body["errorMessage"].as_str().unwrap_or("no message")
        );
        let y = &answer.body["outputParameters"]["y"];
        anyhow::ensure!(
            y.as_f64() == Some(42.0),
            "the service answered y = {y} instead of 42"
        );
        Ok(())
    }
    .await;
    // The service goes whatever happened; a failure to delete it is not the step's failure.
    let _ = server.call(Method::DELETE, &path, None).await;
    match outcome {
        Ok(()) => Check::pass(step, "published, consumed (21 * 2 = 42) and deleted"),
        Err(err) => Check::fail(step, format!("{err:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_that_does_not_answer_and_a_missing_runtime_fail_by_name() {
        let status = json!({"components": {
            "database": {"statusCode": "pass", "details": {"type": "postgresql"}},
            "backends": {"components": {
                "http://127.0.0.2:1": {"statusCode": "fail", "details": {"state": "Unavailable", "message": "connection refused"}, "components": {}},
                "http://127.0.0.3:1": {"statusCode": "warn", "details": {}, "components": {
                    "python": {"statusCode": "pass", "details": {"currentSize": 1, "maxSize": 20}},
                    "r": {"statusCode": "fail", "details": {"message": "R is not installed"}}
                }}
            }}
        }});
        let checks = status_checks(&status);
        let failed: Vec<(&str, &str)> = checks
            .iter()
            .filter(|check| !check.passed)
            .map(|check| (check.step.as_str(), check.detail.as_str()))
            .collect();
        assert_eq!(
            failed,
            [
                ("compute node http://127.0.0.2:1", "connection refused"),
                ("R runtime on http://127.0.0.3:1", "R is not installed")
            ]
        );
        assert_eq!(checks.iter().filter(|check| check.passed).count(), 3);
    }
}
