"""Loyalty Bridge common package: settings, database, queue layout and the pure mapping core."""
