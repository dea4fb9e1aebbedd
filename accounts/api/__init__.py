"""REST API for API tokens (/api/v1/auth/tokens/)."""
