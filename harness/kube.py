"""A real Kubernetes control plane on loopback for the k8s tests: etcd, kube-apiserver and
kube-controller-manager (v1.20.2, built from Debian's source by scripts/build_kube.sh).

There is no kubelet, no scheduler and no container runtime: pods stay Pending until
harness.node_agent plays the node's part.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import requests

from harness.local import free_ports
from harness.polling import wait_for

KUBE_BIN = Path(os.environ.get("HYPER_KUBE_BIN", Path.home() / ".cache" / "hyper" / "kube-v1.20.2"))
BINARIES = ("kube-apiserver", "kube-controller-manager", "kubectl")
TOKEN = "hyper-test-admin-token"
SERVICE_CIDR = "10.96.0.0/16"


def missing_binaries() -> list[str]:
    missing = [str(KUBE_BIN / b) for b in BINARIES if not os.access(KUBE_BIN / b, os.X_OK)]
    return missing + ([] if shutil.which("etcd") else ["etcd (apt-get install etcd-server)"])


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class KubeCluster:
    """Starts the control plane in `workdir`; `kubeconfig` is what kubectl and the Python
    client are pointed at."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        [self.port] = free_ports(1)
        self.server = f"https://127.0.0.1:{self.port}"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.processes: list[subprocess.Popen] = []

    def _credentials(self) -> None:
        w = self.workdir
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                 "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(w / "serving.key"),
                 "-out", str(w / "serving.crt"))
        _openssl("genrsa", "-out", str(w / "sa.key"), "2048")
        _openssl("rsa", "-in", str(w / "sa.key"), "-pubout", "-out", str(w / "sa.pub"))
        (w / "tokens.csv").write_text(f"{TOKEN},admin,admin,system:masters\n")
        self.kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {{server: "{self.server}", certificate-authority: "{w / 'serving.crt'}"}}
users:
- name: admin
  user: {{token: {TOKEN}}}
contexts:
- name: local
  context: {{cluster: local, user: admin, namespace: default}}
current-context: local
""")

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.workdir / f"{name}.log", "wb") as log:  # the child keeps its own handle
            self.processes.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))

    def start(self, timeout: float = 90) -> KubeCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._credentials()
        w = self.workdir
        etcd_port, etcd_peer = free_ports(2)
        self._spawn("etcd", ["etcd", "--data-dir", str(w / "etcd"),
                             "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                             "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                             "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}"])
        self._spawn("kube-apiserver", [
            str(KUBE_BIN / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", f"--secure-port={self.port}", "--insecure-port=0",
            f"--tls-cert-file={w / 'serving.crt'}", f"--tls-private-key-file={w / 'serving.key'}",
            f"--token-auth-file={w / 'tokens.csv'}", "--authorization-mode=AlwaysAllow",
            f"--service-account-key-file={w / 'sa.pub'}",
            f"--service-account-signing-key-file={w / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--advertise-address=127.0.0.1",
            "--kubelet-preferred-address-types=InternalIP"])  # a node's name is in no DNS here
        self._wait_ready(timeout)
        self._spawn("kube-controller-manager", [
            str(KUBE_BIN / "kube-controller-manager"), f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false", "--port=0", "--secure-port=0", "--use-service-account-credentials=false",
            f"--service-account-private-key-file={w / 'sa.key'}", f"--root-ca-file={w / 'serving.crt'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}"])
        self._wait_for_service_account_token(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            self._check_alive()
            try:
                return requests.get(f"{self.server}/readyz", verify=str(self.workdir / "serving.crt"),
                                    headers={"Authorization": f"Bearer {TOKEN}"}, timeout=2).ok
            except requests.RequestException:
                return False

        wait_for(ready, f"kube-apiserver /readyz (see {self.workdir}/kube-apiserver.log)", timeout)

    def _wait_for_service_account_token(self, timeout: float) -> None:
        """Pods cannot be created before the default ServiceAccount has its token."""
        def has_token() -> str:
            self._check_alive()
            return self.kubectl("get", "serviceaccount", "default", "-o", "jsonpath={.secrets[0].name}",
                                check=False).stdout.strip()

        wait_for(has_token, "the default ServiceAccount's token (see kube-controller-manager.log)", timeout)

    def _check_alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                name = Path(process.args[0]).name
                raise RuntimeError(f"{name} exited with {process.returncode}; see {self.workdir}/{name}.log")

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """The v1.20 kubectl built with the server (the client matching the server's version)."""
        result = subprocess.run([str(KUBE_BIN / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
                                input=input, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def api_client(self):
        from kubernetes import config

        return config.new_client_from_config(str(self.kubeconfig))

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
