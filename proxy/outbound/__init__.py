"""The loyalty engine's outbound API: authenticate, store (group commit), kick delivery."""
