"""Payload formats, one module per webhookType behind one small protocol (``base.Formatter``).

Formats are pure: events in, HTTP body and content type out. No I/O, no imports of delivery or store.
"""
