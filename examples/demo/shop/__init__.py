"""A toy package for the demo."""
