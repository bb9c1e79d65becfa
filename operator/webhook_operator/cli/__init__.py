"""Command-line entry points (``webhook-operator``)."""
