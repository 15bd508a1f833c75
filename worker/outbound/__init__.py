"""Worker, outbound: deliver accepted messages to mParticle S2S, with resends."""
