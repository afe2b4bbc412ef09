# The image every service image starts from: the project installed as a wheel, non-root.
# No Docker engine exists on the development machine, so these files are not built in CI.
#   docker build -f docker/base.Dockerfile -t ghcr.io/example/hyper-base:0.1.0 .
#   docker build -f docker/base.Dockerfile --build-arg EXTRAS=gpu -t ghcr.io/example/hyper-base-gpu:0.1.0 .
# then each service: docker build -f services/<name>/Dockerfile -t ghcr.io/example/hyper-<name>:0.1.0 .
FROM python:3.11-slim AS build
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

FROM python:3.11-slim
ARG EXTRAS=""
# CPU images take PyTorch's CPU wheels; the gpu extra (vLLM) brings its own CUDA build.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
COPY --from=build /wheels /wheels
RUN set -eux; wheel=$(ls /wheels/*.whl); \
    if [ -n "$EXTRAS" ]; then target="${wheel}[${EXTRAS}]"; index=""; \
    else target="$wheel"; index="--extra-index-url $TORCH_INDEX"; fi; \
    pip install --no-cache-dir $index "$target"; rm -rf /wheels; \
    useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin hyper
ENV HYPER_HOME=/var/lib/hyper HOME=/tmp PYTHONUNBUFFERED=1
USER 10001
