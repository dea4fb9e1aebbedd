"""The embedded default's filesystem broker keeps all its state under the var folder."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Publish a task and broadcast a control message, as the site and `celery inspect` do; kombu
# writes its exchange tables as it declares them.
SEND = (
    "import django; django.setup();"
    # The folders setup_site and run_site make before anything is sent.
    "from floodsite.local_state import local_state_prepare; local_state_prepare();"
    "from floodsite.celery import app;"
    "app.send_task('predictions.tasks.batch_resume_stalled_task');"
    "app.control.ping(timeout=0.2)"
)


def test_the_embedded_broker_writes_nothing_outside_the_var_folder(tmp_path):
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    var = tmp_path / "var"
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "floodsite.settings",
        "FLOODSITE_VAR_DIR": str(var),
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-c", SEND],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in workdir.iterdir()) == [], "broker files left in the cwd"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "var"]
    control = var / "broker" / "control"
    assert "celery.exchange" in {p.name for p in control.iterdir()}


def test_no_broker_state_is_kept_in_git():
    tracked = subprocess.run(
        ["git", "ls-files", "control", "var"], cwd=ROOT, capture_output=True, text=True
    )
    assert tracked.returncode == 0, tracked.stderr
    assert tracked.stdout == ""


def test_the_broker_transport_options_are_set_in_one_place():
    """A second assignment further down silently replaced the first (and its folders)."""
    tree = ast.parse((ROOT / "floodsite" / "settings.py").read_text())
    assigned = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name) and target.id == "CELERY_BROKER_TRANSPORT_OPTIONS"
    ]
    assert len(assigned) == 1, f"assigned on lines {assigned}"
