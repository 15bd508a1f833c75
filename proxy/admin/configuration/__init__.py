"""Admin: a tenant's integration configuration and disconnection."""
