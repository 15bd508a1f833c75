"""The HTTP service: Firehose endpoint, outbound API, admin API, health."""
