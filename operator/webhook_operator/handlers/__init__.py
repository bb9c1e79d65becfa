"""kopf handlers: the only package that imports kopf.

``kopf run -m webhook_operator.handlers`` (or ``webhook-operator run``) registers them. Each handler translates a
kopf callback into one call on the reconciler or the service, built at start-up and passed through kopf's memo.
"""

import webhook_operator.handlers.lifecycle
import webhook_operator.handlers.operations
import webhook_operator.handlers.secrets
import webhook_operator.handlers.webhooks  # noqa: F401
