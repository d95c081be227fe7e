"""The HTTP API (/api/v1) and the dashboard, served by one FastAPI app."""
