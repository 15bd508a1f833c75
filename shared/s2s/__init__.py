"""mParticle server-to-server (S2S) protocol constants shared by the proxy and the worker."""
