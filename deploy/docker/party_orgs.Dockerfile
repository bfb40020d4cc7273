# syntax=docker/dockerfile:1
# The party_orgs service: `python -m civitas.party_orgs` (gRPC 50051, metrics 9101).
# Build from the repository root:
#   docker build -f deploy/docker/party_orgs.Dockerfile -t civitas/party_orgs .
# Every service's Dockerfile is this one with its own name and ports
# (tests/unit/test_deploy_files.py keeps them so).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# The project's wheel and the wheels of its dependencies, from pyproject.toml: the
# package and the dependency ranges that `make test` installs.
FROM ${PYTHON_IMAGE} AS wheels
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CIVITAS_HOST=0.0.0.0 \
    CIVITAS_VAR_DIR=/var/lib/civitas
# Installed from the wheels only (their versions were resolved in the stage above), with
# bytecode compiled now: the root filesystem can be read-only at run time.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels civitas \
    && groupadd --system --gid 10001 civitas \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin civitas \
    && install -d -o 10001 -g 10001 /var/lib/civitas
COPY deploy/docker/grpc_health_check.py /usr/local/bin/civitas-health
WORKDIR /var/lib/civitas
USER 10001:10001
EXPOSE 50051 9101
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/bin/civitas-health", "party_orgs"]
ENTRYPOINT ["python", "-m", "civitas.party_orgs"]
