//! The Swagger 2.0 description of o16n's own core API (every operation this server answers,
//! with the reference's operationIds and shapes), and the routes that serve it with an
//! interactive Swagger UI (assets built into the binary, so it works offline).
//!
//! The description and the page are public: they describe, they do not grant. Trying an
//! operation needs a token from `POST /login`, entered with "Authorize".

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

/// Where the description is served.
pub(crate) const DOCUMENT_PATH: &str = "/swagger.json";
/// Where the interactive page is served.
pub(crate) const UI_PREFIX: &str = "/swagger-ui";

/// One operation: method, path, operationId, tag, summary, parameters, success status and
/// its schema.
struct Operation {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    body: Option<Value>,
    query: &'static [&'static str],
    success: (&'static str, Option<Value>),
    errors: &'static str,
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/definitions/{name}")})
}

fn array_of(schema: Value) -> Value {
    json!({"type": "array", "items": schema})
}

fn string() -> Value {
    json!({"type": "string"})
}

fn file() -> Value {
    json!({"type": "file"})
}

fn operations() -> Vec<Operation> {
    use Operation as O;
    const AUTH: &str = "Authentication APIs";
    const SERVICES: &str = "Services Management APIs";
    const CONSUME: &str = "Service Consumption APIs";
    const SESSIONS: &str = "Session APIs";
    const SNAPSHOTS: &str = "Snapshot APIs";
    const STATUS: &str = "Status APIs";
    const ENVIRONMENTS: &str = "Environment APIs (o16n)";
    let op = |method, path, id, tag, summary| O {
        method,
        path,
        id,
        tag,
        summary,
        body: None,
        query: &[],
        success: ("200", Some(json!({"type": "string"}))),
        errors: "401 Unauthorized",
    };
    vec![
        O {
            body: Some(reference("LoginRequest")),
            success: ("200", Some(reference("AccessTokenResponse"))),
            errors: "401 invalid credentials",
            ..op("post", "/login", "login", AUTH, "Logs the user in.")
        },
        O {
            body: Some(reference("RenewTokenRequest")),
            success: ("200", Some(reference("AccessTokenResponse"))),
            errors: "401 invalid or expired refresh token",
            ..op(
                "post",
                "/login/refreshToken",
                "renewToken",
                AUTH,
                "Renews the access token and the refresh token; the old pair stops working.",
            )
        },
        O {
            query: &["refreshToken"],
            errors: "401 invalid or expired refresh token",
            ..op(
                "delete",
                "/login/refreshToken",
                "revokeRefreshToken",
                AUTH,
                "Revokes a refresh token and the access tokens issued with it.",
            )
        },
        O {
            success: ("200", Some(array_of(reference("WebService")))),
            ..op(
                "get",
                "/services",
                "getAllWebServices",
                SERVICES,
                "Lists all the published services.",
            )
        },
        O {
            body: Some(reference("PublishWebServiceRequest")),
            success: ("201", Some(string())),
            errors: "400, 401, 403 (another user owns the name), 409 (exists)",
            ..op(
                "post",
                "/services/{name}",
                "publishWebService",
                SERVICES,
                "Publishes a service with a version assigned by the server (a GUID).",
            )
        },
        O {
            success: ("200", Some(array_of(reference("WebService")))),
            ..op(
                "get",
                "/services/{name}",
                "getAllWebServiceVersionsByName",
                SERVICES,
                "Lists the versions of a service, oldest first.",
            )
        },
        O {
            body: Some(reference("PublishWebServiceRequest")),
            success: ("201", Some(string())),
            errors: "400, 401, 403 (exists, or another user owns the name)",
            ..op(
                "post",
                "/services/{name}/{version}",
                "publishWebServiceVersion",
                SERVICES,
                "Publishes a service with the given version.",
            )
        },
        O {
            body: Some(json!("realtime")),
            success: ("201", Some(string())),
            errors: "400 (not an ONNX model the engine can run), 401, 403 (another user owns the name), 409 (exists)",
            ..op(
                "post",
                "/realtime-services/{name}",
                "publishRealtimeWebServiceByName",
                SERVICES,
                "Publishes an ONNX model as a realtime service with a generated version.",
            )
        },
        O {
            body: Some(json!("realtime")),
            success: ("201", Some(string())),
            errors: "400 (not an ONNX model the engine can run), 401, 403 (another user owns the name), 409 (exists)",
            ..op(
                "post",
                "/realtime-services/{name}/{version}",
                "publishRealtimeWebServiceByNameVersion",
                SERVICES,
                "Publishes an ONNX model as a realtime service with the given version.",
            )
        },
        O {
            body: Some(json!("realtime")),
            errors: "400, 401, 403 (owned by another user), 404",
            ..op(
                "patch",
                "/realtime-services/{name}/{version}",
                "patchRealtimeWebServiceByNameVersion",
                SERVICES,
                "Updates a realtime service: its description, operationId or model.",
            )
        },
        O {
            body: Some(reference("PublishWebServiceRequest")),
            errors: "400, 401, 403 (owned by another user), 404",
            ..op(
                "patch",
                "/services/{name}/{version}",
                "patchWebServiceVersion",
                SERVICES,
                "Updates a service; absent fields stay unchanged.",
            )
        },
        O {
            success: ("200", Some(array_of(reference("WebService")))),
            errors: "401, 404",
            ..op(
                "get",
                "/services/{name}/{version}",
                "getWebServiceVersion",
                SERVICES,
                "Gets one service version (as a one-element array).",
            )
        },
        O {
            errors: "401, 403 (owned by another user), 404",
            ..op(
                "delete",
                "/services/{name}/{version}",
                "deleteWebServiceVersion",
                SERVICES,
                "Deletes a service version.",
            )
        },
        O {
            success: ("200", Some(json!({"type": "object"}))),
            errors: "401, 404",
            ..op(
                "get",
                "/api/{name}/{version}/swagger.json",
                "GetWebServiceSwagger",
                CONSUME,
                "The Swagger 2.0 document of a service, with its consume operation.",
            )
        },
        O {
            body: Some(reference("CreateSessionRequest")),
            success: ("201", Some(reference("CreateSessionResponse"))),
            errors: "400 (unknown runtime, R not available), 401, 404 (snapshot), 503 (no worker)",
            ..op(
                "post",
                "/sessions",
                "createSession",
                SESSIONS,
                "Creates a session on a dedicated worker.",
            )
        },
        O {
            success: ("200", Some(array_of(reference("Session")))),
            ..op(
                "get",
                "/sessions",
                "listSessions",
                SESSIONS,
                "Lists the caller's sessions.",
            )
        },
        O {
            body: Some(reference("ExecuteRequest")),
            success: ("200", Some(reference("ExecuteResponse"))),
            errors: "401, 404, 410 (the session's worker died)",
            ..op(
                "post",
                "/sessions/{id}/execute",
                "executeCode",
                SESSIONS,
                "Executes code in the session.",
            )
        },
        O {
            errors: "401, 404",
            ..op(
                "delete",
                "/sessions/{id}",
                "closeSession",
                SESSIONS,
                "Closes a session.",
            )
        },
        O {
            errors: "401, 404",
            ..op(
                "delete",
                "/sessions/{id}/force",
                "closeSessionByForce",
                SESSIONS,
                "Kills a session's worker.",
            )
        },
        O {
            success: ("200", Some(reference("ConsoleOutputResponse"))),
            errors: "401, 404",
            ..op(
                "get",
                "/sessions/{id}/console-output",
                "getSessionConsoleOutput",
                SESSIONS,
                "The console output of the running or last execution.",
            )
        },
        O {
            success: ("200", Some(array_of(string()))),
            errors: "401, 404",
            ..op(
                "get",
                "/sessions/{id}/history",
                "listSessionHistory",
                SESSIONS,
                "The code executed in the session, in order.",
            )
        },
        O {
            body: Some(json!("file")),
            success: ("201", None),
            errors: "400 (a path, not a name), 401, 404",
            ..op(
                "post",
                "/sessions/{id}/files",
                "uploadSessionFile",
                SESSIONS,
                "Uploads a file into the working directory (same name overwrites).",
            )
        },
        O {
            success: ("200", Some(array_of(string()))),
            errors: "401, 404",
            ..op(
                "get",
                "/sessions/{id}/files",
                "listSessionFiles",
                SESSIONS,
                "Lists the working directory's files.",
            )
        },
        O {
            success: ("200", Some(file())),
            errors: "400, 401, 404",
            ..op(
                "get",
                "/sessions/{id}/files/{fileName}",
                "getSessionFile",
                SESSIONS,
                "Downloads a file.",
            )
        },
        O {
            errors: "400, 401, 404",
            ..op(
                "delete",
                "/sessions/{id}/files/{fileName}",
                "deleteSessionFile",
                SESSIONS,
                "Deletes a file.",
            )
        },
        O {
            success: ("200", Some(array_of(string()))),
            errors: "401, 404, 410",
            ..op(
                "get",
                "/sessions/{id}/workspace",
                "listWorkspaceObjects",
                SESSIONS,
                "Lists the workspace's object names.",
            )
        },
        O {
            body: Some(json!("binary")),
            errors: "400 (cannot be deserialized), 401, 404",
            ..op(
                "post",
                "/sessions/{id}/workspace/{objectName}",
                "setWorkspaceObject",
                SESSIONS,
                "Uploads an object serialized by the runtime (dill for Python).",
            )
        },
        O {
            success: ("200", Some(file())),
            errors: "401, 404",
            ..op(
                "get",
                "/sessions/{id}/workspace/{objectName}",
                "getWorkspaceObject",
                SESSIONS,
                "Downloads an object serialized by the runtime (dill for Python).",
            )
        },
        O {
            errors: "401, 404",
            ..op(
                "delete",
                "/sessions/{id}/workspace/{objectName}",
                "deleteWorkspaceObject",
                SESSIONS,
                "Deletes an object.",
            )
        },
        O {
            errors: "401, 404",
            ..op(
                "post",
                "/sessions/{id}/cancel",
                "cancelSession",
                SESSIONS,
                "Interrupts the running execution; the session stays usable.",
            )
        },
        O {
            body: Some(reference("CreateSnapshotRequest")),
            success: ("201", Some(reference("CreateSnapshotResponse"))),
            errors: "400, 401, 404",
            ..op(
                "post",
                "/sessions/{id}/snapshot",
                "CreateSnapshot",
                SNAPSHOTS,
                "Saves the workspace and working directory as a snapshot.",
            )
        },
        O {
            errors: "400 (other runtime), 401, 404",
            ..op(
                "post",
                "/sessions/{id}/loadsnapshot/{snapshotId}",
                "LoadSnapshot",
                SNAPSHOTS,
                "Merges a snapshot into the session.",
            )
        },
        O {
            success: ("200", Some(array_of(reference("Snapshot")))),
            ..op(
                "get",
                "/snapshots",
                "ListSnapshots",
                SNAPSHOTS,
                "Lists the caller's snapshots.",
            )
        },
        O {
            success: ("200", Some(file())),
            errors: "401, 404",
            ..op(
                "get",
                "/snapshots/{id}",
                "GetSnapshotContent",
                SNAPSHOTS,
                "Downloads a snapshot as a zip.",
            )
        },
        O {
            errors: "401, 404",
            ..op(
                "delete",
                "/snapshots/{id}",
                "DeleteSnapshot",
                SNAPSHOTS,
                "Deletes a snapshot.",
            )
        },
        O {
            success: ("200", Some(reference("StatusResponse"))),
            ..op(
                "get",
                "/status",
                "status",
                STATUS,
                "The health of the server and its components.",
            )
        },
        O {
            success: ("200", Some(json!({"type": "object"}))),
            errors: "none",
            ..op(
                "get",
                "/health",
                "health",
                STATUS,
                "Liveness: answers without a token while the HTTP server runs.",
            )
        },
        O {
            success: ("200", Some(array_of(reference("Environment")))),
            ..op(
                "get",
                "/environments",
                "getAllEnvironments",
                ENVIRONMENTS,
                "Lists the named environments, the runtimes' defaults first.",
            )
        },
        O {
            body: Some(reference("EnvironmentRequest")),
            success: ("201", Some(reference("Environment"))),
            errors: "400 (bad requirements, or a source not configured), 401, 403",
            ..op(
                "post",
                "/environments/{name}",
                "createOrRebuildEnvironment",
                ENVIRONMENTS,
                "Creates a named environment (201), or rebuilds it with new packages (200); the build runs asynchronously.",
            )
        },
        O {
            success: ("200", Some(reference("Environment"))),
            errors: "401, 404",
            ..op(
                "get",
                "/environments/{name}",
                "getEnvironment",
                ENVIRONMENTS,
                "An environment: its state, resolved packages, lock and build log.",
            )
        },
        O {
            errors: "400 (a default environment), 401, 403, 404, 409 (a service runs in it)",
            ..op(
                "delete",
                "/environments/{name}",
                "deleteEnvironment",
                ENVIRONMENTS,
                "Deletes an environment that no service runs in.",
            )
        },
    ]
}

fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "type": "string"}))
        .collect()
}

fn definitions() -> Value {
    let object = |properties: Value| json!({"type": "object", "properties": properties});
    let parameter = object(
        json!({"name": string(), "type": {"type": "string", "enum": ["logical", "numeric", "integer", "character", "vector", "matrix", "data.frame"]}}),
    );
    let named_value = object(json!({"name": string(), "value": {"type": "object"}}));
    json!({
        "LoginRequest": object(json!({"username": string(), "password": string()})),
        "RenewTokenRequest": object(json!({"refreshToken": string()})),
        "AccessTokenResponse": object(json!({"token_type": string(), "access_token": string(), "expires_in": {"type": "integer", "format": "int64"}, "expires_on": {"type": "integer", "format": "int64"}, "refresh_token": string()})),
        "ParameterDefinition": parameter,
        "WorkspaceObject": named_value,
        "PublishWebServiceRequest": object(json!({
            "snapshotId": string(), "code": string(), "description": string(), "operationId": string(),
            "inputParameterDefinitions": array_of(reference("ParameterDefinition")),
            "outputParameterDefinitions": array_of(reference("ParameterDefinition")),
            "runtimeType": {"type": "string", "enum": ["R", "Python"]}, "initCode": string(), "outputFileNames": array_of(string()),
            "environment": string()
        })),
        "WebService": object(json!({
            "name": string(), "version": string(), "versionPublishedBy": string(), "creationTime": string(), "snapshotId": string(),
            "runtimeType": {"type": "string", "enum": ["R", "Python", "Realtime"]}, "initCode": string(), "code": string(), "description": string(), "operationId": string(),
            "inputParameterDefinitions": array_of(reference("ParameterDefinition")),
            "outputParameterDefinitions": array_of(reference("ParameterDefinition")),
            "outputFileNames": array_of(string()), "myPermissionOnService": string(), "environment": string()
        })),
        "CreateSessionRequest": object(json!({"name": string(), "snapshotId": string(), "runtimeType": {"type": "string", "enum": ["R", "Python"]}, "environment": string()})),
        "CreateSessionResponse": object(json!({"sessionId": string()})),
        "Session": object(json!({"id": string(), "name": string(), "owner": string(), "runtimeType": {"type": "string", "enum": ["R", "Python"]}})),
        "ExecuteRequest": object(json!({"code": string(), "inputParameters": array_of(reference("WorkspaceObject")), "outputParameters": array_of(string())})),
        "ExecuteResponse": object(json!({"success": {"type": "boolean"}, "errorMessage": string(), "outputParameters": array_of(reference("WorkspaceObject")), "consoleOutput": string(), "changedFiles": array_of(string())})),
        "ConsoleOutputResponse": object(json!({"consoleOutput": string()})),
        "CreateSnapshotRequest": object(json!({"name": string()})),
        "CreateSnapshotResponse": object(json!({"snapshotId": string()})),
        "Snapshot": object(json!({"id": string(), "name": string(), "owner": string(), "creationTime": string(), "contentSize": {"type": "integer", "format": "int64"}, "environment": string()})),
        "EnvironmentRequest": object(json!({"runtimeType": {"type": "string", "enum": ["R", "Python"]}, "requirements": string(), "packages": array_of(string()), "repositories": array_of(string())})),
        "Environment": object(json!({
            "name": string(), "runtimeType": {"type": "string", "enum": ["R", "Python"]}, "owner": string(),
            "state": {"type": "string", "enum": ["Pending", "Building", "Ready", "Failed"]}, "isDefault": {"type": "boolean"},
            "requirements": string(), "packages": array_of(string()), "repositories": array_of(string()),
            "resolvedPackages": array_of(object(json!({"name": string(), "version": string()}))),
            "lock": string(), "log": string(), "creationTime": string(), "lastUpdateTime": string()
        })),
        "StatusResponse": object(json!({"statusCode": {"type": "string", "enum": ["pass", "warn", "fail"]}, "details": {"type": "object"}, "components": {"type": "object", "additionalProperties": reference("StatusResponse")}})),
        "Error": object(json!({"message": string(), "link": string(), "exceptionType": string()}))
    })
}

/// The core API description.
pub(crate) fn core_document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for operation in operations() {
        let mut parameters = path_parameters(operation.path);
        let mut consumes = None;
        match &operation.body {
            Some(Value::String(kind)) if kind == "realtime" => {
                consumes = Some(json!(["multipart/form-data"]));
                parameters.extend([
                    json!({"name": "description", "in": "formData", "required": false, "type": "string"}),
                    json!({"name": "operationId", "in": "formData", "required": false, "type": "string"}),
                    json!({"name": "model", "in": "formData", "required": operation.method == "post", "type": "file", "description": "An ONNX model"}),
                ]);
            }
            Some(Value::String(kind)) if kind == "file" => {
                consumes = Some(json!(["multipart/form-data"]));
                parameters.push(
                    json!({"name": "file", "in": "formData", "required": true, "type": "file"}),
                );
            }
            Some(Value::String(_)) => {
                consumes = Some(json!(["application/octet-stream"]));
                parameters.push(json!({"name": "serializedObject", "in": "body", "required": true, "schema": {"type": "string", "format": "binary"}}));
            }
            Some(schema) => parameters
                .push(json!({"name": "body", "in": "body", "required": true, "schema": schema})),
            None => {}
        }
        for name in operation.query {
            parameters
                .push(json!({"name": name, "in": "query", "required": true, "type": "string"}));
        }
        let (status, schema) = &operation.success;
        let mut success = json!({"description": "Success"});
        if let Some(schema) = schema {
            success["schema"] = schema.clone();
        }
        let mut entry = json!({
            "tags": [operation.tag],
            "summary": operation.summary,
            "operationId": operation.id,
            "parameters": parameters,
            "responses": {
                *status: success,
                "default": {"description": format!("Error: {}", operation.errors), "schema": reference("Error")}
            }
        });
        if let Some(consumes) = consumes {
            entry["consumes"] = consumes;
        }
        if !matches!(operation.path, "/login" | "/login/refreshToken" | "/health") {
            entry["security"] = json!([{"Bearer": []}]);
        }
        let item = paths
            .entry(operation.path.to_owned())
            .or_insert_with(|| json!({}));
        item[operation.method] = entry;
    }
    json!({
        "swagger": "2.0",
        "info": {
            "title": "o16n",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Publish R and Python code and models as versioned REST web services, run remote sessions, keep snapshots. Wire-compatible with the operationalization API of Machine Learning Server 9.3. Log in with POST /login, then Authorize with `Bearer <access_token>`."
        },
        "schemes": ["http", "https"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {"Bearer": {"type": "apiKey", "name": "Authorization", "in": "header"}},
        "paths": paths,
        "definitions": definitions()
    })
}

/// `GET /swagger.json` and the Swagger UI under `/swagger-ui`.
pub(crate) fn router() -> Router {
    let document = core_document();
    let ui = swagger_ui_dist::generate_routes(swagger_ui_dist::ApiDefinition {
        uri_prefix: UI_PREFIX,
        api_definition: swagger_ui_dist::OpenApiSource::Uri(DOCUMENT_PATH),
        title: Some("o16n API"),
    })
    .layer(axum::middleware::from_fn(ui_index));
    Router::new()
        .route(DOCUMENT_PATH, get(move || async move { Json(document) }))
        .merge(ui)
}

/// The Swagger UI page, with absolute links to its assets and the core document.
const UI_INDEX: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>o16n API</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/swagger-ui/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/swagger-ui/swagger-ui-bundle.js"></script>
<script>
window.onload = () => {
  window.ui = SwaggerUIBundle({ url: "/swagger.json", dom_id: "#swagger-ui" });
};
</script>
</body>
</html>"##;

/// Answers `/swagger-ui` and `/swagger-ui/` with [`UI_INDEX`]; the crate's own page builds its
/// links from the request URI, which gives `/swagger-ui//swagger-ui.css` under `/swagger-ui/`
/// and would copy a query string into the page unescaped.
async fn ui_index(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path == UI_PREFIX || path.strip_prefix(UI_PREFIX) == Some("/") {
        return Html(UI_INDEX).into_response();
    }
    next.run(request).await
}
