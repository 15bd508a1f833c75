"""Worker, maintenance: retention purges."""
