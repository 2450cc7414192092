//! One suite, two backends: every case runs against a fresh SQLite file and against a
//! throwaway PostgreSQL database that is dropped afterwards.
//!
//! PostgreSQL is reached at `O16N_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, the development and CI machines' server).
//! With `O16N_FULL_SUITE` set (as `scripts/test.sh` sets it) an unreachable server fails the
//! suite rather than skipping half of it; without it, the PostgreSQL cases are reported as
//! ignored.

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use o16n_store::{
    Backend, BatchRecord, DirectoryProfile, EnvironmentBuildOutcome, EnvironmentRecord,
    EnvironmentState, Heard, LoginSessionRecord, SessionRecord, SnapshotRecord, Store, StoreConfig,
    StoreError, UserRecord,
};
use o16n_types::{
    BatchState, Content, DedicatedPoolSize, ParameterDefinition, ParameterType, Role, RuntimeType,
    Service, ServiceName, ServiceRuntime, ServiceVersion, Username,
};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

fn config(url: String) -> StoreConfig {
    StoreConfig {
        url,
        max_connections: 4,
        acquire_timeout: Duration::from_secs(10),
    }
}

async fn with_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Store, StoreConfig) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let config = config(Store::sqlite_url(&dir.path().join("o16n.db")));
    let store = Store::open(&config).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    case(store.clone(), config).await;
    store.close().await;
}

async fn with_postgres<F, Fut>(case: F)
where
    F: FnOnce(Store, StoreConfig) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let admin_url = std::env::var("O16N_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let database = format!("o16n_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .expect("PostgreSQL must be running for the store suite (see O16N_TEST_POSTGRES_URL)");
    admin
        // The name is a UUID made above, so formatting it into the statement is safe.
        .execute(AssertSqlSafe(format!(r#"CREATE DATABASE "{database}""#)))
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let config = config(format!("{base}/{database}"));
    let store = Store::open(&config).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    // The case runs in its own task so that a failing assertion still reaches the cleanup.
    let outcome = tokio::spawn({
        let store = store.clone();
        async move { case(store, config).await }
    })
    .await;
    store.close().await;
    admin
        .execute(AssertSqlSafe(format!(
            r#"DROP DATABASE "{database}" WITH (FORCE)"#
        )))
        .await
        .unwrap();
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

/// Declares one test per backend for each case function.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $case() { super::with_sqlite(super::$case).await })*
        }
        mod postgres {
            $(
                #[cfg_attr(not(full_suite), ignore = "needs PostgreSQL: O16N_FULL_SUITE=1")]
                #[tokio::test]
                async fn $case() { super::with_postgres(super::$case).await }
            )*
        }
    };
}

conformance!(
    users_are_inserted_found_listed_and_deleted,
    a_duplicate_user_is_a_conflict,
    a_password_hash_can_be_replaced,
    a_login_session_renews_once_per_generation,
    deleting_a_user_ends_its_login_sessions,
    directory_users_are_saved_beside_local_accounts_without_taking_their_names,
    stale_login_sessions_are_pruned,
    a_setting_keeps_its_first_value,
    the_schema_survives_reopening,
    snapshots_are_stored_listed_per_owner_and_deleted,
    services_are_published_listed_in_order_updated_and_deleted,
    a_dedicated_pool_is_kept_with_its_service,
    batches_keep_their_records_and_count_each_result_once,
    content_is_stored_once_in_chunks_and_collected_when_unreferenced,
    sessions_are_recorded_with_their_node,
    compute_node_entries_keep_their_order,
    a_batch_is_leased_to_one_node_until_its_lease_expires,
    announcements_reach_listeners,
    environments_are_claimed_once_keep_their_last_good_lock_and_stay_while_used,
);

fn user(name: &str, role: Role) -> UserRecord {
    UserRecord {
        username: Username::parse(name).unwrap(),
        password_hash: format!("hash-of-{name}"),
        role,
        created_at: 1_700_000_000,
        directory: None,
    }
}

fn login_session(id: &str, name: &str, digest: &str, now: i64) -> LoginSessionRecord {
    LoginSessionRecord {
        id: id.to_owned(),
        username: Username::parse(name).unwrap(),
        refresh_digest: digest.to_owned(),
        generation: 1,
        created_at: now,
        last_used_at: now,
    }
}

async fn users_are_inserted_found_listed_and_deleted(store: Store, _: StoreConfig) {
    store.insert_user(&user("zoe", Role::Reader)).await.unwrap();
    store.insert_user(&user("adam", Role::Owner)).await.unwrap();

    let found = store
        .find_user(&Username::parse("zoe").unwrap())
        .await
        .unwrap();
    assert_eq!(found, Some(user("zoe", Role::Reader)));
    assert_eq!(
        store
            .find_user(&Username::parse("nobody").unwrap())
            .await
            .unwrap(),
        None
    );

    let names: Vec<String> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|user| user.username.to_string())
        .collect();
    assert_eq!(names, ["adam", "zoe"]);

    assert!(
        store
            .delete_user(&Username::parse("zoe").unwrap())
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_user(&Username::parse("zoe").unwrap())
            .await
            .unwrap()
    );
    assert_eq!(store.list_users().await.unwrap().len(), 1);
}

async fn a_duplicate_user_is_a_conflict(store: Store, _: StoreConfig) {
    store
        .insert_user(&user("jane", Role::Contributor))
        .await
        .unwrap();
    let err = store
        .insert_user(&user("jane", Role::Owner))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict("user")), "{err:?}");
    // The first account is untouched by the failed insert.
    let jane = store
        .find_user(&Username::parse("jane").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(jane.role, Role::Contributor);
}

async fn a_password_hash_can_be_replaced(store: Store, _: StoreConfig) {
    let jane = Username::parse("jane").unwrap();
    store
        .insert_user(&user("jane", Role::Reader))
        .await
        .unwrap();
    assert!(store.update_password_hash(&jane, "new-hash").await.unwrap());
    assert_eq!(
        store.find_user(&jane).await.unwrap().unwrap().password_hash,
        "new-hash"
    );
    let ghost = Username::parse("ghost").unwrap();
    assert!(!store.update_password_hash(&ghost, "x").await.unwrap());
}

async fn a_login_session_renews_once_per_generation(store: Store, _: StoreConfig) {
    store
        .insert_user(&user("jane", Role::Reader))
        .await
        .unwrap();
    let session = login_session("s1", "jane", "digest-1", 100);
    store.insert_login_session(&session).await.unwrap();
    assert_eq!(
        store
            .find_login_session_by_refresh("digest-1")
            .await
            .unwrap(),
        Some(session.clone())
    );
    assert_eq!(store.login_session_generation("s1").await.unwrap(), Some(1));

    assert!(
        store
            .renew_login_session("s1", 1, "digest-2", 200)
            .await
            .unwrap()
    );
    // The same refresh token cannot be redeemed twice: the generation moved on.
    assert!(
        !store
            .renew_login_session("s1", 1, "digest-3", 300)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .find_login_session_by_refresh("digest-1")
            .await
            .unwrap(),
        None
    );
    let renewed = store
        .find_login_session_by_refresh("digest-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (renewed.generation, renewed.last_used_at, renewed.created_at),
        (2, 200, 100)
    );

    assert!(store.delete_login_session("s1").await.unwrap());
    assert_eq!(store.login_session_generation("s1").await.unwrap(), None);
    assert!(!store.delete_login_session("s1").await.unwrap());
}

async fn deleting_a_user_ends_its_login_sessions(store: Store, _: StoreConfig) {
    store
        .insert_user(&user("jane", Role::Reader))
        .await
        .unwrap();
    store.insert_user(&user("bob", Role::Reader)).await.unwrap();
    store
        .insert_login_session(&login_session("a", "jane", "d-a", 1))
        .await
        .unwrap();
    store
        .insert_login_session(&login_session("b", "jane", "d-b", 1))
        .await
        .unwrap();
    store
        .insert_login_session(&login_session("c", "bob", "d-c", 1))
        .await
        .unwrap();

    let bob = Username::parse("bob").unwrap();
    assert_eq!(store.delete_login_sessions_of(&bob).await.unwrap().len(), 1);
    store
        .delete_user(&Username::parse("jane").unwrap())
        .await
        .unwrap();
    for id in ["a", "b", "c"] {
        assert_eq!(
            store.login_session_generation(id).await.unwrap(),
            None,
            "{id}"
        );
    }
}

async fn stale_login_sessions_are_pruned(store: Store, _: StoreConfig) {
    store
        .insert_user(&user("jane", Role::Reader))
        .await
        .unwrap();
    let mut idle = login_session("idle", "jane", "d1", 10);
    idle.created_at = 500;
    store.insert_login_session(&idle).await.unwrap();
    let mut old = login_session("old", "jane", "d2", 900);
    old.created_at = 5;
    store.insert_login_session(&old).await.unwrap();
    store
        .insert_login_session(&login_session("fresh", "jane", "d3", 900))
        .await
        .unwrap();

    assert_eq!(store.prune_login_sessions(100, 50).await.unwrap(), 2);
    assert_eq!(
        store.login_session_generation("fresh").await.unwrap(),
        Some(1)
    );
}

async fn a_setting_keeps_its_first_value(store: Store, _: StoreConfig) {
    let first = store
        .setting_or_insert("signing-key", &[1, 2, 3])
        .await
        .unwrap();
    let second = store
        .setting_or_insert("signing-key", &[9, 9])
        .await
        .unwrap();
    assert_eq!(first, vec![1, 2, 3]);
    assert_eq!(second, vec![1, 2, 3]);
    // Arbitrary bytes, including zero and high bytes, survive the round trip.
    let binary: Vec<u8> = (0..=255).collect();
    assert_eq!(
        store.setting_or_insert("bytes", &binary).await.unwrap(),
        binary
    );
}

async fn the_schema_survives_reopening(store: Store, config: StoreConfig) {
    store
        .insert_user(&user("jane", Role::Reader))
        .await
        .unwrap();
    // A second open runs the migrations again on a migrated database: a no-op that keeps data.
    let reopened = Store::open(&config).await.unwrap();
    reopened.ping().await.unwrap();
    assert_eq!(
        reopened.list_users().await.unwrap(),
        vec![user("jane", Role::Reader)]
    );
    reopened.close().await;
}

async fn snapshots_are_stored_listed_per_owner_and_deleted(store: Store, _: StoreConfig) {
    let content = store.put_content_bytes(&[0x50, 0x4b, 0x00]).await.unwrap();
    let snapshot = |id: &str, owner: &str, created_at| SnapshotRecord {
        id: id.to_owned(),
        name: (id == "s1").then(|| "first".to_owned()),
        owner: owner.to_owned(),
        runtime: RuntimeType::Python,
        created_at,
        content_size: 3,
        content_digest: content.digest.clone(),
        environment: (id == "s1").then(|| "lightgbm".to_owned()),
    };
    store
        .insert_snapshot(&snapshot("s2", "jane", 20))
        .await
        .unwrap();
    store
        .insert_snapshot(&snapshot("s1", "jane", 10))
        .await
        .unwrap();
    store
        .insert_snapshot(&snapshot("s3", "bob", 5))
        .await
        .unwrap();
    let duplicate = store.insert_snapshot(&snapshot("s1", "jane", 1)).await;
    assert!(matches!(duplicate, Err(StoreError::Conflict(_))));

    let janes: Vec<SnapshotRecord> = store.list_snapshots("jane").await.unwrap();
    assert_eq!(
        janes,
        vec![snapshot("s1", "jane", 10), snapshot("s2", "jane", 20)]
    );
    assert_eq!(
        store.find_snapshot("s3").await.unwrap(),
        Some(snapshot("s3", "bob", 5))
    );
    assert_eq!(
        store.content_bytes(&content.digest).await.unwrap(),
        [0x50, 0x4b, 0x00]
    );

    assert!(store.delete_snapshot("s1").await.unwrap());
    assert!(!store.delete_snapshot("s1").await.unwrap());
    assert_eq!(store.find_snapshot("s1").await.unwrap(), None);
}

fn service(name: &str, version: &str, created_at_micros: i64) -> Service {
    Service {
        name: ServiceName::parse(name).unwrap(),
        version: ServiceVersion::parse(version).unwrap(),
        owner: Username::parse("jane").unwrap(),
        runtime: RuntimeType::Python.into(),
        created_at_micros,
        revision: format!("rev-{version}"),
        description: Some("adds".to_owned()),
        operation_id: None,
        code: "answer = x + 1".to_owned(),
        init_code: None,
        inputs: vec![ParameterDefinition {
            name: "x".to_owned(),
            kind: ParameterType::DataFrame,
        }],
        outputs: vec![ParameterDefinition {
            name: "answer".to_owned(),
            kind: ParameterType::Numeric,
        }],
        output_file_names: vec!["plot.png".to_owned()],
        snapshot_id: Some("snap".to_owned()),
        content: None,
        pool: None,
        environment: None,
        environment_lock: None,
    }
}

async fn services_are_published_listed_in_order_updated_and_deleted(store: Store, _: StoreConfig) {
    let archive = store
        .put_content_bytes(&[0x50, 0x4b, 0, 255])
        .await
        .unwrap();
    let mut with_archive = service("add", "v2", 20);
    with_archive.content = Some(archive.clone());
    store.insert_service(&with_archive).await.unwrap();
    store
        .insert_service(&service("add", "v1", 10))
        .await
        .unwrap();
    store
        .insert_service(&service("other", "1.0", 5))
        .await
        .unwrap();
    let duplicate = store.insert_service(&service("add", "v1", 30)).await;
    assert!(matches!(duplicate, Err(StoreError::Conflict(_))));

    let name = ServiceName::parse("add").unwrap();
    let versions: Vec<String> = store
        .list_service_versions(&name)
        .await
        .unwrap()
        .iter()
        .map(|s| s.version.to_string())
        .collect();
    assert_eq!(versions, ["v1", "v2"]);
    let all: Vec<String> = store
        .list_services()
        .await
        .unwrap()
        .iter()
        .map(|s| format!("{}/{}", s.name, s.version))
        .collect();
    assert_eq!(all, ["add/v1", "add/v2", "other/1.0"]);
    let v2 = ServiceVersion::parse("v2").unwrap();
    assert_eq!(
        store.find_service(&name, &v2).await.unwrap(),
        Some(with_archive.clone())
    );

    let mut updated = with_archive;
    updated.code = "answer = x + 2".to_owned();
    updated.revision = "rev-new".to_owned();
    updated.content = None;
    assert!(store.update_service(&updated).await.unwrap());
    assert_eq!(store.find_service(&name, &v2).await.unwrap(), Some(updated));

    // A realtime service keeps its model as content, as other services keep their snapshot.
    let mut realtime = service("model", "v1", 40);
    realtime.runtime = ServiceRuntime::Realtime;
    realtime.content = Some(store.put_content_bytes(&[8, 8, 18, 0, 255]).await.unwrap());
    store.insert_service(&realtime).await.unwrap();
    let (model_name, v1) = (
        ServiceName::parse("model").unwrap(),
        ServiceVersion::parse("v1").unwrap(),
    );
    let found = store.find_service(&model_name, &v1).await.unwrap().unwrap();
    assert_eq!(found, realtime);
    assert_eq!(
        store
            .content_bytes(&found.content.unwrap().digest)
            .await
            .unwrap(),
        [8, 8, 18, 0, 255]
    );

    assert!(store.delete_service(&name, &v2).await.unwrap());
    assert!(!store.delete_service(&name, &v2).await.unwrap());
    assert_eq!(store.find_service(&name, &v2).await.unwrap(), None);
}

async fn a_dedicated_pool_is_kept_with_its_service(store: Store, _: StoreConfig) {
    let (name, v1) = (
        ServiceName::parse("pooled").unwrap(),
        ServiceVersion::parse("v1").unwrap(),
    );
    store
        .insert_service(&service("pooled", "v1", 10))
        .await
        .unwrap();
    store
        .insert_service(&service("pooled", "v2", 20))
        .await
        .unwrap();
    let size = DedicatedPoolSize::new(2, 5).unwrap();

    assert!(
        store
            .set_service_pool(&name, &v1, Some(size))
            .await
            .unwrap()
    );
    let unknown = ServiceVersion::parse("v9").unwrap();
    assert!(
        !store
            .set_service_pool(&name, &unknown, Some(size))
            .await
            .unwrap()
    );

    let pooled = store.list_service_pools().await.unwrap();
    assert_eq!(pooled.len(), 1);
    assert_eq!(
        (pooled[0].version.as_str(), pooled[0].pool),
        ("v1", Some(size))
    );
    // An update keeps the pool.
    let mut updated = store.find_service(&name, &v1).await.unwrap().unwrap();
    updated.code = "answer = 3".to_owned();
    updated.pool = None;
    store.update_service(&updated).await.unwrap();
    let found = store.find_service(&name, &v1).await.unwrap().unwrap();
    assert_eq!(
        (found.code.as_str(), found.pool),
        ("answer = 3", Some(size))
    );

    assert!(store.set_service_pool(&name, &v1, None).await.unwrap());
    assert!(store.list_service_pools().await.unwrap().is_empty());
    // Deleting the service deletes its pool with it.
    store
        .set_service_pool(&name, &v1, Some(size))
        .await
        .unwrap();
    store.delete_service(&name, &v1).await.unwrap();
    assert!(store.list_service_pools().await.unwrap().is_empty());
}

async fn batches_keep_their_records_and_count_each_result_once(store: Store, _: StoreConfig) {
    let batch = BatchRecord {
        id: "b1".to_owned(),
        service_name: "svc".to_owned(),
        service_version: "v1".to_owned(),
        owner: "jane".to_owned(),
        parallel_count: 4,
        state: BatchState::Pending,
        total_count: 1203,
        completed_count: 0,
        created_at: 10,
    };
    let inputs = format!(
        "[{}]",
        (0..1203)
            .map(|i| format!("{{\"x\": {i}}}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    store.insert_batch(&batch, &inputs).await.unwrap();
    assert_eq!(store.find_batch("b1").await.unwrap(), Some(batch.clone()));
    assert_eq!(store.batch_inputs("b1").await.unwrap(), Some(inputs));

    let results: Vec<(i64, String)> = (0..700).map(|i| (i, format!("{{\"y\": {i}}}"))).collect();
    assert_eq!(
        store
            .complete_batch_records("b1", &results[1..])
            .await
            .unwrap(),
        699
    );
    assert_eq!(
        store
            .complete_batch_records("b1", &results[..3])
            .await
            .unwrap(),
        1,
        "a result is written once"
    );
    assert_eq!(
        store
            .find_batch("b1")
            .await
            .unwrap()
            .unwrap()
            .completed_count,
        700
    );
    assert_eq!(store.done_batch_records("b1").await.unwrap().len(), 700);
    assert_eq!(store.batch_results_prefix("b1").await.unwrap().len(), 700);
    assert_eq!(
        store.batch_record_result("b1", 5).await.unwrap(),
        Some("{\"y\": 5}".to_owned())
    );
    assert_eq!(store.batch_record_result("b1", 900).await.unwrap(), None);
    assert_eq!(
        store
            .complete_batch_records("b1", &[(1000, "{}".to_owned())])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.batch_results_prefix("b1").await.unwrap().len(),
        700,
        "only the run from 0 counts"
    );

    store
        .set_batch_state("b1", BatchState::Complete)
        .await
        .unwrap();
    assert!(
        store.claim_batches("n", 0, 1, 10).await.unwrap().is_empty(),
        "a complete batch is not claimed"
    );
    assert_eq!(store.list_batches("svc", "v1").await.unwrap().len(), 1);
    let newer = BatchRecord {
        id: "b2".to_owned(),
        service_name: "other".to_owned(),
        owner: "joe".to_owned(),
        created_at: 20,
        ..batch.clone()
    };
    store.insert_batch(&newer, "[]").await.unwrap();
    let ids = |batches: Vec<BatchRecord>| batches.into_iter().map(|b| b.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.recent_batches(None, 10).await.unwrap()),
        ["b2", "b1"]
    );
    assert_eq!(ids(store.recent_batches(None, 1).await.unwrap()), ["b2"]);
    assert_eq!(
        ids(store.recent_batches(Some("jane"), 10).await.unwrap()),
        ["b1"]
    );
    assert!(store.delete_batch("b2").await.unwrap());
    assert!(store.delete_batch("b1").await.unwrap());
    assert_eq!(store.find_batch("b1").await.unwrap(), None);
    assert_eq!(
        store
            .complete_batch_records("b1", &[(1, "{}".to_owned())])
            .await
            .unwrap(),
        0,
        "a deleted batch takes no results"
    );
    assert!(store.done_batch_records("b1").await.unwrap().is_empty());
}

async fn content_is_stored_once_in_chunks_and_collected_when_unreferenced(
    store: Store,
    _: StoreConfig,
) {
    // More than two chunks of 4 MiB, arriving in pieces of another size.
    let bytes: Vec<u8> = (0..9 * 1024 * 1024 + 7).map(|i| (i % 251) as u8).collect();
    let pieces = bytes
        .chunks(1_000_003)
        .map(|piece| Ok(bytes::Bytes::copy_from_slice(piece)))
        .collect::<Vec<std::io::Result<bytes::Bytes>>>();
    let stored: Content = store
        .put_content(futures_util::stream::iter(pieces))
        .await
        .unwrap();
    assert_eq!(stored.size, bytes.len() as u64);
    assert_eq!(stored.digest.len(), 64);
    let again = store.put_content_bytes(&bytes).await.unwrap();
    assert_eq!(again, stored, "the same bytes are the same content");

    let mut read = Vec::new();
    let mut chunks = std::pin::pin!(store.read_content(&stored.digest));
    while let Some(chunk) = chunks.next().await {
        read.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(read, bytes);
    assert_eq!(
        store.content_size(&stored.digest).await.unwrap(),
        Some(bytes.len() as u64)
    );

    // Content just stored is spared, so that the snapshot about to refer to it finds it.
    store.collect_unreferenced_content().await.unwrap();
    assert!(store.content_size(&stored.digest).await.unwrap().is_some());
}

async fn sessions_are_recorded_with_their_node(store: Store, _: StoreConfig) {
    let session = |id: &str, owner: &str, node: &str| SessionRecord {
        id: id.to_owned(),
        owner: owner.to_owned(),
        name: None,
        runtime: RuntimeType::R,
        node: node.to_owned(),
        created_at: 1,
        environment: (id == "a").then(|| "lightgbm".to_owned()),
    };
    store
        .insert_session(&session("a", "jane", "http://n1:12805"), None)
        .await
        .unwrap();
    store
        .insert_session(&session("b", "jane", "http://n2:12805"), Some(2))
        .await
        .unwrap();
    store
        .insert_session(&session("c", "bob", "http://n1:12805"), Some(1))
        .await
        .unwrap();
    // At its owner's limit, a session is not recorded.
    assert!(
        !store
            .insert_session(&session("d", "jane", "http://n1:12805"), Some(2))
            .await
            .unwrap()
    );
    assert_eq!(
        store.find_session("b").await.unwrap(),
        Some(session("b", "jane", "http://n2:12805"))
    );
    assert_eq!(store.list_sessions("jane").await.unwrap().len(), 2);
    assert_eq!(
        store
            .sessions_on_node("http://n1:12805")
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store
            .delete_sessions_on_node("http://n1:12805")
            .await
            .unwrap(),
        2
    );
    assert!(store.delete_session("b").await.unwrap());
    assert!(store.list_sessions("jane").await.unwrap().is_empty());
}

async fn compute_node_entries_keep_their_order(store: Store, _: StoreConfig) {
    let entries = |list: &[&str]| list.iter().map(|e| e.to_string()).collect::<Vec<_>>();
    store
        .set_compute_node_entries(&entries(&["http://b:1", "http://a:1"]))
        .await
        .unwrap();
    store
        .add_compute_node_entries(&entries(&["http://c:1", "http://a:1"]))
        .await
        .unwrap();
    assert_eq!(
        store.compute_node_entries().await.unwrap(),
        ["http://b:1", "http://a:1", "http://c:1"]
    );
    store
        .remove_compute_node_entries(&entries(&["http://a:1", "http://zzz:1"]))
        .await
        .unwrap();
    assert_eq!(
        store.compute_node_entries().await.unwrap(),
        ["http://b:1", "http://c:1"]
    );
    store.set_compute_node_entries(&[]).await.unwrap();
    assert!(store.compute_node_entries().await.unwrap().is_empty());
}

async fn a_batch_is_leased_to_one_node_until_its_lease_expires(store: Store, _: StoreConfig) {
    let batch = |id: &str, created_at| BatchRecord {
        id: id.to_owned(),
        service_name: "svc".to_owned(),
        service_version: "v1".to_owned(),
        owner: "jane".to_owned(),
        parallel_count: 1,
        state: BatchState::Pending,
        total_count: 1,
        completed_count: 0,
        created_at,
    };
    store.insert_batch(&batch("old", 1), "[{}]").await.unwrap();
    store.insert_batch(&batch("new", 2), "[{}]").await.unwrap();

    let first = store.claim_batches("a", 1000, 2000, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].id, "old", "the oldest batch goes first");
    let second = store.claim_batches("b", 1000, 2000, 10).await.unwrap();
    assert_eq!(second.len(), 1, "a leased batch is not claimed again");
    assert_eq!(second[0].id, "new");
    assert!(
        store
            .claim_batches("c", 1500, 2500, 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(store.renew_batch_lease("old", "a", 4000).await.unwrap());
    assert!(!store.renew_batch_lease("old", "b", 4000).await.unwrap());
    // Node b died: its lease runs out and another node takes the batch over.
    let taken_over = store.claim_batches("c", 2500, 3500, 10).await.unwrap();
    assert_eq!(taken_over.len(), 1);
    assert_eq!(taken_over[0].id, "new");
    assert!(!store.renew_batch_lease("new", "b", 5000).await.unwrap());

    store.release_batch_lease("old", "a").await.unwrap();
    assert_eq!(
        store.claim_batches("d", 2600, 3600, 10).await.unwrap()[0].id,
        "old"
    );
    assert!(store.delete_batch("old").await.unwrap());
    assert!(
        !store.renew_batch_lease("old", "d", 9000).await.unwrap(),
        "a cancelled batch's lease cannot be renewed"
    );
}

async fn announcements_reach_listeners(store: Store, _: StoreConfig) {
    let Some(mut listener) = store.listen().await.unwrap() else {
        assert_eq!(store.backend(), Backend::Sqlite, "SQLite has no listeners");
        store.announce("anything").await.unwrap();
        return;
    };
    store.announce("service iris v1").await.unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(10), listener.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(heard, Heard::Event("service iris v1".to_owned()));
}

async fn directory_users_are_saved_beside_local_accounts_without_taking_their_names(
    store: Store,
    _: StoreConfig,
) {
    let profile = |checked_at| DirectoryProfile {
        display_name: Some("Alice Liddell".to_owned()),
        email: Some("alice@example.org".to_owned()),
        groups_checked_at: checked_at,
    };
    let alice = Username::parse("alice").unwrap();
    assert!(
        store
            .save_directory_user(&alice, Role::Reader, &profile(10), 10)
            .await
            .unwrap()
    );
    // A later sign-in updates the role and profile; the account keeps its creation time.
    assert!(
        store
            .save_directory_user(&alice, Role::Owner, &profile(20), 20)
            .await
            .unwrap()
    );
    let found = store.find_user(&alice).await.unwrap().unwrap();
    assert_eq!(found.role, Role::Owner);
    assert_eq!(found.created_at, 10);
    assert_eq!(found.password_hash, "");
    assert_eq!(found.directory, Some(profile(20)));

    // A local account's name is never taken over by a directory user.
    store.insert_user(&user("bob", Role::Reader)).await.unwrap();
    let bob = Username::parse("bob").unwrap();
    assert!(
        !store
            .save_directory_user(&bob, Role::Owner, &profile(30), 30)
            .await
            .unwrap()
    );
    assert_eq!(
        store.find_user(&bob).await.unwrap(),
        Some(user("bob", Role::Reader))
    );
}

async fn environments_are_claimed_once_keep_their_last_good_lock_and_stay_while_used(
    store: Store,
    _: StoreConfig,
) {
    let record = EnvironmentRecord {
        name: "lightgbm".to_owned(),
        runtime: RuntimeType::Python,
        owner: "jane".to_owned(),
        spec: r#"{"runtime":"Python","requirements":"lightgbm"}"#.to_owned(),
        state: EnvironmentState::Pending,
        lock: None,
        packages: None,
        log: String::new(),
        generation: 1,
        created_at: 100,
        updated_at: 100,
    };
    store.insert_environment(&record).await.unwrap();
    assert!(matches!(
        store.insert_environment(&record).await,
        Err(StoreError::Conflict(_))
    ));

    // One claim wins; a fresh claim is not taken over, a stale one is.
    let claimed = store
        .claim_environment_build(110, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (claimed.state, claimed.generation),
        (EnvironmentState::Building, 1)
    );
    assert!(
        store
            .claim_environment_build(111, 0)
            .await
            .unwrap()
            .is_none()
    );
    let taken_over = store
        .claim_environment_build(200, 150)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken_over.updated_at, 200);

    let ready = EnvironmentBuildOutcome {
        state: EnvironmentState::Ready,
        lock: Some((
            "lightgbm==4.6.0".to_owned(),
            r#"[{"name":"lightgbm","version":"4.6.0"}]"#.to_owned(),
        )),
        log: "built".to_owned(),
    };
    assert!(
        store
            .record_environment_build("lightgbm", 1, &ready, 210)
            .await
            .unwrap()
    );

    // A rebuild is a new generation; the old build's outcome is ignored, a failure keeps the
    // last good lock.
    assert_eq!(
        store
            .rebuild_environment("lightgbm", "{}", 220)
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        store
            .rebuild_environment("nothing", "{}", 220)
            .await
            .unwrap(),
        None
    );
    assert!(
        !store
            .record_environment_build("lightgbm", 1, &ready, 230)
            .await
            .unwrap()
    );
    let failed = EnvironmentBuildOutcome {
        state: EnvironmentState::Failed,
        lock: None,
        log: "no solution".to_owned(),
    };
    assert!(
        store
            .record_environment_build("lightgbm", 2, &failed, 240)
            .await
            .unwrap()
    );
    let found = store.find_environment("lightgbm").await.unwrap().unwrap();
    assert_eq!(found.state, EnvironmentState::Failed);
    assert_eq!(found.lock.as_deref(), Some("lightgbm==4.6.0"));
    assert_eq!(found.log, "no solution");
    assert_eq!(store.list_environments().await.unwrap().len(), 1);

    // A service in it keeps the lock it was stored with, whatever the environment's lock
    // becomes, and keeps the environment from being deleted.
    let mut in_it = service("churn", "1.0", 1);
    in_it.environment = Some("lightgbm".to_owned());
    in_it.environment_lock = Some("lightgbm==4.5.0".to_owned());
    store.insert_service(&in_it).await.unwrap();
    let stored = store
        .find_service(&in_it.name, &in_it.version)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.environment_lock.as_deref(), Some("lightgbm==4.5.0"));
    in_it.environment_lock = Some("lightgbm==4.6.0".to_owned());
    assert!(store.update_service(&in_it).await.unwrap());
    let stored = store
        .find_service(&in_it.name, &in_it.version)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.environment_lock.as_deref(), Some("lightgbm==4.6.0"));
    assert!(!store.delete_environment("lightgbm").await.unwrap());
    assert_eq!(
        store.services_in_environment("lightgbm").await.unwrap(),
        ["churn/1.0"]
    );
    store
        .delete_service(&in_it.name, &in_it.version)
        .await
        .unwrap();
    assert!(store.delete_environment("lightgbm").await.unwrap());
    assert!(store.find_environment("lightgbm").await.unwrap().is_none());
}
