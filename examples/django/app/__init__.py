"""The learning app's models: its lesson lines, and the pronunciation attempts Soriflow scored."""
