"""Admin: the incoming error log (list, read, download)."""
