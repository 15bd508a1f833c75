"""Inbound domain: Firehose wire models and responses, and the loyalty records they become."""
