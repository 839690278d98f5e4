"""A real full disk for the store-failure tests: a small tmpfs mounted in a private mount namespace (`unshare --user
--map-root-user --mount`, so no root is needed where user namespaces are allowed), held by a process that waits on
its stdin. Commands run inside that namespace through `nsenter` (SQLite resolves the `/proc/PID/root` link to the
path outside, so a store must be opened from inside); this process fills and frees the disk through
`/proc/PID/root`. A write that does not fit fails in the kernel with ENOSPC, as on a real disk. The mount goes with
the holder, so nothing is left mounted. Tests that need it skip, saying why, where it cannot be made."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FILLER = "filler"


class SmallDisk:
    """A tmpfs of `size_kb` kilobytes at `path` for the commands made by `command`, at `outside` for this process."""

    def __init__(self, size_kb: int) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="promptopt-disk-"))
        self.holder = subprocess.Popen(
            ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
             f'mount -t tmpfs -o size={size_kb}k tmpfs "$0" && echo mounted && read _', str(self.path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if self.holder.stdout.readline().strip() != "mounted":
            _, err = self.holder.communicate(input="\n", timeout=30)
            shutil.rmtree(self.path, ignore_errors=True)
            raise OSError(f"no tmpfs could be mounted: {err.strip() or 'no reason given'}")
        self.outside = Path(f"/proc/{self.holder.pid}/root") / self.path.relative_to("/")

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run where the disk is mounted."""
        return ["nsenter", f"--target={self.holder.pid}", "--user", "--mount", "--preserve-credentials", "--",
                *argv]

    def fill(self, leave_bytes: int = 0) -> None:
        """Take all the free space, then give back `leave_bytes` (rounded to whole pages by the kernel)."""
        filler = self.outside / FILLER
        handle = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while True:
                os.write(handle, b"\0" * 65536)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
        finally:
            os.close(handle)
        os.truncate(filler, max(0, filler.stat().st_size - leave_bytes))

    def free(self) -> None:
        """Give the filled space back."""
        (self.outside / FILLER).unlink(missing_ok=True)

    def stop(self) -> None:
        """Unmount (by ending the holder) and remove the mount point."""
        if self.holder.poll() is None:
            self.holder.communicate(input="\n", timeout=30)
        shutil.rmtree(self.path, ignore_errors=True)


def unavailable() -> str | None:
    """Why no small disk can be made here, or None when one can."""
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "no unshare or nsenter command (util-linux)"
    try:
        SmallDisk(64).stop()
    except OSError as error:
        return str(error)
    return None


@pytest.fixture
def small_disk():
    """Make small disks (`small_disk(size_kb)`) that are unmounted when the test ends; skips where none can be."""
    reason = unavailable()
    if reason:
        pytest.skip(f"no small disk can be mounted here: {reason}")
    made: list[SmallDisk] = []

    def make(size_kb: int) -> SmallDisk:
        made.append(SmallDisk(size_kb))
        return made[-1]

    yield make
    for disk in made:
        disk.stop()
