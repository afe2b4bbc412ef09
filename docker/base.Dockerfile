# The image every service image starts from: Python and the non-root user. It installs no
# dependencies: each service image installs its own extra's (services/<name>/Dockerfile), so the
# tagger carries no JAX and ppm, the router and the gateway no PyTorch (`python
# scripts/dependencies.py` lists what each one gets), then the project's wheel; both come from
# the wheel image (docker/wheel.Dockerfile).
#   docker build -f docker/base.Dockerfile -t ghcr.io/example/hyper-base:0.1.0 .
#   docker build -f docker/wheel.Dockerfile -t ghcr.io/example/hyper-wheel:0.1.0 .
# then each service: docker build -f services/<name>/Dockerfile -t ghcr.io/example/hyper-<name>:0.1.0 .
# PYTHON_IMAGE: any Debian-based image with Python 3.11 and pip on PATH (scripts/images.py
# passes one made from Debian's packages where no registry can be reached).
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin hyper
ENV HYPER_HOME=/var/lib/hyper HOME=/tmp PYTHONUNBUFFERED=1
# PyTorch's CPU wheels for the CPU images; an image whose extra brings CUDA overrides this.
ENV PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
