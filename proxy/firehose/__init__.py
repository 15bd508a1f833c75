"""The mParticle Firehose endpoint: authenticate, enqueue, answer."""
