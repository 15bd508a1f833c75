"""Outbound domain: accepted messages, their delivery state, and S2S limits."""
