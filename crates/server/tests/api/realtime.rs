//! Realtime services: ONNX models published over multipart and scored natively. The models are
//! built here, operator by operator, so that every expected answer is known exactly; the
//! scikit-learn models are tested end to end by `tests/client/test_realtime.py`.

use o16n_types::Role;
use prost::Message;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, type_proto,
};

use crate::helpers::{TestApp, assert_error_shape, spawn_app};

const FLOAT: i32 = 1;
const UINT8: i32 = 2;
const DOUBLE: i32 = 11;
const STRING: i32 = 8;
const INT64: i32 = 7;

/// A tensor of `[N, width]` (or `[N]` without a width).
fn tensor(name: &str, elem_type: i32, width: Option<i64>) -> ValueInfoProto {
    let mut dim = vec![Dimension {
        value: Some(dimension::Value::DimParam("N".to_owned())),
        ..Dimension::default()
    }];
    if let Some(width) = width {
        dim.push(Dimension {
            value: Some(dimension::Value::DimValue(width)),
            ..Dimension::default()
        });
    }
    ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..TypeProto::default()
        }),
        ..ValueInfoProto::default()
    }
}

fn floats(name: &str, values: &[f32]) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Floats as i32,
        floats: values.to_vec(),
        ..AttributeProto::default()
    }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..AttributeProto::default()
    }
}

fn strings(name: &str, values: &[&str]) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Strings as i32,
        strings: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
        ..AttributeProto::default()
    }
}

/// A tensor attribute (`[values.len()]`) of `data_type` FLOAT, DOUBLE or UINT8.
fn tensor_attribute(name: &str, data_type: i32, values: &[f64]) -> AttributeProto {
    let mut tensor = TensorProto {
        data_type,
        dims: vec![values.len() as i64],
        ..TensorProto::default()
    };
    match data_type {
        DOUBLE => tensor.double_data = values.to_vec(),
        FLOAT => tensor.float_data = values.iter().map(|&v| v as f32).collect(),
        _ => tensor.int32_data = values.iter().map(|&v| v as i32).collect(),
    }
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Tensor as i32,
        t: Some(tensor),
        ..AttributeProto::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..AttributeProto::default()
    }
}

fn node(
    op_type: &str,
    inputs: &[&str],
    outputs: &[&str],
    attributes: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: op_type.to_owned(),
        domain: "ai.onnx.ml".to_owned(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attributes,
        ..NodeProto::default()
    }
}

fn model(
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
) -> Vec<u8> {
    let opset = |domain: &str, version| OperatorSetIdProto {
        domain: domain.to_owned(),
        version,
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![opset("", 17), opset("ai.onnx.ml", 3)],
        graph: Some(GraphProto {
            name: "test".to_owned(),
            node: nodes,
            input: inputs,
            output: outputs,
            ..GraphProto::default()
        }),
        ..ModelProto::default()
    }
    .encode_to_vec()
}

/// `variable = 2a - b + 0.5` on one `[N, 2]` input: exact in floating point for small values.
pub(crate) fn linear_model() -> Vec<u8> {
    model(
        vec![node(
            "LinearRegressor",
            &["X"],
            &["variable"],
            vec![
                floats("coefficients", &[2.0, -1.0]),
                floats("intercepts", &[0.5]),
            ],
        )],
        vec![tensor("X", FLOAT, Some(2))],
        vec![tensor("variable", FLOAT, Some(1))],
    )
}

/// The same on two named inputs of one column each, joined by `Concat`.
fn two_input_model() -> Vec<u8> {
    let mut concat = node("Concat", &["a", "b"], &["X"], vec![int("axis", 1)]);
    concat.domain = String::new();
    model(
        vec![
            concat,
            node(
                "LinearRegressor",
                &["X"],
                &["variable"],
                vec![
                    floats("coefficients", &[2.0, -1.0]),
                    floats("intercepts", &[0.5]),
                ],
            ),
        ],
        vec![tensor("a", FLOAT, Some(1)), tensor("b", FLOAT, Some(1))],
        vec![tensor("variable", FLOAT, Some(1))],
    )
}

/// ONNX-ML opset 5's `TreeEnsemble` with two trees on `[N, 2]` doubles: the first splits
/// feature 0 at `split` (at most: leaf weight 1, else branch 1, which splits feature 1 at 0:
/// at most 10, else 100); the second is a single leaf of 1000. `first_false` is where branch 0
/// sends the rest (1 for branch 1) and `roots` the trees' roots (`[0, 2]`).
fn opset_5_ensemble(split: f64, first_false: i64, roots: &[i64]) -> Vec<u8> {
    let mut bytes = model(
        vec![node(
            "TreeEnsemble",
            &["X"],
            &["Y"],
            vec![
                int("n_targets", 1),
                ints("tree_roots", roots),
                ints("nodes_featureids", &[0, 1, 0]),
                tensor_attribute("nodes_modes", UINT8, &[0.0, 0.0, 0.0]),
                tensor_attribute("nodes_splits", DOUBLE, &[split, 0.0, 0.0]),
                ints("nodes_truenodeids", &[0, 1, 3]),
                ints("nodes_trueleafs", &[1, 1, 1]),
                ints("nodes_falsenodeids", &[first_false, 2, 3]),
                ints("nodes_falseleafs", &[0, 1, 1]),
                ints("leaf_targetids", &[0, 0, 0, 0]),
                tensor_attribute("leaf_weights", DOUBLE, &[1.0, 10.0, 100.0, 1000.0]),
            ],
        )],
        vec![tensor("X", DOUBLE, Some(2))],
        vec![tensor("Y", DOUBLE, Some(1))],
    );
    // Opset 5 of ONNX-ML came with ONNX's opset 21.
    let mut proto = ModelProto::decode(bytes.as_slice()).unwrap();
    proto.ir_version = 10;
    proto.opset_import[0].version = 21;
    proto.opset_import[1].version = 5;
    bytes.clear();
    proto.encode(&mut bytes).unwrap();
    bytes
}

/// `Y = X[:, index]` on `[N, 3]` floats, the index a constant as skl2onnx's are.
fn array_feature_extractor(index: i64) -> Vec<u8> {
    let indices = TensorProto {
        data_type: INT64,
        dims: vec![1],
        int64_data: vec![index],
        ..TensorProto::default()
    };
    let constant = NodeProto {
        op_type: "Constant".to_owned(),
        output: vec!["index".to_owned()],
        attribute: vec![AttributeProto {
            name: "value".to_owned(),
            r#type: AttributeType::Tensor as i32,
            t: Some(indices),
            ..AttributeProto::default()
        }],
        ..NodeProto::default()
    };
    model(
        vec![
            constant,
            node("ArrayFeatureExtractor", &["X", "index"], &["Y"], vec![]),
        ],
        vec![tensor("X", FLOAT, Some(3))],
        vec![tensor("Y", FLOAT, Some(1))],
    )
}

/// One tree on feature 0: at most 0.5 is "no" (probabilities 0.75/0.25), else "yes" (0.1/0.9).
fn stump_classifier(false_child: i64) -> Vec<u8> {
    model(
        vec![node(
            "TreeEnsembleClassifier",
            &["X"],
            &["label", "probabilities"],
            vec![
                strings("classlabels_strings", &["no", "yes"]),
                ints("nodes_treeids", &[0, 0, 0]),
                ints("nodes_nodeids", &[0, 1, 2]),
                ints("nodes_featureids", &[0, 0, 0]),
                strings("nodes_modes", &["BRANCH_LEQ", "LEAF", "LEAF"]),
                floats("nodes_values", &[0.5, 0.0, 0.0]),
                ints("nodes_truenodeids", &[1, 0, 0]),
                ints("nodes_falsenodeids", &[false_child, 0, 0]),
                ints("class_treeids", &[0, 0, 0, 0]),
                ints("class_nodeids", &[1, 1, 2, 2]),
                ints("class_ids", &[0, 1, 0, 1]),
                floats("class_weights", &[0.75, 0.25, 0.1, 0.9]),
            ],
        )],
        vec![tensor("X", FLOAT, Some(2))],
        vec![
            tensor("label", STRING, None),
            tensor("probabilities", FLOAT, Some(2)),
        ],
    )
}

async fn publish(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    model: Option<Vec<u8>>,
    fields: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form = Form::new();
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    if let Some(model) = model {
        form = form.part("model", Part::bytes(model).file_name("model"));
    }
    let response = app
        .client
        .request(method, app.url(path))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn score(app: &TestApp, token: &str, path: &str, input_data: Value) -> (StatusCode, Value) {
    app.call(
        Method::POST,
        path,
        Some(token),
        Some(json!({"inputData": input_data})),
    )
    .await
}

#[tokio::test]
async fn a_published_model_scores_many_rows_with_columns_in_order() {
    let app = spawn_app().await;
    let token = app.user_token("jane", Role::Contributor).await;
    let (status, body) = publish(
        &app,
        &token,
        Method::POST,
        "/realtime-services/linear/v1",
        Some(linear_model()),
        &[("description", "2a - b"), ("operationId", "predict")],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, "/api/linear/v1");

    // The column names are free: a one-input model takes the columns in the order given, so
    // `second` is the model's first feature.
    let (status, body) = score(
        &app,
        &token,
        "/api/linear/v1",
        json!({"second": [1.0, 0.0, 3.0], "first": [4.0, 0.25, -1.0]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(
        body["outputParameters"]["outputData"],
        json!({"variable": [-1.5, 0.25, 7.5]})
    );

    let (status, body) = app
        .call(Method::GET, "/services/linear/v1", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0]["runtimeType"], "Realtime");
    assert_eq!(body[0]["operationId"], "predict");
    assert_eq!(
        body[0]["inputParameterDefinitions"],
        json!([{"name": "inputData", "type": "data.frame"}])
    );
    assert_eq!(
        body[0]["outputParameterDefinitions"],
        json!([{"name": "outputData", "type": "data.frame"}])
    );
}

/// A server with `model` published as realtime service `name` version `v1`, and an admin token.
async fn with_published(name: &str, model: Vec<u8>) -> (TestApp, String) {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let (status, body) = publish(
        &app,
        &token,
        Method::POST,
        &format!("/realtime-services/{name}/v1"),
        Some(model),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (app, token)
}

#[tokio::test]
async fn columns_go_to_inputs_by_name_when_the_model_has_one_per_column() {
    let (app, token) = with_published("named", two_input_model()).await;

    let (status, body) = score(
        &app,
        &token,
        "/api/named/v1",
        json!({"b": [1.0], "a": [4.0]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["outputParameters"]["outputData"],
        json!({"variable": [7.5]})
    );

    // Rows as objects are accepted too.
    let (status, body) = score(
        &app,
        &token,
        "/api/named/v1",
        json!([{"a": 1, "b": 2}, {"a": 0, "b": 0}]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["outputParameters"]["outputData"],
        json!({"variable": [0.5, 0.5]})
    );

    let (status, body) = score(
        &app,
        &token,
        "/api/named/v1",
        json!({"a": [1.0], "c": [2.0]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error_shape(&body);
    assert!(body["message"].as_str().unwrap().contains("`b`"), "{body}");
}

#[tokio::test]
async fn a_classifier_returns_the_label_and_one_probability_column_per_class() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let (status, body) = publish(
        &app,
        &token,
        Method::POST,
        "/realtime-services/stump",
        Some(stump_classifier(2)),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let path = body.as_str().unwrap().to_owned();

    let (status, body) = score(
        &app,
        &token,
        &path,
        json!({"x": [0.2, 0.9, null], "unused": [0, 0, 0]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let output = &body["outputParameters"]["outputData"];
    // A missing value (null) goes the way the model says, here the false way.
    assert_eq!(output["label"], json!(["no", "yes", "yes"]));
    let (low, high) = (0.10000000149011612, 0.8999999761581421);
    assert_eq!(output["probabilities_no"], json!([0.75, low, low]));
    assert_eq!(output["probabilities_yes"], json!([0.25, high, high]));

    let version = path.rsplit('/').next().unwrap();
    let (status, swagger) = app
        .call(
            Method::GET,
            &format!("/api/stump/{version}/swagger.json"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(swagger["paths"][&path]["post"]["operationId"], "consume");
    let input_data = &swagger["definitions"]["InputParameters"]["properties"]["inputData"];
    assert_eq!(input_data["minProperties"], 2);
    let output_data =
        &swagger["definitions"]["OutputParameters"]["properties"]["outputData"]["properties"];
    assert_eq!(output_data["label"]["items"]["type"], "string");
    assert_eq!(output_data["probabilities_yes"]["items"]["type"], "number");
}

#[tokio::test]
async fn bad_inputs_get_a_bad_request_that_names_the_problem() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    publish(
        &app,
        &token,
        Method::POST,
        "/realtime-services/linear/v1",
        Some(linear_model()),
        &[],
    )
    .await;
    let cases = [
        (json!({"a": [1.0]}), "2"),
        (json!({"a": [1.0, 2.0], "b": [1.0]}), "different lengths"),
        (json!({"a": ["x"], "b": [1.0]}), "expected a number"),
        (json!({"a": [], "b": []}), "no rows"),
        (json!({"a": 1, "b": 2}), "array"),
        (json!("text"), "inputData"),
    ];
    for (input_data, expected) in cases {
        let (status, body) = score(&app, &token, "/api/linear/v1", input_data.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{input_data}: {body}");
        assert_error_shape(&body);
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(expected), "{input_data}: {message}");
    }
    let (status, body) = app
        .call(
            Method::POST,
            "/api/linear/v1",
            Some(&token),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("inputData"),
        "{body}"
    );
}

/// Two named inputs side by side (`FeatureVectorizer`), missing values imputed per column,
/// then each value binarized at 1.5.
fn preprocessing_model() -> Vec<u8> {
    model(
        vec![
            node(
                "FeatureVectorizer",
                &["a", "b"],
                &["joined"],
                vec![ints("inputdimensions", &[1, 1])],
            ),
            node(
                "Imputer",
                &["joined"],
                &["filled"],
                vec![
                    floats("imputed_value_floats", &[10.0, 20.0]),
                    AttributeProto {
                        name: "replaced_value_float".to_owned(),
                        r#type: AttributeType::Float as i32,
                        f: f32::NAN,
                        ..AttributeProto::default()
                    },
                ],
            ),
            node(
                "Binarizer",
                &["filled"],
                &["high"],
                vec![AttributeProto {
                    name: "threshold".to_owned(),
                    r#type: AttributeType::Float as i32,
                    f: 15.0,
                    ..AttributeProto::default()
                }],
            ),
        ],
        vec![tensor("a", FLOAT, Some(1)), tensor("b", FLOAT, Some(1))],
        vec![
            tensor("filled", FLOAT, Some(2)),
            tensor("high", FLOAT, Some(2)),
        ],
    )
}

#[tokio::test]
async fn per_column_inputs_are_joined_imputed_and_binarized() {
    let (app, token) = with_published("prep", preprocessing_model()).await;
    let (status, body) = score(
        &app,
        &token,
        "/api/prep/v1",
        json!({"b": [null, 30.0, 1.0], "a": [1.0, null, 16.0]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let output = &body["outputParameters"]["outputData"];
    assert_eq!(output["filled_0"], json!([1.0, 10.0, 16.0]), "{body}");
    assert_eq!(output["filled_1"], json!([20.0, 30.0, 1.0]), "{body}");
    assert_eq!(output["high_0"], json!([0.0, 0.0, 1.0]), "{body}");
    assert_eq!(output["high_1"], json!([1.0, 1.0, 0.0]), "{body}");
}

#[tokio::test]
async fn opset_5_tree_ensembles_compare_in_double_precision() {
    // 0.1 + 1e-12 is 0.1 in single precision: only a double comparison sends it the false way.
    let (app, token) = with_published("trees5", opset_5_ensemble(0.1, 1, &[0, 2])).await;
    let (status, body) = score(
        &app,
        &token,
        "/api/trees5/v1",
        json!({"x0": [0.1, 1.000_000_000_001e-1, 0.5, null], "x1": [0.0, 0.0, 1.0, -1.0]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["outputParameters"]["outputData"]["Y"],
        json!([1001.0, 1010.0, 1100.0, 1010.0]),
        "{body}"
    );
}

#[tokio::test]
async fn an_array_feature_extractor_picks_a_column() {
    let (app, token) = with_published("pick", array_feature_extractor(2)).await;
    let (status, body) = score(
        &app,
        &token,
        "/api/pick/v1",
        json!({"a": [1.0, 2.0], "b": [3.0, 4.0], "c": [5.0, 6.0]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["outputParameters"]["outputData"]["Y"],
        json!([5.0, 6.0]),
        "{body}"
    );
}

#[tokio::test]
async fn a_string_column_is_one_hot_encoded_and_an_unknown_category_is_a_bad_request() {
    let encoder = model(
        vec![node(
            "OneHotEncoder",
            &["colour"],
            &["encoded"],
            vec![strings("cats_strings", &["blue", "red"]), int("zeros", 0)],
        )],
        // A 1-D input, so that the output is one row of categories per input row.
        vec![tensor("colour", STRING, None)],
        vec![tensor("encoded", FLOAT, Some(2))],
    );
    let (app, token) = with_published("colours", encoder).await;
    let (status, body) = score(
        &app,
        &token,
        "/api/colours/v1",
        json!({"colour": ["red", "blue", "red"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let output = &body["outputParameters"]["outputData"];
    assert_eq!(output["encoded_0"], json!([0.0, 1.0, 0.0]), "{body}");
    assert_eq!(output["encoded_1"], json!([1.0, 0.0, 1.0]), "{body}");
    let (status, body) = score(
        &app,
        &token,
        "/api/colours/v1",
        json!({"colour": ["red", "purple"]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        assert_error_shape(&body).contains("row 1 has a value that is not one of the categories"),
        "{body}"
    );
    let (status, body) = score(&app, &token, "/api/colours/v1", json!({"colour": [1.5]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn a_label_encoder_maps_strings_to_numbers_with_its_default_for_the_rest() {
    let encoder = model(
        vec![node(
            "LabelEncoder",
            &["species"],
            &["code"],
            vec![
                strings("keys_strings", &["setosa", "versicolor"]),
                ints("values_int64s", &[0, 1]),
                int("default_int64", 99),
            ],
        )],
        vec![tensor("species", STRING, None)],
        vec![tensor("code", INT64, None)],
    );
    let (app, token) = with_published("codes", encoder).await;
    let (status, body) = score(
        &app,
        &token,
        "/api/codes/v1",
        json!({"species": ["versicolor", "setosa", "unknown"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["outputParameters"]["outputData"]["code"],
        json!([1, 0, 99]),
        "{body}"
    );
}

#[tokio::test]
async fn models_the_engine_cannot_run_are_refused_at_publish_time() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let unknown_operator = model(
        vec![node("FancyScorer", &["X"], &["Y"], vec![])],
        vec![tensor("X", FLOAT, Some(2))],
        vec![tensor("Y", FLOAT, Some(1))],
    );
    let mut blob = b"blob".to_vec();
    blob.extend_from_slice(&[0, 1, 2, 3]);
    // Hostile preprocessing: an imputer with values for 2 of 3 columns, a vectorizer whose
    // declared dimensions do not match its inputs.
    let short_imputer = model(
        vec![node(
            "Imputer",
            &["X"],
            &["Y"],
            vec![floats("imputed_value_floats", &[1.0, 2.0])],
        )],
        vec![tensor("X", FLOAT, Some(3))],
        vec![tensor("Y", FLOAT, Some(3))],
    );
    let vectorizer = |dimensions: &[i64]| {
        model(
            vec![node(
                "FeatureVectorizer",
                &["a", "b"],
                &["Y"],
                vec![ints("inputdimensions", dimensions)],
            )],
            vec![tensor("a", FLOAT, Some(1)), tensor("b", FLOAT, Some(2))],
            vec![tensor("Y", FLOAT, Some(3))],
        )
    };
    let numbers_as_strings = model(
        vec![node(
            "OneHotEncoder",
            &["X"],
            &["Y"],
            vec![strings("cats_strings", &["a", "b"])],
        )],
        vec![tensor("X", FLOAT, Some(1))],
        vec![tensor("Y", FLOAT, None)],
    );
    let label_encoder = |keys: &[&str], values: &[i64], input_type: i32| {
        model(
            vec![node(
                "LabelEncoder",
                &["X"],
                &["Y"],
                vec![strings("keys_strings", keys), ints("values_int64s", values)],
            )],
            vec![tensor("X", input_type, None)],
            vec![tensor("Y", INT64, None)],
        )
    };
    let short_svm = model(
        vec![node(
            "SVMClassifier",
            &["X"],
            &["label", "scores"],
            vec![
                ints("classlabels_ints", &[0, 1]),
                ints("vectors_per_class", &[1, 1]),
                floats("support_vectors", &[0.0, 1.0, 1.0, 0.0]),
                floats("coefficients", &[1.0]),
                floats("rho", &[0.0]),
            ],
        )],
        vec![tensor("X", FLOAT, Some(2))],
        vec![
            tensor("label", INT64, None),
            tensor("scores", FLOAT, Some(2)),
        ],
    );
    let cases: [(Option<Vec<u8>>, &str); 17] = [
        (
            Some(array_feature_extractor(5)),
            "index 5 is out of range for 3 elements",
        ),
        (
            Some(opset_5_ensemble(0.5, 0, &[0, 2])),
            "node 0 is reached twice",
        ),
        (Some(opset_5_ensemble(0.5, 1, &[0, 1])), "reached twice"),
        (
            Some(opset_5_ensemble(0.5, 1, &[0, 7])),
            "tree root 7 does not exist",
        ),
        (
            Some(short_svm),
            "1 coefficients for 2 classes and 2 support vectors",
        ),
        (
            Some(label_encoder(&["a", "b", "c"], &[1, 2], STRING)),
            "3 keys and 2 values",
        ),
        (
            Some(label_encoder(&["a"], &[1], FLOAT)),
            "`LabelEncoder` has String keys for an input of F32",
        ),
        (Some(short_imputer), "2 imputed values for 3 columns"),
        (
            Some(numbers_as_strings),
            "string categories for an input of numbers",
        ),
        (
            Some(vectorizer(&[1, 1])),
            "has 2 columns, not the 1 declared",
        ),
        (Some(vectorizer(&[1])), "1 input dimensions for 2 inputs"),
        (Some(vectorizer(&[1, 0])), "input dimension of 0"),
        (Some(unknown_operator), "`FancyScorer` (ai.onnx.ml)"),
        (Some(blob), "`blob` format"),
        (Some(b"not a model at all".to_vec()), "not an ONNX model"),
        (Some(stump_classifier(0)), "root"),
        (None, "`model`"),
    ];
    for (bytes, expected) in cases {
        let (status, body) = publish(
            &app,
            &token,
            Method::POST,
            "/realtime-services/bad/v1",
            bytes,
            &[("description", "refused")],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{expected}: {body}");
        assert_error_shape(&body);
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(expected), "{expected}: {message}");
    }
    let (status, body) = publish(
        &app,
        &token,
        Method::POST,
        "/realtime-services/bad/v1",
        Some(linear_model()),
        &[("operationID", "typo")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("operationID"),
        "{body}"
    );
    // Nothing was stored by the refused attempts.
    let (status, _) = app
        .call(Method::GET, "/services/bad/v1", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn realtime_services_are_managed_like_every_other_service() {
    let app = spawn_app().await;
    let jane = app.user_token("jane", Role::Contributor).await;
    let john = app.user_token("john", Role::Contributor).await;
    let rita = app.user_token("rita", Role::Reader).await;
    let path = "/realtime-services/linear/v1";
    let (status, _) = publish(&app, &rita, Method::POST, path, Some(linear_model()), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = publish(&app, &jane, Method::POST, path, Some(linear_model()), &[]).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = publish(&app, &jane, Method::POST, path, Some(linear_model()), &[]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = publish(
        &app,
        &john,
        Method::PATCH,
        path,
        None,
        &[("description", "mine")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // An update replaces the model, and the next request scores with the new one.
    let (status, body) = publish(
        &app,
        &jane,
        Method::PATCH,
        path,
        Some(two_input_model()),
        &[("description", "two inputs")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = score(
        &app,
        &rita,
        "/api/linear/v1",
        json!({"a": [1.0], "b": [1.0]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["outputParameters"]["outputData"],
        json!({"variable": [1.5]})
    );
    let (_, body) = app
        .call(Method::GET, "/services/linear/v1", Some(&jane), None)
        .await;
    assert_eq!(body[0]["description"], "two inputs");

    // A code service is not updated through the realtime route, nor the other way round.
    let (status, _) = app
        .call(
            Method::PATCH,
            "/services/linear/v1",
            Some(&jane),
            Some(json!({"code": "y = 1"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = publish(
        &app,
        &jane,
        Method::PATCH,
        "/realtime-services/none/v1",
        None,
        &[("description", "x")],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = app
        .call(Method::DELETE, "/services/linear/v1", Some(&jane), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = score(
        &app,
        &jane,
        "/api/linear/v1",
        json!({"a": [1.0], "b": [1.0]}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_realtime_service_scores_after_a_restart() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    publish(
        &app,
        &token,
        Method::POST,
        "/realtime-services/linear/v1",
        Some(linear_model()),
        &[],
    )
    .await;
    let app = app.restart().await;
    let token = app.admin_token().await;
    let (status, body) = score(
        &app,
        &token,
        "/api/linear/v1",
        json!({"a": [1.0], "b": [2.0]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["outputParameters"]["outputData"],
        json!({"variable": [0.5]})
    );
}

/// A model whose graph takes one of its shapes from a constant: `op_type` in the default
/// domain, with the constant `shape` as its input at `position`.
fn shape_from_constant(op_type: &str, shape: &[i64], position: usize) -> Vec<u8> {
    let mut inputs = vec!["X".to_owned(); position + 1];
    inputs[position] = "shape".to_owned();
    let mut proto = ModelProto::decode(
        model(
            vec![NodeProto {
                op_type: op_type.to_owned(),
                input: inputs,
                output: vec!["Y".to_owned()],
                ..NodeProto::default()
            }],
            vec![tensor("X", FLOAT, Some(1))],
            vec![tensor("Y", FLOAT, None)],
        )
        .as_slice(),
    )
    .unwrap();
    proto.graph.as_mut().unwrap().initializer.push(TensorProto {
        name: "shape".to_owned(),
        data_type: INT64,
        dims: vec![shape.len() as i64],
        int64_data: shape.to_vec(),
        ..TensorProto::default()
    });
    proto.encode_to_vec()
}

#[tokio::test]
async fn hostile_sizes_in_a_model_are_refused_at_publish_and_the_server_lives() {
    let app = spawn_app().await;
    // Publishing is a Contributor's right; scoring is anyone's.
    let token = app.user_token("mallory", Role::Contributor).await;
    let huge_targets = model(
        vec![node(
            "TreeEnsembleRegressor",
            &["X"],
            &["Y"],
            vec![
                int("n_targets", 1 << 40),
                ints("nodes_treeids", &[0]),
                ints("nodes_nodeids", &[0]),
                ints("nodes_featureids", &[0]),
                strings("nodes_modes", &["LEAF"]),
                floats("nodes_values", &[0.0]),
                ints("nodes_truenodeids", &[0]),
                ints("nodes_falsenodeids", &[0]),
                ints("target_treeids", &[0]),
                ints("target_nodeids", &[0]),
                ints("target_ids", &[0]),
                floats("target_weights", &[1.0]),
            ],
        )],
        vec![tensor("X", FLOAT, Some(1))],
        vec![tensor("Y", FLOAT, None)],
    );
    let many_classes: Vec<i64> = (0..1_100_000).collect();
    let huge_class_list = model(
        vec![node(
            "LinearClassifier",
            &["X"],
            &["label", "scores"],
            vec![
                ints("classlabels_ints", &many_classes),
                floats("coefficients", &[1.0]),
            ],
        )],
        vec![tensor("X", FLOAT, Some(1))],
        vec![tensor("label", INT64, None), tensor("scores", FLOAT, None)],
    );
    let huge_vectorizer = model(
        vec![node(
            "FeatureVectorizer",
            &["a", "b"],
            &["Y"],
            vec![ints("inputdimensions", &[1, 1 << 40])],
        )],
        vec![tensor("a", FLOAT, Some(1)), tensor("b", FLOAT, Some(1))],
        vec![tensor("Y", FLOAT, None)],
    );
    let hostile = [
        ("targets", huge_targets, "n_targets"),
        ("classes", huge_class_list, "class count"),
        ("vectorizer", huge_vectorizer, "input dimension"),
        (
            "expand",
            shape_from_constant("Expand", &[1 << 20, 1 << 20], 1),
            "`Expand`",
        ),
        (
            "constant",
            shape_from_constant("ConstantOfShape", &[1 << 40], 0),
            "`ConstantOfShape`",
        ),
        (
            "tile",
            shape_from_constant("Tile", &[1 << 30, 1 << 30], 1),
            "`Tile`",
        ),
    ];
    for (name, bytes, named) in hostile {
        let (status, body) = publish(
            &app,
            &token,
            Method::POST,
            &format!("/realtime-services/{name}/v1"),
            Some(bytes),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        let message = assert_error_shape(&body);
        assert!(message.contains(named), "{name}: {message}");
    }

    // A wide model is accepted, but a request of many rows to it is a 400, not an abort.
    let wide = model(
        vec![node(
            "FeatureVectorizer",
            &["a", "b"],
            &["Y"],
            vec![ints("inputdimensions", &[1, 1_000_000])],
        )],
        vec![
            tensor("a", FLOAT, Some(1)),
            tensor("b", FLOAT, Some(1_000_000)),
        ],
        vec![tensor("Y", FLOAT, Some(1_000_001))],
    );
    let (status, body) = publish(
        &app,
        &token,
        Method::POST,
        "/realtime-services/wide/v1",
        Some(wide),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let reader = app.user_token("reader", Role::Reader).await;
    let rows = vec![0.0; 16_384];
    let (status, body) = score(&app, &reader, "/api/wide/v1", json!({"a": rows, "b": rows})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(assert_error_shape(&body).contains("rows are too many for this model"));
    app.assert_still_serving().await;
}
