# The README's demo actors (examples/demo/hello) on the actor base image, for kind:
#   docker build -f images/demo.Dockerfile -t rebeam-demo:dev --build-arg BASE=rebeam-actor:dev .
ARG BASE=ghcr.io/rebeam/actor:0.1.0
FROM ${BASE}
COPY --chown=10001:10001 examples/demo/hello/ /app/hello/
