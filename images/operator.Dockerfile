# The rebeam operator. Build from the repository root:
#   docker build -f images/operator.Dockerfile -t ghcr.io/rebeam/operator:0.1.0 .
# The chart runs its console script, `rebeam-operator` (charts/rebeam, operator.command).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sdk/ sdk/
COPY operator/ operator/
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[operator]"

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 rebeam \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/rebeam --create-home rebeam
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels "rebeam[operator]" \
 && rm -rf /wheels
USER 10001:10001
WORKDIR /home/rebeam
ENTRYPOINT ["rebeam-operator"]
