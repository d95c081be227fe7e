"""Districts (区): the unit a plan, a ledger and a user's access are scoped to."""
