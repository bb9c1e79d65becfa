"""What every model of the Webhook resource shares, spec and status alike: the base class and the Extension mark."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

#: Prefix of the description of every field the OpenMetadata seed schema does not have.
EXTENSION = "Extension (not in the OpenMetadata schema): "


class ResourceModel(BaseModel):
    """Strict about unknown fields (typos must not be silently ignored) and populated by the camelCase names the
    resource uses on the wire. Booleans and integers are strict too (``"yes"`` is not ``true``), exactly as the API
    server judges them."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_enum_values=False)
