"""Work sharing between operator replicas on one PostgreSQL store (issue 15): which replica delivers which webhook.

``rendezvous`` decides who should own each webhook (pure); ``manager.LeaseManager`` takes and renews the leases of
the webhooks this replica should own, hands lanes to the dispatcher and takes them back, and is the fence every
lane write is checked against; ``claim`` is the status writer's ownership check; ``forward`` sends an operation on
a webhook another replica owns to that replica. Nothing here runs with the single-replica SQLite store.
"""
