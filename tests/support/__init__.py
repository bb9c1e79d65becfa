"""Shared test helpers: cluster access, namespaces, loopback-only networking."""
