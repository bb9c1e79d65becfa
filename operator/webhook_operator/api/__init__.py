"""Pure data models (no I/O): the Webhook resource, ChangeEvents, and the CRD generated from them."""
