# syntax=docker/dockerfile:1
# webhook-operator container image.
#   docker build -t ghcr.io/webhook-operator/webhook-operator:0.1.0 .
# Base images are pinned by exact version tag; pin them by digest too (image@sha256:...) when you build in CI with
# registry access. The image runs as UID/GID 65532 with a read-only root filesystem: the store lives on a volume at
# /var/lib/webhook-operator and scratch files go to /tmp (an emptyDir in Kubernetes).

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---- builder: build the project's wheel and install it with its dependencies into a virtualenv ----
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/runtime.txt ./requirements/runtime.txt
COPY operator ./operator

# Dependencies come only from the hash-pinned lock (`make lock`), never from a fresh resolution, so two builds of the
# same commit contain the same versions; the project's wheel is then added without resolving anything.
ARG VERSION=0.1.0
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements/runtime.txt \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps --find-links /wheels "webhook-operator==${VERSION}" \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
    && /opt/venv/bin/pip uninstall --yes pip setuptools \
    && /opt/venv/bin/webhook-operator --version

# ---- runtime: the same slim Python, no compilers, no pip, non-root ----
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="webhook-operator" \
      org.opencontainers.image.description="Delivers OpenMetadata ChangeEvents to webhooks declared as Kubernetes resources" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 65532 nonroot \
    && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin nonroot \
    && mkdir -p /var/lib/webhook-operator \
    && chown 65532:65532 /var/lib/webhook-operator

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /var/lib/webhook-operator
VOLUME ["/var/lib/webhook-operator"]
USER 65532:65532

# 8080: event intake and operations API; 8081: /healthz, /readyz, /metrics.
EXPOSE 8080 8081

# For `docker run`; Kubernetes ignores it and uses the chart's liveness/readiness probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/healthz', timeout=4)"]

ENTRYPOINT ["webhook-operator"]
CMD ["run"]
