# The worker image. Every dependency comes from requirements.lock: pinned, sha256-checked,
# wheels only (nothing is compiled); the project itself is built by the pinned setuptools of
# requirements-build.lock. The runtime stage gets only the finished virtualenv: no build
# backend, no pip inside the venv, no compiler, and it runs as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim

# The native response codec (native/, Rust + PyO3) as a wheel: a compiler only in this
# stage. PyO3 needs Rust >= 1.85: Debian trixie's rustc (python:3.11-slim), or bookworm's
# rustc-web. Crates as pinned in native/Cargo.lock (--locked), maturin as locked.
FROM ${PYTHON_IMAGE} AS native
RUN apt-get update -qq \
 && (apt-get install -y -qq --no-install-recommends rustc-web cargo-web gcc libc6-dev \
     || apt-get install -y -qq --no-install-recommends rustc cargo gcc libc6-dev) >/dev/null \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 CARGO_HOME=/tmp/cargo \
    MATURIN_PEP517_ARGS=--locked
COPY requirements-dev.lock /tmp/lock/
RUN sed -n '/^maturin==/,/^    #/p' /tmp/lock/requirements-dev.lock | grep -v '^    #' \
        > /tmp/lock/maturin.lock \
 && python -m pip install -q --require-hashes --no-deps --only-binary :all: \
        -r /tmp/lock/maturin.lock
COPY native /src/native
RUN python -m pip wheel -q --no-deps --no-build-isolation --wheel-dir /tmp/native /src/native

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY requirements.lock requirements-build.lock /tmp/lock/
# pip and the build backend, as locked, for this stage's own python
RUN python -m pip install --require-hashes --no-deps --only-binary :all: \
        -r /tmp/lock/requirements-build.lock
# the runtime dependencies, as locked, into a venv without pip
RUN python -m venv --without-pip /opt/venv \
 && python -m pip --python /opt/venv/bin/python install --require-hashes --no-deps \
        --only-binary :all: -r /tmp/lock/requirements.lock
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app app
COPY agents agents
# the project, built with the locked backend (no download), installed without dependencies
RUN python -m pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
 && python -m pip --python /opt/venv/bin/python install --no-deps /tmp/dist/*.whl
COPY --from=native /tmp/native /tmp/native
RUN python -m pip --python /opt/venv/bin/python install --no-deps /tmp/native/*.whl

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="dynamodb-kafka-replicator" \
      org.opencontainers.image.description="Replicates AWS DynamoDB tables (snapshot + streams) into Kafka topics" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# an unprivileged user owning only the state directory (RocksDB tables, APP_DATADIR); the
# base image's setuptools/wheel go (build tools the worker never needs)
RUN groupadd --system --gid 10001 replicator \
 && useradd --system --uid 10001 --gid replicator --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin replicator \
 && install -d -o replicator -g replicator -m 0750 /var/lib/dynamodb-replicator \
 && python -m pip uninstall -y -q setuptools wheel
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv
COPY scripts scripts
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    APP_DATADIR=/var/lib/dynamodb-replicator
USER 10001:10001
EXPOSE 6066
# Faust stops gracefully on SIGTERM (runners finish their batch, checkpoints are stored)
STOPSIGNAL SIGTERM
# /healthz on the worker's web port: open even with WEB_AUTH_TOKEN, HTTPS with WEB_TLS_CERT
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "scripts/healthcheck.py", "6066"]
# the status page, /status.json and /metrics on port 6066 (the web server binds 127.0.0.1
# unless told otherwise)
CMD ["faust", "-A", "app", "worker", "-l", "info", "--web-bind=0.0.0.0", "--web-host=0.0.0.0", "--web-port=6066"]
