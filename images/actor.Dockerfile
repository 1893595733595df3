# The actor base image: Python with the rebeam runtime. Build from the repository root:
#   docker build -f images/actor.Dockerfile -t ghcr.io/rebeam/actor:0.1.0 .
# Your image adds your code under /app (on PYTHONPATH), e.g.
#   FROM ghcr.io/rebeam/actor:0.1.0
#   COPY --chown=10001:10001 hello/ /app/hello/
# The operator starts each actor pod as `python -m rebeam.runtime <module:Class> ...`
# (needs `sh` and `python` on PATH, and a writable $HOME for the readiness file).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sdk/ sdk/
COPY operator/ operator/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app
RUN groupadd --system --gid 10001 rebeam \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/rebeam --create-home rebeam \
 && mkdir -p /app && chown 10001:10001 /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels rebeam \
 && rm -rf /wheels
USER 10001:10001
WORKDIR /app
CMD ["rebeam-runtime", "--help"]
