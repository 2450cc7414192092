//! `/computenodes` on the one-box server: the list is kept and returned verbatim, checked
//! before it is stored, and only Owners change it (where work goes is tested in
//! `tests/cluster.rs`, with real compute nodes).

use o16n_types::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_error_shape, spawn_app};

#[tokio::test]
async fn owners_change_the_list_everyone_reads_it_and_bad_entries_change_nothing() {
    let app = spawn_app().await;
    let owner = app.admin_token().await;
    let jane = app.user_token("jane", Role::Contributor).await;
    let reader = app.user_token("rita", Role::Reader).await;

    let entries =
        json!({"entries": ["http://10.0.1-3.1-2:12805", "https://compute.example:12805"]});
    let (status, body) = app
        .call(Method::POST, "/computenodes", Some(&owner), Some(entries))
        .await;
    assert_eq!((status, &body), (StatusCode::OK, &json!("Success")));
    let (status, body) = app
        .call(
            Method::PUT,
            "/computenodes",
            Some(&owner),
            Some(json!({"entries": ["http://1.1.1.1:10-12"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let everything = json!({"computeNodes": [
        "http://10.0.1-3.1-2:12805", "https://compute.example:12805", "http://1.1.1.1:10-12"
    ]});
    for token in [&owner, &jane, &reader] {
        let (status, body) = app
            .call(Method::GET, "/computenodes", Some(token), None)
            .await;
        assert_eq!((status, body), (StatusCode::OK, everything.clone()));
    }

    for token in [&jane, &reader] {
        for method in [Method::POST, Method::PUT, Method::DELETE] {
            let (status, body) = app
                .call(
                    method.clone(),
                    "/computenodes",
                    Some(token),
                    Some(json!({"entries": ["http://10.0.0.1:12805"]})),
                )
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {body}");
            assert_error_shape(&body);
        }
    }
    for bad in [
        "not a uri",
        "ftp://10.0.0.1:12805",
        "http://10.0.0.300:12805",
        "http://10.0.0.9-2:12805",
        "http://10.0-255.0-255.1:12805",
        "http://compute.1:12805",
    ] {
        let (status, body) = app
            .call(
                Method::PUT,
                "/computenodes",
                Some(&owner),
                Some(json!({"entries": [bad]})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} gave {body}");
        assert_error_shape(&body);
    }

    let (status, _) = app
        .call(
            Method::DELETE,
            "/computenodes",
            Some(&owner),
            Some(json!({"entries": ["https://compute.example:12805"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = app
        .call(Method::GET, "/computenodes", Some(&jane), None)
        .await;
    assert_eq!(
        body,
        json!({"computeNodes": ["http://10.0.1-3.1-2:12805", "http://1.1.1.1:10-12"]})
    );
}
