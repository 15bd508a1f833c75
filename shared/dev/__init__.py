"""Development-only code (embedded PostgreSQL/Redis, `loyalty-bridge run`); proxy and worker never import it."""
