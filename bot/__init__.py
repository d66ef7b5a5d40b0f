"""The conversation core (Incoming, Reply, router, context) and the channel adapters."""
