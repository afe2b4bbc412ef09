# Every service image: the base (Python, the non-root user), the dependencies of the service's
# extra (a layer that changes only with pyproject.toml's dependencies), then the project's wheel,
# then the service's entry point: the command `hyper up` runs as a local process and the chart
# names. docker/images.toml lists each image's build arguments.
#   BASE, WHEEL: the images docker/base.Dockerfile and docker/wheel.Dockerfile build.
#   EXTRA: the extra of pyproject.toml (tagger, ppm, router, gateway, trainer,jax-cpu, ...).
#   COMMAND: the console script the container runs (the chart sets the same as the pod's command).
#   TORCH_INDEX: where pip finds PyTorch (the CPU wheels; "" for the CUDA build of the GPU tagger).
ARG BASE
ARG WHEEL
FROM ${WHEEL} AS wheel
FROM ${BASE}
ARG EXTRA
ARG COMMAND
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# PIP_FIND_LINKS / PIP_NO_INDEX reach pip as environment variables of RUN only: a wheelhouse
# mounted at /deps for an offline build (scripts/images.py); absent, pip uses the index.
ARG PIP_FIND_LINKS=/deps
ARG PIP_NO_INDEX=0
COPY --from=wheel /requirements/${EXTRA}.txt /tmp/requirements.txt
RUN PIP_EXTRA_INDEX_URL=${TORCH_INDEX} pip install --no-cache-dir -r /tmp/requirements.txt
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/*.whl && rm -rf /wheels
ENV HYPER_COMMAND=${COMMAND}
USER 10001
CMD exec "$HYPER_COMMAND"
