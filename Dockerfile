# syntax=docker/dockerfile:1
#
# KazPost container images: one multi-stage file, one final target per service.
#
#   docker build --target ingestion -t kazpost-ingestion .
#   docker build --target storage   -t kazpost-storage   .
#   docker build --target linking   -t kazpost-linking   .
#   docker build --target gateway   -t kazpost-gateway   .
#   docker build --target narration -t kazpost-narration .   # with espeak-ng and opus-tools
#   docker build --target newsletter -t kazpost-newsletter .
#   docker build --target cli       -t kazpost-cli       .   # `kazpost init`, `kazpost publish`
#
# Every final image holds the same virtualenv (dependencies pinned in pyproject.toml plus the
# `shared` and `services` packages), runs as an unprivileged user and carries no build tools.
# Configuration comes from KAZPOST_* environment variables only (see docker-compose.yml).

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
# build: resolve and install everything into /opt/venv
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
 && pip wheel --wheel-dir /wheels -r requirements.txt \
 && pip install --no-index --find-links /wheels -r requirements.txt

# Then the project itself (its dependencies are already in place). The gateway reads its
# templates and stylesheet next to its modules; pyproject.toml declares no package data, so
# they are copied beside the installed package explicitly. The final import is a smoke test.
COPY shared ./shared
COPY services ./services
RUN pip install --no-deps . \
 && site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && cp -r services/gateway/templates services/gateway/static "$site/services/gateway/" \
 && python -c "import services.gateway.app, services.ingestion.app, services.storage.app, services.linking.app, services.narration.app, services.newsletter.app, shared.cli"

# ---------------------------------------------------------------------------------------------
# runtime: common base of every final image
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KAZPOST_LOG_FORMAT=json

RUN groupadd --system --gid 10001 kazpost \
 && useradd --system --uid 10001 --gid kazpost --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin kazpost

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
USER kazpost:kazpost

# ---------------------------------------------------------------------------------------------
# cli: operator commands (`kazpost init`, `kazpost publish <file-or-dir>`)
# ---------------------------------------------------------------------------------------------
FROM runtime AS cli

# Sample ninjs items for `kazpost publish /app/deploy/demo`.
COPY --chown=root:root deploy/demo /app/deploy/demo

HEALTHCHECK NONE
ENTRYPOINT ["kazpost"]
CMD ["--help"]

# ---------------------------------------------------------------------------------------------
# ingestion: upstream ninjs -> validated, normalised articles
# ---------------------------------------------------------------------------------------------
FROM runtime AS ingestion

ENV KAZPOST_INGESTION_OPS_HOST=0.0.0.0 \
    KAZPOST_INGESTION_OPS_PORT=8091
EXPOSE 8091

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('KAZPOST_INGESTION_OPS_PORT', '8091'), timeout=4)"]

CMD ["python", "-m", "services.ingestion"]

# ---------------------------------------------------------------------------------------------
# storage: articles -> MongoDB (documents, history, precomputed fronts)
# ---------------------------------------------------------------------------------------------
FROM runtime AS storage

ENV KAZPOST_STORAGE_OPS_HOST=0.0.0.0 \
    KAZPOST_STORAGE_OPS_PORT=8092
EXPOSE 8092

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('KAZPOST_STORAGE_OPS_PORT', '8092'), timeout=4)"]

CMD ["python", "-m", "services.storage"]

# ---------------------------------------------------------------------------------------------
# linking: related articles and backlinks; internal search API used by the gateway
# ---------------------------------------------------------------------------------------------
FROM runtime AS linking

ENV KAZPOST_LINKING_OPS_HOST=0.0.0.0 \
    KAZPOST_LINKING_OPS_PORT=8093
EXPOSE 8093

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('KAZPOST_LINKING_OPS_PORT', '8093'), timeout=4)"]

CMD ["python", "-m", "services.linking"]

# ---------------------------------------------------------------------------------------------
# gateway: public website and JSON API (8080); metrics on the internal ops port (8090)
# ---------------------------------------------------------------------------------------------
FROM runtime AS gateway

ENV KAZPOST_GATEWAY_HOST=0.0.0.0 \
    KAZPOST_GATEWAY_PORT=8080 \
    KAZPOST_GATEWAY_OPS_HOST=0.0.0.0 \
    KAZPOST_GATEWAY_OPS_PORT=8090
EXPOSE 8080 8090

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('KAZPOST_GATEWAY_PORT', '8080'), timeout=4)"]

CMD ["python", "-m", "services.gateway"]

# ---------------------------------------------------------------------------------------------
# narration: "Listen to this article" audio (espeak-ng speech, Opus) for stored articles
# ---------------------------------------------------------------------------------------------
FROM runtime AS narration

USER root
RUN apt-get update \
 && apt-get install --yes --no-install-recommends espeak-ng opus-tools \
 && rm -rf /var/lib/apt/lists/* \
 && espeak-ng --version && opusenc --version
USER kazpost:kazpost

ENV KAZPOST_NARRATION_OPS_HOST=0.0.0.0 \
    KAZPOST_NARRATION_OPS_PORT=8094
EXPOSE 8094

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('KAZPOST_NARRATION_OPS_PORT', '8094'), timeout=4)"]

CMD ["python", "-m", "services.narration"]

# ---------------------------------------------------------------------------------------------
# newsletter: subscribers (double opt-in), confirmation mails and the daily digest over SMTP
# ---------------------------------------------------------------------------------------------
FROM runtime AS newsletter

ENV KAZPOST_NEWSLETTER_OPS_HOST=0.0.0.0 \
    KAZPOST_NEWSLETTER_OPS_PORT=8095
EXPOSE 8095

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('KAZPOST_NEWSLETTER_OPS_PORT', '8095'), timeout=4)"]

CMD ["python", "-m", "services.newsletter"]
