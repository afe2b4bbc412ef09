"""A simulated power loss: what reached the disk is what was fsync'd.

The processes under test record, whenever they fsync a regular file, its inode and its size
then (a sitecustomize that `recording_env` puts on their path installs the recorder). After
they are SIGKILLed, `lose_power` cuts every file under a directory back to its size at its
inode's last fsync, and empties the files never fsync'd: the model of a crash in which written
data not yet flushed is lost. Directory entries are taken as they are. An inode reused by a
later file can make that file look more durable than it was, never less: the model errs toward
passing a writer only where inodes are recycled within one run.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

JOURNAL_ENV = "HYPER_TEST_FSYNC_JOURNAL"
REPOSITORY = Path(__file__).resolve().parents[1]
SITECUSTOMIZE = f"""import os
if os.environ.get({JOURNAL_ENV!r}):
    from harness.power_loss import record_fsyncs
    record_fsyncs(os.environ[{JOURNAL_ENV!r}])
"""


def record_fsyncs(journal: str) -> Callable[[], None]:
    """From now on, every fsync of a regular file in this process is noted in `journal`; the
    function returned stops it."""
    real_fsync = os.fsync
    out = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def fsync(fd) -> None:
        real_fsync(fd)
        status = os.fstat(fd if isinstance(fd, int) else fd.fileno())
        if stat.S_ISREG(status.st_mode):
            os.write(out, f"{status.st_ino} {status.st_size}\n".encode())  # one O_APPEND write: whole lines

    def stop() -> None:
        os.fsync = real_fsync
        os.close(out)

    os.fsync = fsync
    return stop


def recording_env(directory: Path) -> dict[str, str]:
    """Variables that make Python processes started with them record their fsyncs."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(p for p in (str(directory), str(REPOSITORY), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, JOURNAL_ENV: str(directory / "fsyncs.log")}


def lose_power(root: Path, journal: Path) -> int:
    """Every file under `root` cut to what its last fsync made durable; how many lost data."""
    durable: dict[int, int] = {}
    for line in journal.read_text().splitlines():
        inode, size = line.split()
        durable[int(inode)] = int(size)
    cut = 0
    for path in (p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        status = path.stat()
        keep = durable.get(status.st_ino, 0)
        if status.st_size > keep:
            os.truncate(path, keep)
            cut += 1
    return cut
