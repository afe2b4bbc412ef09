# The image every service image starts from: Python, the project's wheel in /wheels, the
# non-root user. It installs no dependencies: each service image installs the wheel with its
# own extra (services/<name>/Dockerfile), so the tagger carries no JAX and ppm, the router
# and the gateway no PyTorch (`python scripts/dependencies.py` lists what each one gets).
#   docker build -f docker/base.Dockerfile -t ghcr.io/example/hyper-base:0.1.0 .
# then each service: docker build -f services/<name>/Dockerfile -t ghcr.io/example/hyper-<name>:0.1.0 .
# PYTHON_IMAGE: any Debian-based image with Python 3.11 and pip on PATH (scripts/images.py
# passes one made from Debian's packages where no registry can be reached). PIP_FIND_LINKS and
# PIP_NO_INDEX reach pip as environment variables of RUN only: a wheelhouse mounted at /deps
# for an offline build; absent, pip ignores /deps and uses the index.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE} AS build
ARG PIP_FIND_LINKS=/deps
ARG PIP_NO_INDEX=0
WORKDIR /src
RUN pip install --no-cache-dir grpcio-tools==1.85.1
COPY pyproject.toml README.md ./
COPY proto proto
COPY src src
COPY services services
COPY helm/hyper/files helm/hyper/files
RUN python -m grpc_tools.protoc -I proto --python_out=src --grpc_python_out=src --pyi_out=src \
        proto/hyper/v1/*.proto \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
COPY --from=build /wheels /wheels
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin hyper
ENV HYPER_HOME=/var/lib/hyper HOME=/tmp PYTHONUNBUFFERED=1
# PyTorch's CPU wheels for the CPU images; an image whose extra brings CUDA overrides this.
ENV PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
