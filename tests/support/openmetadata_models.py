"""OpenMetadata's own generated pydantic models (``metadata.generated.schema``), loaded from the pinned
``openmetadata-ingestion`` wheel that ``make install`` downloads (requirements/openmetadata-models.txt).

The wheel's top-level ``metadata`` package imports the whole ingestion framework (SQLAlchemy, connectors, …) on
import; the generated schema models need only pydantic (and email-validator). So the wheel's ``metadata/generated``
and ``metadata/ingestion/models`` trees are unpacked into a temporary directory and the enclosing packages are
registered as bare namespace modules, which skips their ``__init__`` files. The models are then exactly
OpenMetadata's: ``ChangeEvent`` forbids extra keys, ``eventType`` is its enum, ids are UUIDs.
"""

from __future__ import annotations

import contextlib
import io
import sys
import types
import zipfile
from pathlib import Path
from typing import Any

from controlplane.versions import cache_root

WHEEL_GLOB = "openmetadata_ingestion-2.0.7.0-*.whl"
_TREES = ("metadata/generated/", "metadata/ingestion/models/")
_BARE_PACKAGES = ("metadata", "metadata.ingestion", "metadata.ingestion.models", "metadata.generated",
                  "metadata.generated.schema")  # fmt: skip


class ModelsUnavailable(RuntimeError):
    pass


def wheel_path() -> Path:
    found = sorted((cache_root() / "wheels").glob(WHEEL_GLOB))
    if not found:
        raise ModelsUnavailable(
            f"OpenMetadata's models are missing: no {WHEEL_GLOB} in {cache_root() / 'wheels'} (run make install, "
            "which downloads the hash-pinned wheel named in requirements/openmetadata-models.txt)"
        )
    return found[-1]


def load_change_event_model(workdir: Path) -> Any:
    """``metadata.generated.schema.type.changeEvent.ChangeEvent`` from the pinned wheel, unpacked under ``workdir``."""
    with zipfile.ZipFile(wheel_path()) as wheel:
        wheel.extractall(workdir, [name for name in wheel.namelist() if name.startswith(_TREES)])
    for name in _BARE_PACKAGES:
        module = types.ModuleType(name)
        module.__path__ = [str(workdir.joinpath(*name.split(".")))]
        sys.modules[name] = module
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        from metadata.generated.schema.type.changeEvent import ChangeEvent  # type: ignore[import-not-found]
        from metadata.ingestion.models import custom_pydantic  # type: ignore[import-not-found]
    # The models' base class logs a warning on every validation: its entity-name post-processing needs the ingestion
    # framework (SQLAlchemy). It then returns the validated model unchanged, so the warning is noise here.
    custom_pydantic.logger.disabled = True
    return ChangeEvent
