"""End-to-end tests of the outbound direction: proxy, worker, PostgreSQL, Redis and a fake S2S server."""
