"""Trains the realtime benchmark's models on iris (LogisticRegression, a 100-tree
RandomForest, a full pipeline: median imputation of the numbers and one-hot encoding of a
string column before a 100-tree RandomForest, with one input per column, and a 100-tree
LightGBM classifier), saves each for MLflow and as ONNX for o16n, and measures ONNX Runtime
scoring the same ONNX models in-process with one thread. Run by the MLflow environment's
interpreter; prints a JSON summary."""

import json
import pathlib
import sys
import time

import lightgbm
import mlflow.sklearn
import numpy as np
import onnxruntime
import pandas as pd
from onnxmltools import convert_lightgbm
from onnxmltools.convert.common.data_types import FloatTensorType as MlFloatTensorType
from skl2onnx import convert_sklearn, to_onnx
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

NUMBERS = ["sl", "sw", "pl", "pw"]

out = pathlib.Path(sys.argv[1])
X, y = load_iris(return_X_y=True)
X = X.astype(np.float32)
batch = np.tile(X, (7, 1))[:1000].copy()
frame = pd.DataFrame(X, columns=NUMBERS)
frame["size"] = np.where(X[:, 0] > 5.8, "large", "small")
pipeline = Pipeline([
    ("columns", ColumnTransformer([
        ("numbers", SimpleImputer(strategy="median"), NUMBERS),
        ("categories", OneHotEncoder(handle_unknown="ignore"), ["size"]),
    ])),
    ("forest", RandomForestClassifier(n_estimators=100, random_state=0)),
]).fit(frame, y)
models = {
    "logistic": LogisticRegression(max_iter=1000).fit(X, y),
    "forest": RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y),
    "pipeline": pipeline,
    "lightgbm": lightgbm.LGBMClassifier(n_estimators=100, verbose=-1).fit(X, y),
}
summary = {}
for name, model in models.items():
    # MLflow 3 saves with skops and asks to trust types explicitly; we made the models.
    mlflow.sklearn.save_model(model, str(out / f"mlflow-{name}"), serialization_format="cloudpickle")
    if name == "pipeline":
        types = [(c, FloatTensorType([None, 1])) for c in NUMBERS] + [("size", StringTensorType([None, 1]))]
        onnx_model = convert_sklearn(model, initial_types=types, options={id(model.steps[-1][1]): {"zipmap": False}})
        feed_of = lambda session: {**{c: batch[:, [j]] for j, c in enumerate(NUMBERS)},
                                   "size": np.where(batch[:, :1] > 5.8, "large", "small").astype(object)}
    elif name == "lightgbm":
        onnx_model = convert_lightgbm(model, initial_types=[("input", MlFloatTensorType([None, 4]))], zipmap=False)
        feed_of = lambda session: {session.get_inputs()[0].name: batch}
    else:
        onnx_model = to_onnx(model, X[:1], options={id(model): {"zipmap": False}})
        feed_of = lambda session: {session.get_inputs()[0].name: batch}
    (out / f"{name}.onnx").write_bytes(onnx_model.SerializeToString())
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(out / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])
    feed = feed_of(session)
    for _ in range(50):
        session.run(None, feed)
    calls = 0
    started = time.perf_counter()
    while time.perf_counter() - started < 3:
        session.run(None, feed)
        calls += 1
    elapsed = time.perf_counter() - started
    summary[name] = {"onnxruntime_rows_per_s": calls * len(batch) / elapsed}
print(json.dumps(summary))
