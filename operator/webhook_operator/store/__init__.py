"""Durable store: accepted events, per-webhook queues, attempts and dead letters, behind ``base.Store``."""
