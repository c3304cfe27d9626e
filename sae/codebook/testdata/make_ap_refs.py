"""Average precision references from scikit-learn (sae/codebook/ap_test.go).

    /work/venv/bin/python sae/codebook/testdata/make_ap_refs.py

writes sae/codebook/testdata/ap_ref.json: scores (continuous, with ties,
and binary 0/1), labels, and sklearn.metrics.average_precision_score.
"""
import json
import os

import numpy as np
import sklearn
from sklearn.metrics import average_precision_score

rng = np.random.default_rng(3)
cases = []
for i in range(12):
    n = int(rng.integers(5, 300))
    y = rng.random(n) < rng.uniform(0.05, 0.6)
    if not y.any():
        y[0] = True
    kind = ["continuous", "ties", "binary"][i % 3]
    if kind == "continuous":
        s = rng.normal(size=n) + 1.5 * y
    elif kind == "ties":
        s = np.round(rng.normal(size=n) + y, 1)
    else:
        s = (rng.random(n) < np.where(y, 0.8, 0.1)).astype(float)
    s = s.astype(np.float32)
    cases.append({"kind": kind, "scores": s.tolist(), "labels": y.tolist(),
                  "ap": float(average_precision_score(y, s))})
out = os.path.join(os.path.dirname(__file__), "ap_ref.json")
with open(out, "w") as f:
    json.dump({"script": "sae/codebook/testdata/make_ap_refs.py", "sklearn": sklearn.__version__, "cases": cases}, f)
print("wrote", out)
