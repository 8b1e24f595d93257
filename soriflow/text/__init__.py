"""Text handling shared by every service (sentences, subtitles)."""
