# The project's wheel (generated protobuf code included) and each extra's requirements, alone in
# an image that service images copy them from. A requirements file changes only with the
# dependencies, so a change to the code rebuilds each service's last layer, not its dependencies.
#   docker build -f docker/wheel.Dockerfile -t ghcr.io/example/hyper-wheel:0.1.0 .
# PYTHON_IMAGE, PIP_FIND_LINKS, PIP_NO_INDEX: as in base.Dockerfile.
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
COPY docker/requirements.py docker/
# The trainer's per accelerator (services/rm-trainer/Dockerfile's ACCELERATOR): trainer,jax-cpu|cuda|tpu.
RUN mkdir /requirements && for extras in tagger ppm router gateway tagger,gpu \
        trainer,jax-cpu trainer,jax-cuda trainer,jax-tpu; do \
        python docker/requirements.py "$extras" > "/requirements/$extras.txt"; done
RUN python -m grpc_tools.protoc -I proto --python_out=src --grpc_python_out=src --pyi_out=src \
        proto/hyper/v1/*.proto \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM scratch
COPY --from=build /requirements /requirements
COPY --from=build /wheels /wheels
