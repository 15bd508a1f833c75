"""Queue layout in one place: arq jobs (jobs), the Firehose work queue (firehose), delivery job ids (delivery)."""
