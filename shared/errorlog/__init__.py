"""The incoming error log: writing entries and reading them back."""
