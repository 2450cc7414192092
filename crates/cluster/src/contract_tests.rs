//! The contract between the two ends of the internal API: a [`RemoteNode`] calling the
//! [`server::router`] over loopback, with an in-memory compute node behind it, must behave as
//! that node does when called directly — every operation, every error variant, and the secret.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use o16n_compute::testing::FakeCompute;
use o16n_compute::{
    ByteStream, Compute, ComputeCall, ComputeError, ConsumeOutcome, ConsumeRequest, ContentRef,
    EnvironmentBuild, EnvironmentBuildReport, EnvironmentSpec, ExecuteOutcome, ExecuteRequest,
    NamedValue, NewSession, NodeStatus, Priority, ServiceSpec, SessionInfo, SessionRef, TypedName,
    TypedValue,
};
use o16n_types::{ParameterType, RuntimeType};
use secrecy::SecretString;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::RemoteNode;
use crate::server;

const SECRET: &str = "a-cluster-secret-for-tests";

/// A fake node served on loopback, and a client of it holding `secret`.
async fn remote_over_fake(secret: &str) -> (Arc<FakeCompute>, RemoteNode) {
    crate::install_crypto_provider();
    let fake = Arc::new(FakeCompute::new());
    let router = server::router(fake.clone(), SecretString::from(SECRET));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(server::serve(
        listener,
        router,
        None,
        std::future::pending(),
    ));
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let remote = RemoteNode::new(&endpoint, client, SecretString::from(secret));
    (fake, remote)
}

fn stream_of(bytes: &'static [u8]) -> ByteStream {
    futures_util::stream::once(async move { Ok(Bytes::from_static(bytes)) }).boxed()
}

async fn read_all(stream: ByteStream) -> Vec<u8> {
    stream
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await
        .unwrap()
}

fn digest_of(bytes: &[u8]) -> ContentRef {
    ContentRef {
        digest: Sha256::digest(bytes)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect(),
        size: bytes.len() as u64,
    }
}

#[tokio::test]
async fn every_session_operation_crosses_the_wire() {
    let (fake, remote) = remote_over_fake(SECRET).await;
    let node: &dyn Compute = &remote;

    let info: SessionInfo = node
        .ask(ComputeCall::CreateSession(NewSession {
            owner: "alice".to_owned(),
            name: Some("work".to_owned()),
            runtime: RuntimeType::Python,
            environment: None,
        }))
        .await
        .unwrap();
    assert_eq!(remote.sessions_opened(), 1);
    let session = SessionRef {
        id: info.id.clone(),
        owner: "alice".to_owned(),
    };
    let executed: ExecuteOutcome = node
        .ask(ComputeCall::Execute {
            session: session.clone(),
            request: ExecuteRequest {
                code: "y = x".to_owned(),
                inputs: vec![NamedValue {
                    name: "x".to_owned(),
                    value: json!([1.5, "two"]),
                }],
                outputs: vec!["x".to_owned()],
            },
        })
        .await
        .unwrap();
    assert_eq!(executed.outputs[0].value, json!([1.5, "two"]));
    let history: Vec<String> = node
        .ask(ComputeCall::History {
            session: session.clone(),
        })
        .await
        .unwrap();
    assert_eq!(history, ["y = x"]);

    let object = vec![0, 1, 2, 255];
    let () = node
        .ask(ComputeCall::PutObject {
            session: session.clone(),
            name: "model".to_owned(),
            content: object.clone(),
        })
        .await
        .unwrap();
    let fetched: Vec<u8> = node
        .ask(ComputeCall::GetObject {
            session: session.clone(),
            name: "model".to_owned(),
        })
        .await
        .unwrap();
    assert_eq!(fetched, object);

    node.upload_file(&session, "data file.csv", stream_of(b"a,b\n1,2\n"))
        .await
        .unwrap();
    let files: Vec<String> = node
        .ask(ComputeCall::ListFiles {
            session: session.clone(),
        })
        .await
        .unwrap();
    assert_eq!(files, ["data file.csv"]);
    let download = node.download_file(&session, "data file.csv").await.unwrap();
    assert_eq!(read_all(download.content).await, b"a,b\n1,2\n");

    // A snapshot goes out as a stream and comes back by digest, once the node was given it.
    let archive = read_all(node.export_snapshot(&session).await.unwrap().content).await;
    let content = digest_of(&archive);
    let other: SessionInfo = node
        .ask(ComputeCall::CreateSession(NewSession {
            owner: "alice".to_owned(),
            name: None,
            runtime: RuntimeType::Python,
            environment: None,
        }))
        .await
        .unwrap();
    let other = SessionRef {
        id: other.id,
        owner: "alice".to_owned(),
    };
    let import = ComputeCall::ImportSnapshot {
        session: other.clone(),
        content: content.clone(),
    };
    assert_eq!(
        node.ask::<()>(import.clone()).await,
        Err(ComputeError::ContentMissing(content.digest.clone()))
    );
    let sent = Bytes::from(archive);
    node.put_content(
        &content,
        futures_util::stream::once(async move { Ok(sent) }).boxed(),
    )
    .await
    .unwrap();
    node.ask::<()>(import).await.unwrap();
    let objects: Vec<String> = node
        .ask(ComputeCall::ListObjects { session: other })
        .await
        .unwrap();
    assert_eq!(objects, ["model"]);

    let sessions: Vec<SessionInfo> = node.ask(ComputeCall::Sessions).await.unwrap();
    assert_eq!(sessions.len(), 2);
    let () = node
        .ask(ComputeCall::CloseSession {
            session: session.clone(),
            force: true,
        })
        .await
        .unwrap();
    assert!(fake.calls().contains(&"close_session"));
}

#[tokio::test]
async fn service_requests_pools_builds_and_status_cross_the_wire() {
    let (fake, remote) = remote_over_fake(SECRET).await;
    let node: &dyn Compute = &remote;
    let service = ServiceSpec {
        key: "rev-1".to_owned(),
        owner: "alice".to_owned(),
        runtime: RuntimeType::R,
        code: "y <- x".to_owned(),
        init_code: None,
        outputs: vec![TypedName {
            name: "x".to_owned(),
            kind: ParameterType::Numeric,
        }],
        output_file_names: vec![],
        content: None,
        pool: None,
        environment: None,
    };
    let outcome: ConsumeOutcome = node
        .ask(ComputeCall::Consume(ConsumeRequest {
            service: service.clone(),
            inputs: vec![TypedValue {
                name: "x".to_owned(),
                kind: ParameterType::Numeric,
                value: json!(2.5),
            }],
            priority: Priority::Interactive,
        }))
        .await
        .unwrap();
    assert!(outcome.success);
    assert_eq!(outcome.outputs["x"], json!(2.5));

    let () = node
        .ask(ComputeCall::SetDedicatedPools(vec![service.clone()]))
        .await
        .unwrap();
    assert_eq!(fake.dedicated_pools(), [service]);

    let report: EnvironmentBuildReport = node
        .ask(ComputeCall::BuildEnvironment(EnvironmentBuild {
            name: "tabular".to_owned(),
            spec: EnvironmentSpec::Python {
                requirements: "tabulate==0.9.0".to_owned(),
            },
            lock: None,
        }))
        .await
        .unwrap();
    assert!(report.success);
    assert_eq!(report.packages[0].name, "tabulate");

    let status: NodeStatus = node.ask(ComputeCall::Status).await.unwrap();
    assert_eq!(status.pools.len(), 2);
}

#[tokio::test]
async fn a_node_failure_arrives_as_the_same_variant() {
    let (fake, remote) = remote_over_fake(SECRET).await;
    let node: &dyn Compute = &remote;
    let stranger = SessionRef {
        id: "00000000-0000-4000-8000-000000000009".to_owned(),
        owner: "mallory".to_owned(),
    };
    assert_eq!(
        node.ask::<String>(ComputeCall::ConsoleOutput {
            session: stranger.clone()
        })
        .await,
        Err(ComputeError::SessionNotFound(stranger.id.clone()))
    );
    for error in [
        ComputeError::SessionGone("the worker died".to_owned()),
        ComputeError::PoolExhausted("every worker is busy".to_owned()),
        ComputeError::RuntimeUnavailable("R is being set up".to_owned()),
    ] {
        fake.fail_next(error.clone());
        assert_eq!(
            node.ask::<NodeStatus>(ComputeCall::Status).await,
            Err(error)
        );
    }
    assert!(
        remote.download_file(&stranger, "x").await.is_err(),
        "a stranger's file is not found"
    );
}

#[tokio::test]
async fn a_call_without_the_secret_is_refused_before_it_reaches_the_node() {
    let (fake, remote) = remote_over_fake("another-secret").await;
    let node: &dyn Compute = &remote;
    let refused = node.ask::<NodeStatus>(ComputeCall::Status).await;
    assert!(
        matches!(&refused, Err(ComputeError::NodeUnavailable(message)) if message.contains("cluster secret")),
        "{refused:?}"
    );
    assert!(fake.calls().is_empty());
}
