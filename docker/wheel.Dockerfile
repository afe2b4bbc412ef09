# The project's wheel (generated protobuf code included) and each extra's requirements, alone in
# an image that service images copy them from. A requirements file changes only with the
# dependencies, so a change to the code rebuilds each service's last layer, not its dependencies.
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
COPY docker/requirements.py docker/images.toml docker/
# /requirements/<extra>.txt for the extra of every image in docker/images.toml.
RUN python docker/requirements.py --all /requirements
RUN python -m grpc_tools.protoc -I proto --python_out=src --grpc_python_out=src --pyi_out=src \
        proto/hyper/v1/*.proto \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM scratch
COPY --from=build /requirements /requirements
COPY --from=build /wheels /wheels
