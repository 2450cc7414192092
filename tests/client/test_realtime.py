"""Realtime services as a new user runs them: train scikit-learn, LightGBM and XGBoost models,
export them to ONNX with skl2onnx and onnxmltools (and, for the double-precision and opset-5
tree ensembles no exporter writes yet, with onnx's helper from a fitted model's own trees),
publish them with plain HTTP, consume them one row and many rows at a time (also with the
official client), and get the original library's answers."""
import numpy as np
import pandas as pd
import pytest
import requests
from azureml.deploy import DeployClient
from azureml.deploy.server import MLServer
from skl2onnx import to_onnx
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
import lightgbm
import onnx
import xgboost
from onnx import TensorProto, helper, numpy_helper
from onnxmltools import convert_lightgbm, convert_xgboost
from onnxmltools.convert.common.data_types import FloatTensorType as MlFloatTensorType
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC, SVR
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Binarizer, OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from conftest import ADMIN_PASSWORD, Server

# Models mostly compute in float32 in ONNX; probabilities agree to about 1e-7, and predictions
# to about 1e-7 of their magnitude (diabetes targets reach 350).
TOLERANCE = 1e-5

IRIS_X, IRIS_Y = load_iris(return_X_y=True)
IRIS_X = IRIS_X.astype(np.float32)
DIABETES_X, DIABETES_Y = load_diabetes(return_X_y=True)
DIABETES_X = DIABETES_X.astype(np.float32)

CLASSIFIERS = {
    "logistic": lambda: LogisticRegression(max_iter=500),
    "tree": lambda: DecisionTreeClassifier(random_state=0),
    "forest": lambda: RandomForestClassifier(n_estimators=100, random_state=0),
    "boosting": lambda: GradientBoostingClassifier(random_state=0),
    "scaled": lambda: Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]),
    "knn": lambda: KNeighborsClassifier(n_neighbors=5),
    "svc": lambda: SVC(probability=True, random_state=0),
    "svc-poly": lambda: SVC(kernel="poly", degree=3, probability=True, random_state=0),
}
REGRESSORS = {
    "linear": lambda: LinearRegression(),
    "svr": lambda: SVR(C=100.0),
    "svr-linear": lambda: SVR(kernel="linear", C=10.0),
    "tree-reg": lambda: DecisionTreeRegressor(random_state=0),
    "forest-reg": lambda: RandomForestRegressor(n_estimators=100, random_state=0),
    "boosting-reg": lambda: GradientBoostingRegressor(random_state=0),
}


def publish(server, token, name, onnx_bytes, version="v1", method="POST"):
    return requests.request(
        method,
        f"{server.url}/realtime-services/{name}/{version}",
        headers={"Authorization": f"Bearer {token}"},
        files={"model": ("model.onnx", onnx_bytes)},
        data={"description": f"{name} from scikit-learn"},
    )


def cell(value):
    """A value as JSON: strings as they are, numbers as floats, missing values (NaN) as null."""
    if isinstance(value, str):
        return value
    return None if np.isnan(value) else float(value)


def score_data(server, token, name, columns, version="v1"):
    """Scores `inputData` columns and returns `outputData`."""
    response = requests.post(
        f"{server.url}/api/{name}/{version}",
        headers={"Authorization": f"Bearer {token}"},
        json={"inputData": {column: [cell(v) for v in values] for column, values in columns.items()}},
    )
    assert response.status_code == 200, response.text
    return response.json()["outputParameters"]["outputData"]


def score(server, token, name, rows, version="v1"):
    """Scores the rows of an array, its columns named x0, x1, ..."""
    return score_data(server, token, name, {f"x{j}": rows[:, j] for j in range(rows.shape[1])}, version)


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
@pytest.mark.parametrize("zipmap", [False, True])
def test_classifiers_answer_as_scikit_learn(server, name, zipmap):
    model = CLASSIFIERS[name]().fit(IRIS_X, IRIS_Y)
    final_step = model.steps[-1][1] if isinstance(model, Pipeline) else model
    # skl2onnx's default ends with ZipMap; `zipmap: False` gives a plain probabilities tensor.
    options = None if zipmap else {id(final_step): {"zipmap": False}}
    onnx_bytes = to_onnx(model, IRIS_X[:1], options=options).SerializeToString()
    token = server.token()
    response = publish(server, token, name, onnx_bytes)
    assert response.status_code == 201, response.text

    expected = model.predict_proba(IRIS_X)
    labels_column = "output_label" if zipmap else "label"
    probability_prefix = "output_probability" if zipmap else "probabilities"
    for rows in (IRIS_X[:1], IRIS_X[77:78], IRIS_X):
        output = score(server, token, name, rows)
        count = len(rows)
        assert list(output) == [labels_column] + [f"{probability_prefix}_{c}" for c in range(3)]
        probabilities = np.array([output[f"{probability_prefix}_{c}"] for c in range(3)]).T
        start = 0 if count == len(IRIS_X) else int(np.flatnonzero((IRIS_X == rows[0]).all(axis=1))[0])
        np.testing.assert_allclose(probabilities, expected[start : start + count], atol=TOLERANCE)
        np.testing.assert_array_equal(output[labels_column], model.predict(rows))


@pytest.mark.parametrize("name", ["logistic", "boosting", "forest", "svc"])
def test_binary_classifiers_answer_as_scikit_learn(server, name):
    binary = IRIS_Y > 1
    model = CLASSIFIERS[name]().fit(IRIS_X, binary)
    onnx_bytes = to_onnx(model, IRIS_X[:1], options={id(model): {"zipmap": False}}).SerializeToString()
    token = server.token()
    assert publish(server, token, name, onnx_bytes).status_code == 201
    output = score(server, token, name, IRIS_X)
    probabilities = np.array([output["probabilities_0"], output["probabilities_1"]]).T
    np.testing.assert_allclose(probabilities, model.predict_proba(IRIS_X), atol=TOLERANCE)
    np.testing.assert_array_equal(output["label"], model.predict(IRIS_X).astype(int))


@pytest.mark.parametrize("name", sorted(REGRESSORS))
def test_regressors_answer_as_scikit_learn(server, name):
    model = REGRESSORS[name]().fit(DIABETES_X, DIABETES_Y)
    onnx_bytes = to_onnx(model, DIABETES_X[:1]).SerializeToString()
    token = server.token()
    assert publish(server, token, name, onnx_bytes).status_code == 201
    output = score(server, token, name, DIABETES_X)
    assert list(output) == ["variable"]
    np.testing.assert_allclose(output["variable"], model.predict(DIABETES_X), rtol=TOLERANCE)
    one = score(server, token, name, DIABETES_X[5:6])
    np.testing.assert_allclose(one["variable"], model.predict(DIABETES_X[5:6]), rtol=TOLERANCE)


def with_missing_values(x):
    """A copy of `x` with values missing in every column (NaN), as real data has."""
    holes = x.copy()
    for column in range(holes.shape[1]):
        holes[column::7, column] = np.nan
    return holes


def per_column_export(model, columns, final_step=None):
    """The natural export of a model of a data frame: one named [N, 1] input per column."""
    options = {id(final_step): {"zipmap": False}} if final_step is not None else None
    types = [(name, FloatTensorType([None, 1])) for name in columns]
    return convert_sklearn(model, initial_types=types, options=options).SerializeToString()


def score_columns(server, token, name, frame):
    """Scores a data frame by column name."""
    return score_data(server, token, name, {column: frame[column] for column in frame})


IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
PIPELINES = {
    # skl2onnx: FeatureVectorizer, Imputer, Scaler, LinearClassifier.
    "imputed-logistic": lambda: Pipeline([
        ("impute", SimpleImputer()),
        ("scale", StandardScaler()),
        ("model", LogisticRegression(max_iter=500)),
    ]),
    # skl2onnx: Concat, Imputer, Scaler, Binarizer, Concat, LinearClassifier.
    "columns-logistic": lambda: Pipeline([
        ("columns", ColumnTransformer([
            ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
             IRIS_COLUMNS[:3]),
            ("wide", Binarizer(threshold=1.0), IRIS_COLUMNS[3:]),
        ])),
        ("model", LogisticRegression(max_iter=500)),
    ]),
    # Trees straight after imputation and binarization: exported with float32 inputs, a scaler
    # before trees computes in float32 in ONNX and float64 in scikit-learn, which moves rows
    # across split thresholds whatever the engine. A data frame's own export (float64 inputs)
    # keeps scikit-learn's precision: see the full pipelines below.
    "columns-forest": lambda: Pipeline([
        ("columns", ColumnTransformer([
            ("numeric", SimpleImputer(strategy="median"), IRIS_COLUMNS[:3]),
            ("wide", Binarizer(threshold=1.0), IRIS_COLUMNS[3:]),
        ])),
        ("model", RandomForestClassifier(n_estimators=50, random_state=0)),
    ]),
}


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_pipelines_with_a_column_per_input_and_missing_values_answer_as_scikit_learn(server, name):
    frame = pd.DataFrame(with_missing_values(IRIS_X), columns=IRIS_COLUMNS)
    # The Binarizer column has no missing values: scikit-learn's Binarizer refuses NaN.
    frame["petal_width"] = IRIS_X[:, 3]
    model = PIPELINES[name]().fit(frame, IRIS_Y)
    onnx_bytes = per_column_export(model, IRIS_COLUMNS, model.steps[-1][1])
    token = server.token()
    response = publish(server, token, name, onnx_bytes)
    assert response.status_code == 201, response.text
    for rows in (frame.iloc[7:8], frame.iloc[:200]):
        output = score_columns(server, token, name, rows)
        probabilities = np.array([output[f"probabilities_{c}"] for c in range(3)]).T
        np.testing.assert_allclose(probabilities, model.predict_proba(rows), atol=TOLERANCE)
        np.testing.assert_array_equal(output["label"], model.predict(rows))


def test_an_imputed_regressor_with_a_column_per_input_answers_as_scikit_learn(server):
    columns = [f"c{j}" for j in range(DIABETES_X.shape[1])]
    frame = pd.DataFrame(with_missing_values(DIABETES_X), columns=columns)
    model = Pipeline([("impute", SimpleImputer()), ("model", RandomForestRegressor(n_estimators=50, random_state=0))])
    model.fit(frame, DIABETES_Y)
    token = server.token()
    assert publish(server, token, "imputed-forest", per_column_export(model, columns)).status_code == 201
    output = score_columns(server, token, "imputed-forest", frame)
    np.testing.assert_allclose(output["variable"], model.predict(frame), rtol=TOLERANCE)


def categorical_frame():
    """Iris with missing numbers and two string columns: one derived from the data, one not."""
    frame = pd.DataFrame(with_missing_values(IRIS_X), columns=IRIS_COLUMNS)
    frame["size"] = np.where(IRIS_X[:, 0] > 5.8, "large", "small")
    frame["hue"] = np.array(["red", "green", "blue"])[np.arange(len(IRIS_X)) % 3]
    return frame


CATEGORICAL = {
    "onehot-logistic": lambda: LogisticRegression(max_iter=500),
    "onehot-forest": lambda: RandomForestClassifier(n_estimators=50, random_state=0),
}


@pytest.mark.parametrize("name", sorted(CATEGORICAL))
def test_string_columns_are_one_hot_encoded_as_scikit_learn_does(server, name):
    frame = categorical_frame()
    numeric = ("numeric", SimpleImputer(strategy="median"), IRIS_COLUMNS)
    if name == "onehot-logistic":
        numeric = ("numeric", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), IRIS_COLUMNS)
    model = Pipeline([
        ("columns", ColumnTransformer([numeric, ("categories", OneHotEncoder(handle_unknown="ignore"), ["size", "hue"])])),
        ("model", CATEGORICAL[name]()),
    ]).fit(frame, IRIS_Y)
    types = [(c, FloatTensorType([None, 1])) for c in IRIS_COLUMNS] + [
        (c, StringTensorType([None, 1])) for c in ("size", "hue")]
    onnx_bytes = convert_sklearn(model, initial_types=types,
                                 options={id(model.steps[-1][1]): {"zipmap": False}}).SerializeToString()
    token = server.token()
    response = publish(server, token, name, onnx_bytes)
    assert response.status_code == 201, response.text
    # The swagger says which column takes strings.
    swagger = requests.get(f"{server.url}/api/{name}/v1/swagger.json",
                           headers={"Authorization": f"Bearer {token}"}).json()
    assert "string" in str(swagger["definitions"]), swagger["definitions"]

    unseen = frame.iloc[:3].copy()
    unseen["hue"] = "purple"  # a category not seen in training: all zeros, as scikit-learn
    for rows in (frame.iloc[7:8], frame, unseen):
        output = score_columns(server, token, name, rows)
        probabilities = np.array([output[f"probabilities_{c}"] for c in range(3)]).T
        np.testing.assert_allclose(probabilities, model.predict_proba(rows), atol=TOLERANCE)
        np.testing.assert_array_equal(output["label"], model.predict(rows))


def full_pipeline(estimator, numeric, categorical):
    """The pipeline of a real data frame: strings one-hot encoded, numbers imputed and scaled."""
    return Pipeline([
        ("columns", ColumnTransformer([
            ("numeric", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), numeric),
            ("categories", OneHotEncoder(handle_unknown="ignore"), categorical),
        ])),
        ("model", estimator),
    ])


def iris_frame():
    """200 rows of iris as a float64 data frame with missing numbers and two string columns."""
    x, _ = load_iris(return_X_y=True)
    frame = pd.DataFrame(with_missing_values(x), columns=IRIS_COLUMNS)
    frame["size"] = np.where(x[:, 0] > 5.8, "large", "small")
    frame["hue"] = np.array(["red", "green", "blue"])[np.arange(len(x)) % 3]
    return frame


def diabetes_frame():
    """The diabetes data as a float64 data frame with missing numbers; its `sex` column, two
    values in the original, as the strings it stands for."""
    frame, target = load_diabetes(return_X_y=True, as_frame=True)
    numeric = [c for c in frame.columns if c != "sex"]
    frame[numeric] = with_missing_values(frame[numeric].to_numpy())
    frame["sex"] = np.where(frame["sex"] > 0, "male", "female")
    return frame, target.to_numpy(), numeric


FULL_CLASSIFIERS = {
    "full-logistic": lambda: LogisticRegression(max_iter=500),
    "full-forest": lambda: RandomForestClassifier(n_estimators=50, random_state=0),
    "full-hist": lambda: HistGradientBoostingClassifier(max_iter=50, random_state=0),
}
FULL_REGRESSORS = {
    "full-forest-reg": lambda: RandomForestRegressor(n_estimators=50, random_state=0),
    "full-hist-reg": lambda: HistGradientBoostingRegressor(max_iter=50, random_state=0),
}


@pytest.mark.parametrize("name", sorted(FULL_CLASSIFIERS))
def test_full_pipelines_of_a_data_frame_classify_as_scikit_learn(server, name):
    frame, (_, labels) = iris_frame(), load_iris(return_X_y=True)
    model = full_pipeline(FULL_CLASSIFIERS[name](), IRIS_COLUMNS, ["size", "hue"]).fit(frame, labels)
    # The export a data frame gets by default: one input per column, float64 numbers (so the
    # scaling is in double precision, as in scikit-learn) and strings.
    onnx_bytes = to_onnx(model, frame[:1], options={id(model.steps[-1][1]): {"zipmap": False}}).SerializeToString()
    token = server.token()
    response = publish(server, token, name, onnx_bytes)
    assert response.status_code == 201, response.text
    swagger = requests.get(f"{server.url}/api/{name}/v1/swagger.json",
                           headers={"Authorization": f"Bearer {token}"}).json()
    properties = str(swagger["definitions"])
    assert "'hue'" in properties and "'string'" in properties and "'sepal_width'" in properties

    many = frame.iloc[np.arange(200) % len(frame)]
    for rows in (frame.iloc[7:8], many):
        output = score_columns(server, token, name, rows)
        probabilities = np.array([output[f"probabilities_{c}"] for c in range(3)]).T
        np.testing.assert_allclose(probabilities, model.predict_proba(rows), atol=TOLERANCE)
        np.testing.assert_array_equal(output["label"], model.predict(rows))


@pytest.mark.parametrize("name", sorted(FULL_REGRESSORS))
def test_full_pipelines_of_a_data_frame_regress_as_scikit_learn(server, name):
    frame, target, numeric = diabetes_frame()
    model = full_pipeline(FULL_REGRESSORS[name](), numeric, ["sex"]).fit(frame, target)
    token = server.token()
    response = publish(server, token, name, to_onnx(model, frame[:1]).SerializeToString())
    assert response.status_code == 201, response.text
    for rows in (frame.iloc[3:4], frame.iloc[:200]):
        output = score_columns(server, token, name, rows)
        np.testing.assert_allclose(output["variable"], model.predict(rows), rtol=TOLERANCE)


def hist_trees(model):
    """The trees of a fitted HistGradientBoostingRegressor: per tree, its nodes as
    scikit-learn keeps them (thresholds and values in double precision)."""
    return [predictor.nodes for (predictor,) in model._predictors]


def double_precision_model(model, width):
    """A HistGradientBoostingRegressor as `TreeEnsembleRegressor` with the double-precision
    attributes (`*_as_tensor`) of ONNX-ML opset 3: double input, float output."""
    attributes = {key: [] for key in (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_values",
        "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
        "target_treeids", "target_nodeids", "target_ids", "target_weights")}
    for tree, nodes in enumerate(hist_trees(model)):
        for index, node in enumerate(nodes):
            leaf = bool(node["is_leaf"])
            attributes["nodes_treeids"].append(tree)
            attributes["nodes_nodeids"].append(index)
            attributes["nodes_featureids"].append(0 if leaf else int(node["feature_idx"]))
            attributes["nodes_modes"].append("LEAF" if leaf else "BRANCH_LEQ")
            attributes["nodes_values"].append(0.0 if leaf else float(node["num_threshold"]))
            attributes["nodes_truenodeids"].append(0 if leaf else int(node["left"]))
            attributes["nodes_falsenodeids"].append(0 if leaf else int(node["right"]))
            attributes["nodes_missing_value_tracks_true"].append(0 if leaf else int(node["missing_go_to_left"]))
            if leaf:
                attributes["target_treeids"].append(tree)
                attributes["target_nodeids"].append(index)
                attributes["target_ids"].append(0)
                attributes["target_weights"].append(float(node["value"]))
    doubles = {f"{name}_as_tensor": numpy_helper.from_array(np.array(attributes.pop(name), dtype=np.float64))
               for name in ("nodes_values", "target_weights")}
    baseline = np.array([np.ravel(model._baseline_prediction)[0]], dtype=np.float64)
    doubles["base_values_as_tensor"] = numpy_helper.from_array(baseline)
    trees = helper.make_node("TreeEnsembleRegressor", ["input"], ["variable"], domain="ai.onnx.ml",
                             n_targets=1, **attributes, **doubles)
    graph = helper.make_graph(
        [trees], "hist", [helper.make_tensor_value_info("input", TensorProto.DOUBLE, [None, width])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])


def opset_5_model(model, width):
    """A HistGradientBoostingRegressor as ONNX-ML opset 5's `TreeEnsemble` in double precision,
    its baseline a tree of a single leaf: double input, double output."""
    trees = hist_trees(model)
    # The baseline's tree comes first: branch 0, whose both ways lead to leaf 0 (ONNX Runtime
    # takes a single-leaf tree's leaf from the root's child index, ONNX's reference evaluator
    # from the root's own index; here they are the same).
    branch, leaf = {"baseline": 0}, {"baseline": 0}
    for tree, nodes in enumerate(trees):
        for index, node in enumerate(nodes):
            table = leaf if node["is_leaf"] else branch
            table[(tree, index)] = len(table)
    branches = sorted(branch, key=branch.get)[1:]
    leaves = sorted(leaf, key=leaf.get)[1:]

    def child(tree, index):
        return (leaf[(tree, index)], 1) if (tree, index) in leaf else (branch[(tree, index)], 0)

    true_ids, true_leafs, false_ids, false_leafs = [0], [1], [0], [1]
    for tree, index in branches:
        node = trees[tree][index]
        for ids, leafs, side in ((true_ids, true_leafs, "left"), (false_ids, false_leafs, "right")):
            at, is_leaf = child(tree, int(node[side]))
            ids.append(at)
            leafs.append(is_leaf)
    splits = [0.0] + [float(trees[t][i]["num_threshold"]) for t, i in branches]
    weights = [float(np.ravel(model._baseline_prediction)[0])] + [float(trees[t][i]["value"]) for t, i in leaves]
    features = [0] + [int(trees[t][i]["feature_idx"]) for t, i in branches]
    missing = [0] + [int(trees[t][i]["missing_go_to_left"]) for t, i in branches]
    roots = [0] + [branch[(tree, 0)] for tree in range(len(trees))]
    ensemble = helper.make_node(
        "TreeEnsemble", ["input"], ["variable"], domain="ai.onnx.ml",
        n_targets=1, aggregate_function=1, post_transform=0, tree_roots=roots,
        nodes_featureids=features, nodes_truenodeids=true_ids, nodes_falsenodeids=false_ids,
        nodes_trueleafs=true_leafs, nodes_falseleafs=false_leafs,
        nodes_missing_value_tracks_true=missing, leaf_targetids=[0] * len(weights),
        nodes_modes=numpy_helper.from_array(np.zeros(len(splits), dtype=np.uint8)),
        nodes_splits=numpy_helper.from_array(np.array(splits, dtype=np.float64)),
        leaf_weights=numpy_helper.from_array(np.array(weights, dtype=np.float64)))
    graph = helper.make_graph(
        [ensemble], "hist", [helper.make_tensor_value_info("input", TensorProto.DOUBLE, [None, width])],
        [helper.make_tensor_value_info("variable", TensorProto.DOUBLE, [None, 1])])
    return helper.make_model(graph, ir_version=10,
                             opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("ai.onnx.ml", 5)])


def test_double_precision_and_opset_5_tree_ensembles_score_as_scikit_learn(server):
    # scikit-learn's histogram boosting compares float64 features with float64 thresholds; only
    # ONNX's double-precision trees keep every row on the same side of every split.
    rows = with_missing_values(load_diabetes(return_X_y=True)[0])
    model = HistGradientBoostingRegressor(max_iter=50, random_state=0).fit(rows, load_diabetes(return_X_y=True)[1])
    expected = model.predict(rows)
    token = server.token()
    for name, onnx_model, rtol in (("hist-double", double_precision_model(model, rows.shape[1]), TOLERANCE),
                                   ("hist-opset5", opset_5_model(model, rows.shape[1]), 1e-12)):
        onnx.checker.check_model(onnx_model)
        response = publish(server, token, name, onnx_model.SerializeToString())
        assert response.status_code == 201, response.text
        for batch, wanted in ((rows[9:10], expected[9:10]), (rows[:200], expected[:200])):
            output = score(server, token, name, batch)
            np.testing.assert_allclose(output["variable"], wanted, rtol=rtol)


IMPUTED = {
    # Missing values first imputed, as a data frame with holes needs; then the estimator.
    "imputed-svc": lambda: Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler()),
                                     ("model", SVC(probability=True, random_state=0))]),
    "imputed-knn": lambda: Pipeline([("impute", SimpleImputer()), ("model", KNeighborsClassifier())]),
}


@pytest.mark.parametrize("name", sorted(IMPUTED))
def test_svc_and_knn_with_missing_values_answer_as_scikit_learn(server, name):
    # float64, as a data frame holds it: in float32 the imputed means move one row's fifth
    # neighbour (a tie in distance), in double the export computes as scikit-learn does.
    rows = with_missing_values(load_iris(return_X_y=True)[0])
    model = IMPUTED[name]().fit(rows, IRIS_Y)
    onnx_bytes = to_onnx(model, rows[:1], options={id(model.steps[-1][1]): {"zipmap": False}}).SerializeToString()
    token = server.token()
    response = publish(server, token, name, onnx_bytes)
    assert response.status_code == 201, response.text
    for batch in (rows[7:8], rows[np.arange(200) % len(rows)]):
        output = score(server, token, name, batch)
        probabilities = np.array([output[f"probabilities_{c}"] for c in range(3)]).T
        np.testing.assert_allclose(probabilities, model.predict_proba(batch), atol=TOLERANCE)
        np.testing.assert_array_equal(output["label"], model.predict(batch))


def test_svr_with_missing_values_answers_as_scikit_learn(server):
    rows = with_missing_values(DIABETES_X)
    model = Pipeline([("impute", SimpleImputer()), ("model", SVR(C=100.0))]).fit(rows, DIABETES_Y)
    token = server.token()
    assert publish(server, token, "imputed-svr", to_onnx(model, rows[:1]).SerializeToString()).status_code == 201
    for batch in (rows[7:8], rows[:200]):
        output = score(server, token, "imputed-svr", batch)
        np.testing.assert_allclose(output["variable"], model.predict(batch), rtol=TOLERANCE)


BOOSTED = {
    "lgbm": (lambda: lightgbm.LGBMClassifier(n_estimators=50, verbose=-1), convert_lightgbm),
    "xgb": (lambda: xgboost.XGBClassifier(n_estimators=50), convert_xgboost),
}


@pytest.mark.parametrize("name", sorted(BOOSTED))
def test_gradient_boosted_classifiers_with_missing_values_answer_as_their_library(server, name):
    make, convert = BOOSTED[name]
    rows = with_missing_values(IRIS_X)
    model = make().fit(rows, IRIS_Y)
    onnx_model = convert(model, initial_types=[("input", MlFloatTensorType([None, 4]))])
    token = server.token()
    response = publish(server, token, name, onnx_model.SerializeToString())
    assert response.status_code == 201, response.text
    for batch in (rows[7:8], rows):
        output = score(server, token, name, batch)
        probability_columns = sorted(c for c in output if c != "label")
        probabilities = np.array([output[c] for c in probability_columns]).T
        np.testing.assert_allclose(probabilities, model.predict_proba(batch), atol=TOLERANCE)
        np.testing.assert_array_equal(output["label"], model.predict(batch))


@pytest.mark.parametrize("name", ["lgbm-reg", "xgb-reg"])
def test_gradient_boosted_regressors_with_missing_values_answer_as_their_library(server, name):
    rows = with_missing_values(DIABETES_X)
    if name == "lgbm-reg":
        model, convert = lightgbm.LGBMRegressor(n_estimators=50, verbose=-1), convert_lightgbm
    else:
        model, convert = xgboost.XGBRegressor(n_estimators=50), convert_xgboost
    model.fit(rows, DIABETES_Y)
    onnx_model = convert(model, initial_types=[("input", MlFloatTensorType([None, rows.shape[1]]))])
    token = server.token()
    assert publish(server, token, name, onnx_model.SerializeToString()).status_code == 201
    output = score(server, token, name, rows)
    (column,) = output
    np.testing.assert_allclose(output[column], model.predict(rows), rtol=TOLERANCE)


def test_the_official_client_consumes_a_realtime_service(server):
    model = LogisticRegression(max_iter=500).fit(IRIS_X, IRIS_Y)
    onnx_bytes = to_onnx(model, IRIS_X[:1], options={id(model): {"zipmap": False}}).SerializeToString()
    assert publish(server, server.token(), "iris", onnx_bytes).status_code == 201

    client = DeployClient(server.url, use=MLServer, auth=("admin", ADMIN_PASSWORD))
    service = client.get_service("iris", version="v1")
    frame = pd.DataFrame(IRIS_X[:5], columns=["sl", "sw", "pl", "pw"])
    result = service.consume(frame)
    output = result.output("outputData")
    np.testing.assert_array_equal(np.asarray(output["label"]), model.predict(IRIS_X[:5]))
    swagger = service.swagger()
    assert "inputData" in swagger


def test_a_realtime_service_scores_after_a_restart(server):
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(IRIS_X, IRIS_Y)
    onnx_bytes = to_onnx(model, IRIS_X[:1], options={id(model): {"zipmap": False}}).SerializeToString()
    assert publish(server, server.token(), "kept", onnx_bytes).status_code == 201
    server.stop()
    restarted = Server(server.binary, server.data_dir)
    try:
        output = score(restarted, restarted.token(), "kept", IRIS_X)
        np.testing.assert_array_equal(output["label"], model.predict(IRIS_X))
    finally:
        restarted.stop()
        # The fixture stops the first server again; a stopped process stops at once.
