"""Bulk import over the API, through the same validation as `clearday import`."""
