# The streamscore image: the worker by default, and every other `streamscore` command.
# Dependencies come from the lock (requirements.txt, `make lock`) in a layer of their own,
# before the source is copied: a code change rebuilds only the last two layers.
# `make test` lints this file with hadolint; building it needs a Docker engine.
FROM python:3.11.17-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STREAMSCORE_WEB_HOST=0.0.0.0 \
    STREAMSCORE_DATA_DIR=/data

# libgomp1: LightGBM's OpenMP runtime. A non-root user owns the two directories the
# services write: /data (registry, state.key, Faust's data; a volume in docker-compose.yml)
# and /models (the demo model's volume).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1=12.2.0-14+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 streamscore \
    && useradd --system --uid 10001 --gid streamscore --home-dir /data --no-create-home streamscore \
    && mkdir -p /data /models \
    && chown streamscore:streamscore /data /models

WORKDIR /app
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY pyproject.toml README.md ./
COPY schemas schemas
COPY scoring scoring
COPY streams streams
RUN pip install --no-cache-dir --no-deps . && rm -rf build ./*.egg-info

USER 10001:10001
EXPOSE 6066
# ready = the worker's partitions are assigned; urllib fails on the 503 it answers before that
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('STREAMSCORE_WEB_PORT', '6066'), timeout=4)"]
ENTRYPOINT ["streamscore"]
CMD ["worker"]
