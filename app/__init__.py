"""The application layer: what each script does (the scripts only parse arguments and call here)."""
