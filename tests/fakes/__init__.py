"""Fakes of the external systems, as real servers for end-to-end tests."""
