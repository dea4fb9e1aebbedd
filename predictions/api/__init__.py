"""REST API of the predictions app (/api/v1/predictions/)."""
