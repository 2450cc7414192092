//! The Swagger 2.0 document of one published service, shaped like the documents the reference
//! server generated (`shared/reference/swagger/service-examples/`): the consume operation under
//! the service's operationId, the batch operations, the login operations (so that a client
//! generated from this document alone can authenticate), and `InputParameters` /
//! `OutputParameters` with one property per declared parameter. A pure function of the
//! definition (and, for a realtime service, of its model's columns).

use o16n_app::{ColumnType, InputColumns, Signature};
use o16n_types::Service;
use o16n_types::{ParameterDefinition, ParameterType};
use serde_json::{Map, Value, json};

/// The operationId of the consume operation when the publisher gave none (the reference's).
const DEFAULT_OPERATION_ID: &str = "ConsumeWebService";
/// The same for a realtime service (the reference's alias `consume`).
const DEFAULT_REALTIME_OPERATION_ID: &str = "consume";

fn column_schema(kind: ColumnType) -> Value {
    json!({"type": "array", "items": {"type": kind.schema_type()}})
}

/// `InputParameters` and `OutputParameters` of a realtime service: `inputData` and
/// `outputData`, data frames whose columns come from the model.
fn realtime_schemas(signature: &Signature) -> (Value, Value) {
    let input_data = match &signature.inputs {
        InputColumns::Named(columns) => {
            let properties: Map<String, Value> = columns
                .iter()
                .map(|(name, kind)| (name.clone(), column_schema(*kind)))
                .collect();
            let required: Vec<&String> = columns.iter().map(|(name, _)| name).collect();
            json!({
                "type": "object",
                "description": "data.frame: one array of values per column, by name",
                "properties": properties,
                "required": required
            })
        }
        InputColumns::Ordered { count, kind } => json!({
            "type": "object",
            "description": format!(
                "data.frame: {count} columns of equal length, in the order of the model's features (any names)"
            ),
            "additionalProperties": column_schema(*kind),
            "minProperties": count,
            "maxProperties": count
        }),
    };
    let output_columns: Map<String, Value> = signature
        .outputs
        .iter()
        .map(|(name, kind)| (name.clone(), column_schema(*kind)))
        .collect();
    let output_data = json!({
        "type": "object",
        "description": "data.frame: one array of values per column, one value per input row",
        "properties": output_columns
    });
    (
        json!({"type": "object", "properties": {"inputData": input_data}, "required": ["inputData"]}),
        json!({"type": "object", "properties": {"outputData": output_data}}),
    )
}

/// The JSON schema of a declared parameter, with the reference type name as description.
fn parameter_schema(kind: ParameterType) -> Value {
    let description = kind.as_str();
    match kind {
        ParameterType::Logical => json!({"type": "boolean", "description": description}),
        ParameterType::Numeric => json!({"type": "number", "description": description}),
        ParameterType::Integer => {
            json!({"type": "integer", "format": "int64", "description": description})
        }
        ParameterType::Character => json!({"type": "string", "description": description}),
        ParameterType::Vector => {
            json!({"type": "array", "items": {"type": "number"}, "description": description})
        }
        ParameterType::Matrix => {
            json!({"type": "array", "items": {"type": "array", "items": {"type": "number"}}, "description": description})
        }
        ParameterType::DataFrame => json!({
            "type": "object",
            "additionalProperties": {"type": "array", "items": {}},
            "description": description
        }),
    }
}

fn parameters_schema(parameters: &[ParameterDefinition]) -> Value {
    let properties: Map<String, Value> = parameters
        .iter()
        .map(|parameter| (parameter.name.clone(), parameter_schema(parameter.kind)))
        .collect();
    json!({"type": "object", "properties": properties})
}

fn error_response(text: &str) -> Value {
    json!({"description": text, "schema": {"$ref": "#/definitions/Error"}})
}

/// The document for one service version; `realtime` is the model's signature for a realtime
/// service.
pub(crate) fn service_document(service: &Service, realtime: Option<&Signature>) -> Value {
    let name = service.name.as_str();
    let base = format!("/api/{name}/{}", service.version);
    let description = service.description.clone().unwrap_or_default();
    let operation_id = service.operation_id.as_deref().unwrap_or(match realtime {
        Some(_) => DEFAULT_REALTIME_OPERATION_ID,
        None => DEFAULT_OPERATION_ID,
    });
    let (input_parameters, output_parameters) = match realtime {
        Some(signature) => realtime_schemas(signature),
        None => (
            parameters_schema(&service.inputs),
            parameters_schema(&service.outputs),
        ),
    };
    let bearer = json!([{"Bearer": []}]);
    let execution_id = json!({"name": "executionId", "in": "path", "description": "Execution id of the execution.", "required": true, "type": "string"});
    let index = json!({"name": "index", "in": "path", "description": "Index (0-based) of the record in the batch.", "required": true, "type": "integer", "format": "int32"});
    let mut paths = Map::new();
    paths.insert("/login".to_owned(), json!({
        "post": {
            "operationId": "login",
            "summary": "Logs the user in",
            "tags": ["User"],
            "parameters": [{"name": "loginRequest", "in": "body", "required": true, "schema": {"$ref": "#/definitions/LoginRequest"}}],
            "responses": {
                "200": {"description": "Login successful", "schema": {"$ref": "#/definitions/AccessTokenResponse"}},
                "default": error_response("Error \n * 401 - Invalid credentials")
            }
        }
    }));
    paths.insert("/login/refreshToken".to_owned(), json!({
        "post": {
            "operationId": "renewToken",
            "summary": "The user renews access token and refresh token",
            "tags": ["User"],
            "parameters": [{"name": "renewTokenRequest", "in": "body", "required": true, "schema": {"$ref": "#/definitions/RenewTokenRequest"}}],
            "responses": {
                "200": {"description": "Access token and refresh token updated successfully", "schema": {"$ref": "#/definitions/AccessTokenResponse"}},
                "default": error_response("Error \n * 401 - Invalid or expired refresh token")
            }
        },
        "delete": {
            "operationId": "revokeRefreshToken",
            "summary": "The user revokes a refresh token",
            "tags": ["User"],
            "parameters": [{"name": "refreshToken", "in": "query", "description": "The refresh token to be revoked", "required": true, "type": "string"}],
            "responses": {
                "200": {"description": "Refresh token revoked"},
                "default": error_response("Error \n * 401 - Invalid or expired refresh token")
            }
        }
    }));
    paths.insert(base.clone(), json!({
        "post": {
            "security": bearer,
            "tags": [name],
            "description": format!("Consume the {name} web service."),
            "operationId": operation_id,
            "parameters": [{"name": "WebServiceParameters", "in": "body", "required": true, "description": "Input parameters to the web service.", "schema": {"$ref": "#/definitions/InputParameters"}}],
            "responses": {
                "200": {"description": "OK", "schema": {"$ref": "#/definitions/WebServiceResult"}},
                "400": {"description": "Bad Request."},
                "500": {"description": "Internal Server Error."},
                "default": error_response("Unexpected error.")
            }
        }
    }));
    paths.insert(format!("{base}/batch"), json!({
        "post": {
            "security": bearer,
            "tags": [name],
            "description": format!("Consume the {name} web service asynchronously."),
            "operationId": "StartBatchExecution",
            "parameters": [
                {"name": "BatchWebServiceParameters", "in": "body", "required": true, "description": "Input parameters to the web service.", "schema": {"type": "array", "items": {"$ref": "#/definitions/InputParameters"}}},
                {"name": "parallelCount", "in": "query", "description": "Number of records processed in parallel. Default value is 10.", "required": false, "type": "integer", "format": "int32"}
            ],
            "responses": {
                "202": {"description": "Accepted", "schema": {"$ref": "#/definitions/StartBatchExecutionResponse"}},
                "400": {"description": "Bad Request."},
                "500": {"description": "Internal Server Error."},
                "default": error_response("Unexpected error.")
            }
        },
        "get": {
            "security": bearer,
            "tags": [name],
            "summary": format!("Gets all batch executions for {name}."),
            "operationId": "GetBatchExecutions",
            "responses": {
                "200": {"description": "OK", "schema": {"type": "array", "items": {"type": "string"}}},
                "default": error_response("Error \n * 404 - Web service not found \n * 400 - Bad request")
            }
        }
    }));
    paths.insert(format!("{base}/batch/{{executionId}}"), json!({
        "get": {
            "security": bearer,
            "tags": [name],
            "summary": format!("Gets the status and results of a batch execution of {name}."),
            "operationId": "GetBatchExecutionStatus",
            "parameters": [execution_id, {"name": "showPartialResults", "in": "query", "description": "Returns the already processed results of the batch execution even if it hasn't been fully completed.", "required": false, "type": "boolean"}],
            "responses": {
                "200": {"description": "OK", "schema": {"$ref": "#/definitions/BatchWebServiceResult"}},
                "default": error_response("Error \n * 404 - Web service not found \n * 404 - Execution not found \n * 400 - Bad request")
            }
        },
        "delete": {
            "security": bearer,
            "tags": [name],
            "summary": format!("Cancels and deletes a batch execution of {name}."),
            "operationId": "CancelAndDeleteBatchExecution",
            "parameters": [execution_id],
            "responses": {
                "200": {"description": "OK", "schema": {"type": "array", "items": {"type": "string"}}},
                "default": error_response("Error \n * 404 - Web service not found \n * 404 - Execution not found \n * 400 - Bad request")
            }
        }
    }));
    paths.insert(format!("{base}/batch/{{executionId}}/{{index}}/files"), json!({
        "get": {
            "security": bearer,
            "tags": [name],
            "summary": format!("Gets all files from an individual execution in {name}."),
            "operationId": "GetBatchExecutionFiles",
            "parameters": [execution_id, index],
            "responses": {
                "200": {"description": "OK", "schema": {"type": "array", "items": {"type": "string"}}},
                "default": error_response("Error \n * 404 - Web service not found \n * 404 - Execution not found \n * 400 - Bad request")
            }
        }
    }));
    paths.insert(format!("{base}/batch/{{executionId}}/{{index}}/files/{{fileName}}"), json!({
        "get": {
            "security": bearer,
            "tags": [name],
            "summary": format!("Gets a specific file from an execution in {name}."),
            "operationId": "GetBatchExecutionFile",
            "produces": ["application/octet-stream"],
            "parameters": [execution_id, index, {"name": "fileName", "in": "path", "description": "Name of the file to be returned.", "required": true, "type": "string"}],
            "responses": {
                "200": {"description": "OK", "schema": {"type": "file"}},
                "default": error_response("Error \n * 404 - Web service not found \n * 404 - Execution not found \n * 404 - File not found \n * 400 - Bad request")
            }
        }
    }));

    json!({
        "swagger": "2.0",
        "info": {"description": description, "title": name, "version": service.version.as_str()},
        "schemes": ["http", "https"],
        "securityDefinitions": {"Bearer": {"type": "apiKey", "name": "Authorization", "in": "header"}},
        "tags": [{"name": name, "description": description}],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "paths": paths,
        "definitions": {
            "InputParameters": input_parameters,
            "OutputParameters": output_parameters,
            "Error": {"type": "object", "properties": {"code": {"type": "integer", "format": "int32"}, "message": {"type": "string"}, "fields": {"type": "string"}}},
            "WebServiceResult": {
                "type": "object",
                "properties": {
                    "success": {"type": "boolean", "description": "Boolean flag indicating the success status of web service execution."},
                    "errorMessage": {"type": "string", "description": "Error messages if any occurred during the web service execution."},
                    "consoleOutput": {"type": "string", "description": "Console output from the web service execution."},
                    "changedFiles": {"type": "array", "items": {"type": "string"}, "description": "The filenames of the files modified during the web service execution."},
                    "outputFiles": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
                    "outputParameters": {"$ref": "#/definitions/OutputParameters"}
                }
            },
            "StartBatchExecutionResponse": {"type": "object", "properties": {"batchExecutionId": {"type": "string", "description": "Id of the asynchronous execution."}}},
            "BatchWebServiceResult": {
                "type": "object",
                "properties": {
                    "state": {"type": "string", "enum": ["Pending", "InProgress", "Complete", "Failed"], "description": "State of the execution."},
                    "completedItemCount": {"type": "integer", "format": "int32", "description": "Number of completed items in this batch operation."},
                    "totalItemCount": {"type": "integer", "format": "int32", "description": "Number of total items in this batch operation."},
                    "batchExecutionResults": {"type": "array", "items": {"$ref": "#/definitions/WebServiceResult"}, "description": "The responses of the individual executions, in record order."}
                }
            },
            "LoginRequest": {"type": "object", "properties": {"username": {"type": "string", "description": "The name of the user."}, "password": {"type": "string", "description": "The password of the user."}}},
            "RenewTokenRequest": {"type": "object", "properties": {"refreshToken": {"type": "string", "description": "A currently valid refresh token."}}},
            "AccessTokenResponse": {
                "type": "object",
                "properties": {
                    "token_type": {"type": "string"},
                    "access_token": {"type": "string"},
                    "expires_in": {"type": "integer", "format": "int64"},
                    "expires_on": {"type": "integer", "format": "int64"},
                    "refresh_token": {"type": "string"}
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use o16n_types::{RuntimeType, ServiceName, ServiceVersion};

    use super::*;

    fn service(operation_id: Option<&str>) -> Service {
        Service {
            name: ServiceName::parse("TxService").unwrap(),
            version: ServiceVersion::parse("1.0").unwrap(),
            owner: o16n_types::Username::parse("admin").unwrap(),
            runtime: RuntimeType::Python.into(),
            created_at_micros: 0,
            revision: "r".to_owned(),
            description: Some("My first python model".to_owned()),
            operation_id: operation_id.map(str::to_owned),
            code: String::new(),
            init_code: None,
            inputs: vec![
                ParameterDefinition {
                    name: "hp".to_owned(),
                    kind: ParameterType::Numeric,
                },
                ParameterDefinition {
                    name: "n".to_owned(),
                    kind: ParameterType::Integer,
                },
            ],
            outputs: vec![ParameterDefinition {
                name: "answer".to_owned(),
                kind: ParameterType::DataFrame,
            }],
            output_file_names: Vec::new(),
            snapshot_id: None,
            content: None,
            pool: None,
            environment: None,
            environment_lock: None,
        }
    }

    #[test]
    fn the_document_matches_the_reference_shape() {
        let document = service_document(&service(Some("manualTransmission")), None);
        assert_eq!(document["swagger"], "2.0");
        assert_eq!(
            document["info"],
            json!({"description": "My first python model", "title": "TxService", "version": "1.0"})
        );
        assert_eq!(
            document["paths"]["/api/TxService/1.0"]["post"]["operationId"],
            "manualTransmission"
        );
        assert_eq!(
            document["definitions"]["InputParameters"]["properties"]["hp"],
            json!({"type": "number", "description": "numeric"})
        );
        assert_eq!(
            document["definitions"]["OutputParameters"]["properties"]["answer"]["description"],
            "data.frame"
        );
        for path in [
            "/login",
            "/login/refreshToken",
            "/api/TxService/1.0/batch",
            "/api/TxService/1.0/batch/{executionId}/{index}/files/{fileName}",
        ] {
            assert!(document["paths"].get(path).is_some(), "{path}");
        }
        assert_eq!(document["securityDefinitions"]["Bearer"]["in"], "header");
    }

    #[test]
    fn without_an_operation_id_the_reference_default_is_used() {
        let document = service_document(&service(None), None);
        assert_eq!(
            document["paths"]["/api/TxService/1.0"]["post"]["operationId"],
            "ConsumeWebService"
        );
    }
}
