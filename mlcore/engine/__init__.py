"""Pure-Python flood-risk ML engine: data, training, artifacts, inference and drift (no Django)."""
