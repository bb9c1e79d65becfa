"""The event intake: the HTTP endpoint OpenMetadata (or anything else) POSTs ChangeEvents to.

``parsing`` turns a body into validated events, ``auth`` decides who may post, ``app`` puts both behind
``POST /api/v1/events`` and answers 202 only once the submitter (the dispatcher) has committed the events, ``openapi``
describes it. The package never imports the delivery layer: it talks to a structural ``Submitter`` protocol, so the
intake can be tested against a tiny in-memory submitter and the dispatcher stays free to change shape.

Nothing is re-exported here, so importing ``webhook_operator.intake.parsing`` does not pull in aiohttp.
"""
