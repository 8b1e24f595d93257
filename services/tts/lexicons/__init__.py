"""Built-in pronunciation lexicons, one YAML file per language (ISO 639-1 name, e.g. `ko.yaml`)."""
