"""The arq worker: inbound processing, outbound delivery, resends and retention."""
