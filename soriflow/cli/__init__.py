"""The `soriflow` command line."""
