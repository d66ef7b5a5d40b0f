"""Audio lessons' files and feeds: stored audio, signed links, the `/media` and `/feeds`
routes, episode import and text to speech. Used by the features (handlers, notifications,
admin); uses the conversation core (bot) and models."""
