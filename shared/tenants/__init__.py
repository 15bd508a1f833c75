"""Tenants: their stored configuration and the per-process configuration cache."""
