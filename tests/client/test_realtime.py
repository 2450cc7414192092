"""Realtime services as a new user runs them: train scikit-learn models, export them to ONNX
with skl2onnx, publish them with plain HTTP, consume them one row and many rows at a time
(also with the official client), and get scikit-learn's answers."""
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
    RandomForestClassifier,
    RandomForestRegressor,
)
import lightgbm
import xgboost
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

# Models are float32 in ONNX; probabilities agree to about 1e-7, and predictions to about 1e-7
# of their magnitude (diabetes targets reach 350).
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
    # Trees straight after imputation and binarization (a scaler before trees computes in
    # float64 in scikit-learn and float32 in ONNX, which moves rows across split thresholds
    # whatever the engine: ONNX's own reference evaluator differs by 0.06 there).
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
