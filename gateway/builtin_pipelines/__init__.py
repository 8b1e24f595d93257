"""Built-in pipeline definitions (YAML files in this folder)."""
