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
features = {feature["name"]: feature for feature in manifest["features"]}


def refusals(row):  # what the service refuses: values past a hard limit (old models have none)
    for name in spec["order"]:
        low, high = features[name].get("hard_minimum"), features[name].get("hard_maximum")
        value, unit = float(row[name]), f" {features[name]['unit']}".rstrip()
        if low is not None and high is not None and not low <= value <= high:
            yield f"{name} must be between {low:.10g} and {high:.10g}{unit} (hard limit)"
        elif low is not None and high is None and value < low:
            yield f"{name} must be at least {low:.10g}{unit} (hard limit)"
        elif high is not None and low is None and value > high:
            yield f"{name} must be at most {high:.10g}{unit} (hard limit)"
        elif (codes := features[name].get("categories")) and value not in {
            c["code"] for c in codes
        }:  # a category: only its listed codes
            listed = ", ".join(f"{c['code']} ({c['label']})" for c in codes)
            yield f"{name} must be one of the codes {listed}"


with open(sites, newline="") as handle:
    reader = csv.DictReader(handle)
    rows = list(reader)
# Columns that are not model inputs (a station id, a year) come back beside each answer.
extra = [name for name in reader.fieldnames or [] if name not in features]
reasons = {n: "; ".join(refusals(row)) for n, row in enumerate(rows, start=1)}
good = [n for n, reason in reasons.items() if not reason]
X = np.array([[float(rows[n - 1][k]) for k in spec["order"]] for n in good], dtype=spec["dtype"])
session = ort.InferenceSession(files["model.onnx"], providers=["CPUExecutionProvider"])
scored = session.run(["probabilities"], {spec["name"]: X})[0][:, 1] if good else []
p = dict(zip(good, np.clip(np.asarray(scored, dtype=float), 0, 1), strict=True))
bands = sorted(manifest["risk_bands"], key=lambda band: band["lower"])
output = csv.writer(sys.stdout, lineterminator="\n")  # a reason may hold commas
output.writerow(["row", *extra, "probability", "risk_band", "error"])
for number, reason in reasons.items():
    passed = [rows[number - 1][name] for name in extra]
    if reason:
        output.writerow([number, *passed, "", "", reason])
    else:
        band = [b["name"] for b in bands if b["lower"] <= p[number]][-1]
        output.writerow([number, *passed, repr(float(p[number])), band, ""])
if len(good) < len(rows):
    sys.exit(f"{len(rows) - len(good)} of {len(rows)} rows refused: see their error column")
