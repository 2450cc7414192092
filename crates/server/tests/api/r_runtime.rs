//! R sessions, snapshots and services against real R workers (Debian's r-base-core with
//! r-cran-jsonlite, which `scripts/test.sh` installs).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, assert_error_shape, spawn_real_app_with};
use crate::sessions::{execute, execute_in_background, wait_until_printed};

async fn spawn_r_app() -> TestApp {
    spawn_real_app_with(|config| config.runtime.r.initial_size = 1).await
}

pub(crate) async fn create_r_session(app: &TestApp, token: &str) -> String {
    // R is the reference's default runtime: no runtimeType means R.
    let (status, body) = app
        .call(Method::POST, "/sessions", Some(token), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["sessionId"].as_str().unwrap().to_owned()
}

/// Runs an R expression in Rscript and returns what it prints.
fn rscript_bytes(expression: &str) -> Vec<u8> {
    let output = std::process::Command::new("Rscript")
        .args(["--vanilla", "-e", expression])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Runs an R expression that writes bytes to the file `OUT` and returns them.
fn rscript_file(expression: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.bin");
    rscript_bytes(&expression.replace("OUT", &format!("'{}'", out.display())));
    std::fs::read(out).unwrap()
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn an_r_session_computes_prints_and_keeps_state() {
    let app = spawn_r_app().await;
    let token = app.admin_token().await;
    let session = create_r_session(&app, &token).await;

    let first = execute(
        &app,
        &token,
        &session,
        json!({
            "code": "fit <- lm(mpg ~ wt, data = mtcars)\nslope <- unname(coef(fit)[2])\nprint(round(slope, 3))\nmessage('a message')\nsystem('echo from a subprocess')\nm <- matrix(1:4, 2)\ndf <- data.frame(a = 1:2, b = c('x', 'y'))\nscaled <- v * k",
            "inputParameters": [{"name": "v", "value": [1, 2, 3]}, {"name": "k", "value": 2}],
            "outputParameters": ["slope", "m", "df", "scaled"]
        }),
    )
    .await;

    assert_eq!(first["success"], true, "{first}");
    let console = first["consoleOutput"].as_str().unwrap();
    for expected in ["[1] -5.344", "a message", "from a subprocess"] {
        assert!(
            console.contains(expected),
            "{expected:?} missing from {console:?}"
        );
    }
    let outputs = &first["outputParameters"];
    assert!((outputs[0]["value"].as_f64().unwrap() + 5.3445).abs() < 1e-3);
    assert_eq!(outputs[1]["value"], json!([[1, 3], [2, 4]]));
    assert_eq!(outputs[2]["value"], json!({"a": [1, 2], "b": ["x", "y"]}));
    assert_eq!(outputs[3]["value"], json!([2, 4, 6]));
    let second = execute(
        &app,
        &token,
        &session,
        json!({"code": "n <- nrow(df) + length(scaled)", "outputParameters": ["n"]}),
    )
    .await;
    assert_eq!(second["outputParameters"][0]["value"], 5);
    let (_, names) = app
        .call(
            Method::GET,
            &format!("/sessions/{session}/workspace"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        names,
        json!(["df", "fit", "k", "m", "n", "scaled", "slope", "v"])
    );
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn r_errors_come_back_readable_and_the_session_lives_on() {
    let app = spawn_r_app().await;
    let token = app.admin_token().await;
    let session = create_r_session(&app, &token).await;

    for (code, expected) in [
        ("stop('boom')", "Error: boom"),
        ("f <- function(", "unexpected end of input"),
        ("library(notapackage)", "there is no package called"),
        ("log('a')", "non-numeric argument"),
    ] {
        let result = execute(&app, &token, &session, json!({"code": code})).await;
        assert_eq!(result["success"], false, "{code}");
        let message = result["errorMessage"].as_str().unwrap();
        assert!(message.contains(expected), "{code}: {message}");
    }
    let result = execute(
        &app,
        &token,
        &session,
        json!({"code": "ok <- TRUE", "outputParameters": ["ok"]}),
    )
    .await;
    assert_eq!(result["outputParameters"][0]["value"], true);
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn r_objects_and_files_go_in_and_out() {
    let app = spawn_r_app().await;
    let token = app.admin_token().await;
    let session = create_r_session(&app, &token).await;
    let put = |name: &str, bytes: Vec<u8>| {
        app.client
            .post(app.url(&format!("/sessions/{session}/workspace/{name}")))
            .bearer_auth(&token)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
    };

    let serialized = rscript_file("writeBin(serialize(list(w = 2, b = 0.5), NULL), OUT)");
    assert_eq!(
        put("model", serialized).await.unwrap().status(),
        StatusCode::OK
    );
    let rds = rscript_file("saveRDS(c(10, 20), OUT)");
    assert_eq!(put("weights", rds).await.unwrap().status(), StatusCode::OK);
    let bad = put("broken", b"not R at all".to_vec()).await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"x,y\n1,2\n3,4\n".to_vec()).file_name("data.csv"),
    );
    let uploaded = app
        .client
        .post(app.url(&format!("/sessions/{session}/files")))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), StatusCode::CREATED);
    let code = "d <- read.csv('data.csv')\ntotal <- sum(d$y) * model$w + sum(weights)\npng('plot.png')\nplot(d$x, d$y)\ninvisible(dev.off())";
    let result = execute(
        &app,
        &token,
        &session,
        json!({"code": code, "outputParameters": ["total"]}),
    )
    .await;
    assert_eq!(result["success"], true, "{result}");
    assert_eq!(result["outputParameters"][0]["value"], 42.0);
    assert_eq!(result["changedFiles"], json!(["plot.png"]));
    let plot = app
        .client
        .get(app.url(&format!("/sessions/{session}/files/plot.png")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(&plot.bytes().await.unwrap()[1..4], b"PNG");

    let download = app
        .client
        .get(app.url(&format!("/sessions/{session}/workspace/model")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    let rdata = download.bytes().await.unwrap();
    let file = app.data_dir.path().join("model.RData");
    std::fs::write(&file, &rdata).unwrap();
    let loaded = rscript_bytes(&format!(
        "e <- new.env(); load('{}', envir = e); cat(e$model$w)",
        file.display()
    ));
    assert_eq!(loaded, b"2");
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn an_r_session_is_cancelled_and_force_closed() {
    let app = spawn_r_app().await;
    let token = app.admin_token().await;
    let session = create_r_session(&app, &token).await;
    execute(&app, &token, &session, json!({"code": "kept <- 'yes'"})).await;

    let running = execute_in_background(
        &app,
        &token,
        &session,
        "cat('started\\n'); flush(stdout()); while (TRUE) {}",
    );
    wait_until_printed(&app, &token, &session, "started").await;
    app.call(
        Method::POST,
        &format!("/sessions/{session}/cancel"),
        Some(&token),
        None,
    )
    .await;
    let (_, cancelled) = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("cancel stops R")
        .unwrap();
    assert_eq!(cancelled["success"], false);
    assert!(
        cancelled["errorMessage"]
            .as_str()
            .unwrap()
            .contains("cancelled")
    );
    let after = execute(
        &app,
        &token,
        &session,
        json!({"code": "", "outputParameters": ["kept"]}),
    )
    .await;
    assert_eq!(after["outputParameters"][0]["value"], "yes");

    let running = execute_in_background(
        &app,
        &token,
        &session,
        "cat('sleeping\\n'); flush(stdout()); Sys.sleep(60)",
    );
    wait_until_printed(&app, &token, &session, "sleeping").await;
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/sessions/{session}/force"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .unwrap()
            .unwrap()
            .0,
        StatusCode::GONE
    );
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn an_r_snapshot_is_loaded_after_a_restart_and_only_into_r_sessions() {
    let app = spawn_real_app_with(|config| {
        config.runtime.r.initial_size = 1;
        config.runtime.python.initial_size = 1;
    })
    .await;
    let token = app.admin_token().await;
    let session = create_r_session(&app, &token).await;
    execute(
        &app,
        &token,
        &session,
        json!({"code": "model <- lm(mpg ~ wt, data = mtcars)\nwriteLines('kept', 'notes.txt')"}),
    )
    .await;
    let snapshot = crate::sessions::take_snapshot(&app, &token, &session, Some("r")).await;

    let python = crate::sessions::create_session(&app, &token).await;
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/sessions/{python}/loadsnapshot/{snapshot}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error_shape(&body);

    let app = app
        .restart_with(|config| config.runtime.r.initial_size = 1)
        .await;
    let (status, body) = app
        .call(
            Method::POST,
            "/sessions",
            Some(&token),
            Some(json!({"runtimeType": "R", "snapshotId": snapshot})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let restored = body["sessionId"].as_str().unwrap();
    let result = execute(&app, &token, restored, json!({"code": "p <- round(unname(predict(model, data.frame(wt = 3))), 2)\nnote <- readLines('notes.txt')", "outputParameters": ["p", "note"]})).await;
    assert_eq!(
        result["outputParameters"],
        json!([{"name": "p", "value": 21.25}, {"name": "note", "value": "kept"}])
    );
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn an_r_service_with_all_seven_types_and_a_png_is_published_consumed_updated_and_deleted() {
    let app = spawn_r_app().await;
    let token = app.admin_token().await;
    let definition = json!({
        "runtimeType": "R",
        "initCode": "offset <- 100",
        "code": "n_out <- n * 10L\nx_out <- x + offset\nflag_out <- !flag\ns_out <- toupper(s)\nv_out <- v * 2\nm_out <- t(m)\ndf_out <- transform(df, c = a + b)\nkinds <- paste(class(n), class(x), class(flag), class(s), class(v), class(m)[1], class(df), sep = ',')\npng('plot.png')\nplot(v)\ninvisible(dev.off())",
        "inputParameterDefinitions": [
            {"name": "n", "type": "integer"}, {"name": "x", "type": "numeric"}, {"name": "flag", "type": "logical"},
            {"name": "s", "type": "character"}, {"name": "v", "type": "vector"}, {"name": "m", "type": "matrix"},
            {"name": "df", "type": "data.frame"}
        ],
        "outputParameterDefinitions": [
            {"name": "n_out", "type": "integer"}, {"name": "x_out", "type": "numeric"}, {"name": "flag_out", "type": "logical"},
            {"name": "s_out", "type": "character"}, {"name": "v_out", "type": "vector"}, {"name": "m_out", "type": "matrix"},
            {"name": "df_out", "type": "data.frame"}, {"name": "kinds", "type": "character"}
        ],
        "outputFileNames": ["plot.png"]
    });
    let (status, body) = app
        .call(
            Method::POST,
            "/services/rsvc/1.0",
            Some(&token),
            Some(definition),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let inputs = json!({"n": 7, "x": 1.5, "flag": true, "s": "abc", "v": [1, 2.5], "m": [[1, 2], [3, 4]], "df": {"a": [1, 2], "b": [10, 20]}});

    let (status, result) = app
        .call(
            Method::POST,
            "/api/rsvc/1.0",
            Some(&token),
            Some(inputs.clone()),
        )
        .await;

    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["success"], true, "{result}");
    let outputs = &result["outputParameters"];
    assert_eq!(outputs["n_out"], 70);
    assert_eq!(outputs["x_out"], 101.5);
    assert_eq!(outputs["flag_out"], false);
    assert_eq!(outputs["s_out"], "ABC");
    assert_eq!(outputs["v_out"], json!([2, 5]));
    assert_eq!(outputs["m_out"], json!([[1, 3], [2, 4]]));
    assert_eq!(
        outputs["df_out"],
        json!({"a": [1, 2], "b": [10, 20], "c": [11, 22]})
    );
    assert_eq!(
        outputs["kinds"],
        "integer,numeric,logical,character,numeric,matrix,data.frame"
    );
    let png = result["outputFiles"]["plot.png"].as_str().unwrap();
    assert!(
        png.starts_with("iVBORw0KGgo"),
        "not a base64 PNG: {}",
        &png[..20.min(png.len())]
    );
    let (status, wrong) = app
        .call(
            Method::POST,
            "/api/rsvc/1.0",
            Some(&token),
            Some(json!({"n": "seven"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error_shape(&wrong);

    let (status, _) = app
        .call(
            Method::PATCH,
            "/services/rsvc/1.0",
            Some(&token),
            Some(json!({"initCode": "offset <- 1000"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, updated) = app
        .call(Method::POST, "/api/rsvc/1.0", Some(&token), Some(inputs))
        .await;
    assert_eq!(updated["outputParameters"]["x_out"], 1001.5);

    let failing = json!({"runtimeType": "R", "code": "stop('service failed')", "outputParameterDefinitions": []});
    app.call(
        Method::POST,
        "/services/rfail/1.0",
        Some(&token),
        Some(failing),
    )
    .await;
    let (_, failed) = app
        .call(
            Method::POST,
            "/api/rfail/1.0",
            Some(&token),
            Some(json!({})),
        )
        .await;
    assert_eq!(failed["success"], false);
    assert!(
        failed["errorMessage"]
            .as_str()
            .unwrap()
            .contains("service failed"),
        "{failed}"
    );

    let (status, _) = app
        .call(Method::DELETE, "/services/rsvc/1.0", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .call(Method::POST, "/api/rsvc/1.0", Some(&token), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
