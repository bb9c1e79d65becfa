"""Delivery: dispatcher, batching, retry policy, signing, the HTTP sender and its SSRF guard."""
