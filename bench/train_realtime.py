"""Trains the realtime benchmark's models on iris (LogisticRegression and a 100-tree
RandomForest), saves each for MLflow and as ONNX for o16n, and measures ONNX Runtime scoring
the same ONNX models in-process with one thread. Run by the MLflow environment's interpreter;
prints a JSON summary."""

import json
import pathlib
import sys
import time

import mlflow.sklearn
import numpy as np
import onnxruntime
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

out = pathlib.Path(sys.argv[1])
X, y = load_iris(return_X_y=True)
X = X.astype(np.float32)
batch = np.tile(X, (7, 1))[:1000].copy()
models = {
    "logistic": LogisticRegression(max_iter=1000).fit(X, y),
    "forest": RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y),
}
summary = {}
for name, model in models.items():
    # MLflow 3 saves with skops and asks to trust the tree type explicitly; we made the model.
    mlflow.sklearn.save_model(model, str(out / f"mlflow-{name}"), skops_trusted_types=["sklearn.tree._tree.Tree"])
    onnx_model = to_onnx(model, X[:1], options={id(model): {"zipmap": False}})
    (out / f"{name}.onnx").write_bytes(onnx_model.SerializeToString())
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(out / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: batch}
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
