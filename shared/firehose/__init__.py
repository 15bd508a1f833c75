"""mParticle Firehose wire format: request models, the registration response and typed responses."""
