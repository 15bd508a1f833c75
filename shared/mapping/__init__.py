"""The pure core: templates, mapping, identity rules, batch building, backoff. No I/O here
(import-linter forbids sqlalchemy, httpx, arq, redis and fastapi in this package)."""
