"""Users, roles, district limits and API tokens."""
