"""A single-node Kubernetes cluster with no component of ours in a node's place.

The control plane of harness.kube (etcd, kube-apiserver, kube-controller-manager) plus
kube-scheduler, kubelet and kube-proxy (v1.20.2, the same Debian source, scripts/build_kube.sh
--node), containerd with its CRI plugin and runc (Debian's packages), the CNI reference plugins
(Debian's containernetworking-plugins: bridge, host-local, loopback, portmap), and dnsmasq
(Debian) as the cluster DNS. CoreDNS is in no registry this machine reaches: dnsmasq serves the
Services' names from a hosts file that a loop here keeps equal to the API's Services (the part
CoreDNS's kubernetes plugin would play), and forwards everything else to the host's resolver.

Everything lives under one work directory and is torn down by stop(): processes, the pods'
containers and mounts, network namespaces, the bridge, and the iptables rules kube-proxy and
the CNI plugins made; ip_forward is put back as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from harness.kube import KUBE_BIN, KubeCluster
from harness.local import free_ports
from harness.polling import wait_for

NODE_BINARIES = ("kubelet", "kube-scheduler", "kube-proxy")
SYSTEM_BINARIES = ("containerd", "ctr", "runc", "dnsmasq", "iptables", "ip")
CNI_BIN = Path("/usr/lib/cni")
NODE = "hyper-node"
BRIDGE = "hyper-cni0"
POD_CIDR = "10.244.0.0/24"
GATEWAY = "10.244.0.1"  # the bridge's address: the pods' route out, and where DNS listens
CLUSTER_DOMAIN = "cluster.local"
PAUSE_IMAGE = "localhost/hyper-pause:local"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
# Where a v1.20 kubelet writes the containers' logs, whatever its root directory (no flag moves them).
POD_LOGS = (Path("/var/log/pods"), Path("/var/log/containers"))
OWN_CHAINS = ("KUBE-", "CNI-")  # what the kubelet, kube-proxy and the CNI plugins add to iptables


def missing() -> list[str]:
    """What this machine lacks for the node (empty: it can start)."""
    lacking = [str(KUBE_BIN / b) for b in NODE_BINARIES if not os.access(KUBE_BIN / b, os.X_OK)]
    lacking += [b for b in SYSTEM_BINARIES if not shutil.which(b)]
    lacking += [str(CNI_BIN / p) for p in ("bridge", "host-local", "loopback", "portmap") if not (CNI_BIN / p).exists()]
    return lacking


def links() -> set[str]:
    """The machine's network interfaces by name."""
    shown = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in shown.splitlines()}


def service_records(objects: list[dict]) -> list[str]:
    """Hosts-file lines for Services as the cluster DNS names them: a Service's cluster IP, or
    for a headless one every ready endpoint's, plus <hostname>.<service> for a StatefulSet's pods."""
    records = []
    headless = set()
    for item in (o for o in objects if o["kind"] == "Service"):
        name = f"{item['metadata']['name']}.{item['metadata']['namespace']}.svc.{CLUSTER_DOMAIN}"
        if item["spec"].get("clusterIP") in (None, "", "None"):
            headless.add(name)
        else:
            records.append(f"{item['spec']['clusterIP']} {name}")
    for item in (o for o in objects if o["kind"] == "Endpoints"):
        name = f"{item['metadata']['name']}.{item['metadata']['namespace']}.svc.{CLUSTER_DOMAIN}"
        if name not in headless:
            continue
        for address in (a for subset in item.get("subsets") or [] for a in subset.get("addresses") or []):
            records.append(f"{address['ip']} {name}")
            if address.get("hostname"):
                records.append(f"{address['ip']} {address['hostname']}.{name}")
    return records


class SingleNodeCluster(KubeCluster):
    """start() brings up the control plane, the node's components and the cluster DNS; `ctr`
    talks to its containerd; stop() leaves nothing behind."""

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.node_dir = self.workdir / "node"
        self.socket = self.node_dir / "containerd" / "state" / "containerd.sock"
        self.hosts = self.node_dir / "dns" / "hosts"
        self.dns: subprocess.Popen | None = None
        self.dns_sync: threading.Thread | None = None
        self.stopping = threading.Event()
        self.ip_forward = IP_FORWARD.read_text().strip()
        self.links_before = links()
        self.logs_before = {directory: set(os.listdir(directory)) if directory.is_dir() else set()
                            for directory in POD_LOGS}

    # -- start

    def start(self, timeout: float = 180) -> SingleNodeCluster:
        super().start(timeout)
        self._network()
        self._containerd()
        self._spawn("kube-scheduler", [str(KUBE_BIN / "kube-scheduler"), f"--kubeconfig={self.kubeconfig}",
                                       "--leader-elect=false", "--port=0", "--secure-port=0"])
        self._kubelet()
        self._kube_proxy()
        self._cluster_dns()
        wait_for(self._node_ready, f"node {NODE} Ready (see {self.workdir}/kubelet.log)", timeout)
        return self

    def _network(self) -> None:
        """The bridge the CNI plugin attaches pods to, made here so DNS can listen on it first."""
        subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE], check=True)
        subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)
        IP_FORWARD.write_text("1")  # Service traffic is DNATed by the host and sent back to the bridge
        conf = self.node_dir / "cni"
        conf.mkdir(parents=True)
        (conf / "10-hyper.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": "hyper-pods", "plugins": [
                {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR, "gateway": GATEWAY}]],
                          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(self.node_dir / "ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": True}}]}))

    def _containerd(self) -> None:
        root = self.node_dir / "containerd"
        config = root / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(f"""version = 2
root = "{root / 'root'}"
state = "{root / 'state'}"
[grpc]
  address = "{self.socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # This machine's own processes run under limits a child cannot go below (oom_score_adj):
  # the sandbox's -998 is raised to what is allowed, as kind does in a container.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{self.node_dir / 'cni'}"
""")
        self._spawn("containerd", ["containerd", "--config", str(config)])
        wait_for(lambda: self.ctr("version", check=False).returncode == 0, "containerd", 30)

    def _kubelet(self) -> None:
        kubelet = self.node_dir / "kubelet"
        kubelet.mkdir(parents=True)
        [port] = free_ports(1)
        self._spawn("kubelet", [
            str(KUBE_BIN / "kubelet"), f"--kubeconfig={self.kubeconfig}", "--container-runtime=remote",
            f"--container-runtime-endpoint=unix://{self.socket}", f"--root-dir={kubelet}",
            f"--cert-dir={kubelet / 'pki'}", f"--hostname-override={NODE}", f"--port={port}",
            "--read-only-port=0", "--healthz-port=0", "--anonymous-auth=true", "--authorization-mode=AlwaysAllow",
            "--authentication-token-webhook=false", "--cgroup-driver=cgroupfs", "--cgroups-per-qos=false",
            "--enforce-node-allocatable=", "--fail-swap-on=false", f"--cluster-dns={GATEWAY}",
            f"--cluster-domain={CLUSTER_DOMAIN}", "--resolv-conf=/etc/resolv.conf",
            "--eviction-hard=memory.available<100Mi,nodefs.available<2%,imagefs.available<2%",
            "--image-gc-high-threshold=100", "--image-gc-low-threshold=99", "--runtime-request-timeout=10m",
            f"--volume-plugin-dir={kubelet / 'plugins'}", "--serialize-image-pulls=false"])

    def _kube_proxy(self) -> None:
        metrics, health = free_ports(2)
        self._spawn("kube-proxy", [
            str(KUBE_BIN / "kube-proxy"), f"--kubeconfig={self.kubeconfig}", f"--hostname-override={NODE}",
            "--proxy-mode=iptables", f"--cluster-cidr={POD_CIDR}", f"--metrics-bind-address=127.0.0.1:{metrics}",
            f"--healthz-bind-address=127.0.0.1:{health}", "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0"])

    def _cluster_dns(self) -> None:
        self.hosts.parent.mkdir(parents=True)
        self.hosts.write_text("")
        upstream = [line.split()[1] for line in Path("/etc/resolv.conf").read_text().splitlines()
                    if line.startswith("nameserver")]
        # --user=root: the hosts file lies under the work directory, which only root may enter
        self._spawn("dnsmasq", ["dnsmasq", "--keep-in-foreground", "--user=root", "--no-hosts", "--no-resolv",
                                f"--listen-address={GATEWAY}", "--bind-interfaces", "--except-interface=lo",
                                f"--addn-hosts={self.hosts}", f"--pid-file={self.hosts.parent / 'pid'}",
                                "--log-facility=-", *[f"--server={server}" for server in upstream]])
        self.dns = self.processes[-1]
        self.dns_sync = threading.Thread(target=self._sync_dns, daemon=True)
        self.dns_sync.start()

    def _sync_dns(self) -> None:
        """The hosts file dnsmasq serves, kept equal to the Services (reloaded on SIGHUP)."""
        served = ""
        while not self.stopping.wait(1.0):
            services = self.kubectl("get", "services,endpoints", "--all-namespaces", "-o", "json", check=False)
            if services.returncode != 0:
                continue
            text = "\n".join(sorted(service_records(json.loads(services.stdout)["items"]))) + "\n"
            if text != served:
                self.hosts.write_text(text)
                assert self.dns is not None
                self.dns.send_signal(signal.SIGHUP)
                served = text

    def _node_ready(self) -> bool:
        self._check_alive()
        node = self.kubectl("get", "node", NODE, "-o", "json", check=False)
        if node.returncode != 0:
            return False
        conditions = json.loads(node.stdout)["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    # -- use

    def ctr(self, *args: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
                              input=input, capture_output=True, check=check)

    def load_image(self, image: str) -> None:
        """A podman image into the node's containerd, under the same name."""
        saved = subprocess.Popen(["podman", "--runtime", "runc", "save", "--format", "docker-archive", image],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        subprocess.run(["ctr", "--address", str(self.socket), "--namespace", "k8s.io", "images", "import", "-"],
                       stdin=saved.stdout, check=True, capture_output=True)
        if saved.wait() != 0:
            raise RuntimeError(f"podman save {image} failed")

    # -- stop

    def stop(self) -> None:
        self.stopping.set()
        if self.dns_sync is not None:
            self.dns_sync.join(timeout=5)
        self._stop_named("kubelet")
        self._remove_containers()
        super().stop()
        self._kill_shims()
        self._clean_mounts()
        self._clean_network()
        IP_FORWARD.write_text(self.ip_forward)
        self._clean_logs()

    def _clean_logs(self) -> None:
        """The pods' logs this node's kubelet wrote (copied into the work directory first)."""
        kept = self.workdir / "pod-logs"
        for directory, before in self.logs_before.items():
            for name in set(os.listdir(directory)) - before if directory.is_dir() else ():
                path = directory / name
                if directory.name == "pods":
                    shutil.copytree(path, kept / name, dirs_exist_ok=True)
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)

    def leftovers(self) -> list[str]:
        """What stop() should have removed and did not: processes, mounts, network namespaces,
        interfaces, iptables chains (empty after a clean teardown)."""
        left = [f"process {p.pid}" for p in self.processes if p.poll() is None]
        left += [f"shim {pid}" for pid in self._shims()]
        mounts = Path("/proc/self/mountinfo").read_text().split("\n")
        left += [f"mount {m.split()[4]}" for m in mounts if m and m.split()[4].startswith(str(self.workdir))]
        left += [f"netns {n}" for n in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                       text=True).stdout.split() if n.startswith("cni-")]
        left += [f"interface {name}" for name in links() - self.links_before]
        for command in ("iptables", "ip6tables"):
            for table in ("nat", "filter", "mangle"):
                rules = subprocess.run([command, "-t", table, "-S"], capture_output=True, text=True).stdout
                left += [f"{command} -t {table} {r}" for r in rules.splitlines()
                         if r.startswith("-N ") and r.split()[1].startswith(OWN_CHAINS)]
        return left

    def _stop_named(self, name: str) -> None:
        for process in self.processes:
            if Path(process.args[0]).name == name and process.poll() is None:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
                if process.poll() is None:
                    process.kill()

    def _remove_containers(self) -> None:
        """Every task and container of the node, while containerd still runs."""
        if self.ctr("version", check=False).returncode != 0:
            return
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.decode().split():
            self.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
        deadline = time.monotonic() + 20
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.decode().split():
            while self.ctr("tasks", "rm", task, check=False).returncode != 0 and time.monotonic() < deadline:
                time.sleep(0.2)
        for container in self.ctr("containers", "ls", "-q", check=False).stdout.decode().split():
            self.ctr("containers", "rm", container, check=False)

    def _shims(self) -> list[int]:
        """The runtime shims of this node's containerd (they outlive containerd by design)."""
        own = []
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if entry.name.isdigit() and str(self.socket).encode() in (entry / "cmdline").read_bytes():
                    own.append(int(entry.name))
        return own

    def _kill_shims(self) -> None:
        """Whatever still runs under the shims (a teardown interrupted before the tasks were
        removed), then the shims: each pod's processes are the shim's descendants."""
        shims = set(self._shims())
        parents = {}
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError, ValueError):
                if entry.name.isdigit():
                    status = (entry / "status").read_text()
                    parents[int(entry.name)] = int(status.split("PPid:")[1].split()[0])

        def under_a_shim(pid: int) -> bool:
            while pid > 1:
                pid = parents.get(pid, 0)
                if pid in shims:
                    return True
            return False

        for pid in [p for p in parents if under_a_shim(p)] + sorted(shims):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _clean_mounts(self) -> None:
        """Unmounts what the kubelet and containerd mounted under the work directory, deepest first."""
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        for point in sorted((m for m in mounts if m.startswith(str(self.workdir))), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        for point in (m for m in mounts if m.startswith("/run/netns/cni-") or m.startswith("/var/run/netns/cni-")):
            subprocess.run(["umount", "-l", point], capture_output=True)
            Path(point).unlink(missing_ok=True)

    def _clean_network(self) -> None:
        """The chains the kubelet, kube-proxy and the CNI plugins made (KUBE-*, CNI-*), the
        rules that jump to them, and the bridge."""
        for command in ("iptables", "ip6tables"):
            for table in ("nat", "filter", "mangle"):
                rules = subprocess.run([command, "-t", table, "-S"], capture_output=True, text=True).stdout.splitlines()
                ours = [r.split()[1] for r in rules if r.startswith("-N ") and r.split()[1].startswith(OWN_CHAINS)]
                for rule in (r for r in rules if r.startswith("-A ") and any(c in r.split() for c in ours)
                             and not r.split()[1].startswith(OWN_CHAINS)):
                    subprocess.run([command, "-t", table, *shlex.split(rule.replace("-A ", "-D ", 1))],
                                   capture_output=True)
                for chain in ours:
                    subprocess.run([command, "-t", table, "-F", chain], capture_output=True)
                for chain in ours:
                    subprocess.run([command, "-t", table, "-X", chain], capture_output=True)
        # The pods' veth pairs: their far ends' namespaces may outlive the pods (a mount held
        # elsewhere), so the near ends are deleted with the bridge rather than left to go with them.
        attached = subprocess.run(["ip", "-o", "link", "show", "master", BRIDGE], capture_output=True, text=True)
        for line in attached.stdout.splitlines():
            subprocess.run(["ip", "link", "delete", line.split(": ")[1].split("@")[0]], capture_output=True)
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
