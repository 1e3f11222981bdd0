# syntax=docker/dockerfile:1
# synthmon: the synthetic monitor as a container image, meant to run as an always-on ECS sidecar
# (deploy/ecs-task-definition.json). Runtime dependencies only: `pip install .`, never the
# `sandbox` extra, so the full MLflow server is not in the image (the MLflow *client*,
# mlflow-skinny, is: the registration probe uses it in a subprocess).
#
#   docker build -t synthmon:0.1.0 .
#   docker run --init -p 9710:9710 --env-file deploy/synthmon.env.example synthmon:0.1.0
#
# tests/deploy/test_deploy_docker.py replays the build stage's COPY and RUN lines into a temp venv.
#
# Reproducible: the base image is pinned by digest and the Python dependencies by constraints.txt,
# so a rebuild gets the same bytes until someone updates either on purpose (docs/pipelines.md):
#   - base image: `docker buildx imagetools inspect python:3.11-slim` prints the index digest
#     ("Digest: sha256:..."); put it below (the multi-arch index, so amd64 and arm64 both resolve).
#     `docker build --build-arg PYTHON_IMAGE=python:3.11-slim .` builds from the newest tag instead.
#   - dependencies: `make lock` re-resolves constraints.txt from pyproject.toml.

# python:3.11-slim (Python 3.11.16, Debian trixie), multi-arch index as published on 2026-08-16.
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

# ---- build: synthmon and its runtime dependencies in a self-contained venv ----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
# Only what the install needs (README.md: pyproject's `readme`; constraints.txt: the pins);
# .dockerignore keeps the rest out.
COPY pyproject.toml README.md constraints.txt ./
COPY monitor/ monitor/
COPY probes/ probes/
COPY sandbox/ sandbox/
# Every dependency has a manylinux wheel (psycopg[binary], numpy, scikit-learn, pandas), so no
# compiler is needed. Byte-code is compiled here because the runtime root filesystem is read-only.
# -c: each dependency at exactly the version in constraints.txt, never the newest of the day.
RUN /opt/venv/bin/pip install -c constraints.txt .

# ---- runtime -------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="synthmon" \
      org.opencontainers.image.description="Synthetic monitoring for an ML model registry platform" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric uid/gid, so the ECS task definition's "user" and volume permissions can name it.
# /var/lib/synthmon is the only place the process writes: the SQLite store (history, incidents,
# outbox) and, as TMPDIR, the registration probe's temporary model files. So the root filesystem
# can be read-only (ECS readonlyRootFilesystem) with one volume mounted here.
RUN groupadd --system --gid 10001 synthmon \
 && useradd --system --uid 10001 --gid synthmon --home-dir /var/lib/synthmon --no-create-home \
        --shell /usr/sbin/nologin synthmon \
 && install -d -o synthmon -g synthmon -m 0750 /var/lib/synthmon /var/lib/synthmon/tmp \
 && install -d -m 0755 /etc/synthmon
# Declared so that a fresh volume mounted here (docker run, ECS/Fargate bind mounts) starts with
# this directory's owner and contents instead of root's empty directory.
VOLUME ["/var/lib/synthmon"]

COPY --from=build /opt/venv /opt/venv
# The default config: every target and secret comes from environment variables.
COPY config.yaml /etc/synthmon/config.yaml

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/synthmon \
    TMPDIR=/var/lib/synthmon/tmp \
    SYNTHMON_CONFIG=/etc/synthmon/config.yaml \
    SYNTHMON_LISTEN=0.0.0.0:9710 \
    SYNTHMON_STORE_URL=sqlite:////var/lib/synthmon/synthmon.db

USER 10001:10001
WORKDIR /var/lib/synthmon
EXPOSE 9710

# The daemon drains on SIGTERM (in-flight probes get 25 s) and exits 0; ECS waits stopTimeout (30 s).
STOPSIGNAL SIGTERM
# No curl in the slim image: the standard library asks /healthz (503 when the scheduler's heartbeat
# is stale) over HTTP, or over HTTPS without verification when the listener serves TLS only
# (web.tls_server_config: the check is about liveness on loopback, not the certificate). An HTTP
# error status or any other failure exits 1 = unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os,ssl,sys,urllib.error as e,urllib.request as u\np=os.environ.get('SYNTHMON_LISTEN','0.0.0.0:9710').rsplit(':',1)[1]\ndef ok(s,c=None): return u.urlopen(s+'://127.0.0.1:'+p+'/healthz',timeout=4,context=c).status==200\ntry: r=ok('http')\nexcept e.HTTPError: r=False\nexcept Exception: r=ok('https',ssl._create_unverified_context())\nsys.exit(0 if r else 1)"]

# The runner isolates heavy probes in subprocesses and reaps them itself; run with `docker run
# --init` or ECS `initProcessEnabled` so that any orphaned grandchild is reaped too.
ENTRYPOINT ["synthmon"]
CMD ["run", "--config", "/etc/synthmon/config.yaml"]
