"""Admin: tenants and their engine keys."""
