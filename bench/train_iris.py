"""Trains the benchmark model (LogisticRegression on iris) once, saves it for MLflow and as
dill bytes for o16n, and measures the model's own one-row predict time. Run by the MLflow
environment's interpreter (it has scikit-learn); prints a JSON summary."""

import json
import pathlib
import sys
import time

import dill
import mlflow.sklearn
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

out = pathlib.Path(sys.argv[1])
iris = load_iris()
model = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
mlflow.sklearn.save_model(model, str(out / "mlflow-model"))
(out / "model.dill").write_bytes(dill.dumps(model))

row = np.array([[5.1, 3.5, 1.4, 0.2]])
for _ in range(500):
    model.predict(row)
samples = []
for _ in range(5000):
    started = time.perf_counter()
    model.predict(row)
    samples.append(time.perf_counter() - started)
samples.sort()
print(json.dumps({"predict_p50_ms": samples[len(samples) // 2] * 1000}))
