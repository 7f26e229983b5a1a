# syntax=docker/dockerfile:1
# asyncmig as a scheduled job: `docker run ... asyncmig:latest run --sqlite /data/app.db`.
#
# Stage 1 builds the wheels (asyncmig's and its dependencies'); stage 2 installs them
# from a bind mount, so no wheel, pip cache, compiler or source tree reaches the image.
# The image runs as a non-root user and writes only to /data (its working directory:
# logs, rejects) and /tmp (snapshots): it works with `--read-only --tmpfs /tmp`.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY asyncmig ./asyncmig
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/data \
    TMPDIR=/tmp \
    ASYNCMIG_LOG_FORMAT=json
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels asyncmig \
    && groupadd --system --gid 10001 asyncmig \
    && useradd --system --uid 10001 --gid asyncmig --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin asyncmig \
    && mkdir -p /data && chown asyncmig:asyncmig /data && chmod 0700 /data \
    && rm -rf /root/.cache /tmp/*
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
ENTRYPOINT ["asyncmig"]
CMD ["--help"]
