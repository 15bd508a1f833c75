"""Admin: customers, their ledger and customer lists."""
