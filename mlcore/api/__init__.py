"""REST API of the model registry (/api/v1/models/)."""
