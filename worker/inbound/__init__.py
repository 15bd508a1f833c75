"""Worker, inbound: claim Firehose work and apply it as loyalty records."""
