"""webhook-operator: OpenMetadata Webhooks as Kubernetes custom resources.

Only the version lives here: a root that re-exports submodules would pull kopf and aiohttp into every importer
(including the pure ``api`` layer that the CRD generator and tests use).
"""

__version__ = "0.1.0"
