"""Offline scoring of a CSV with a model zip: python edge_client.py MODEL.zip SITES.csv [SHA256]"""

import csv
import hashlib
import json
import sys
import zipfile

import numpy as np
import onnxruntime as ort

bundle, sites = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(bundle) as archive:
    files = {name: archive.read(name) for name in archive.namelist()}
for line in files["SHA256SUMS"].decode().splitlines():  # a damaged download stops here
    digest, name = line.split()
    if hashlib.sha256(files[name]).hexdigest() != digest:
        sys.exit(f"{name}: SHA-256 does not match SHA256SUMS")
manifest = json.loads(files["manifest.json"])
expected = sys.argv[3] if len(sys.argv) > 3 else manifest["onnx_sha256"]  # X-Model-SHA256
if hashlib.sha256(files["model.onnx"]).hexdigest() != expected:
    sys.exit("model.onnx is not the model the service sent")
spec = manifest["onnx_input"]  # input name, dtype and the feature order of the columns
with open(sites, newline="") as handle:
    rows = list(csv.DictReader(handle))
X = np.array([[float(row[name]) for name in spec["order"]] for row in rows], dtype=spec["dtype"])
session = ort.InferenceSession(files["model.onnx"], providers=["CPUExecutionProvider"])
p = np.clip(session.run(["probabilities"], {spec["name"]: X})[0][:, 1].astype(float), 0, 1)
bands = sorted(manifest["risk_bands"], key=lambda band: band["lower"])
print("row,probability,risk_band")
for number, value in enumerate(p, start=1):
    band = [b["name"] for b in bands if b["lower"] <= value][-1]
    print(f"{number},{float(value)!r},{band}")
