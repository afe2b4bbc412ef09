# The image every service image starts from: Python and the non-root user. It installs no
# dependencies: each service image installs its own extra's (docker/service.Dockerfile), so the
# tagger carries no JAX and ppm, the router and the gateway no PyTorch (`python
# scripts/dependencies.py` lists what each one gets), then the project's wheel; both come from
# the wheel image (docker/wheel.Dockerfile). `python scripts/images.py --print` prints the
# build commands of every image.
# PYTHON_IMAGE: any Debian-based image with Python 3.11 and pip on PATH (scripts/images.py
# passes one made from Debian's packages where no registry can be reached).
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin hyper
ENV HYPER_HOME=/var/lib/hyper HOME=/tmp PYTHONUNBUFFERED=1
