"""The sweep console on a real terminal (a pty, as `script` gives): one line per event,
every epoch line tagged with its job, progress bars only where they cannot collide."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from conftest import TINY

from rasp_hydra.train import record

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ["-m", "lang=hist_10_bos", *TINY, "train.num_threads=1", "optimizer.lr=1e-3,3e-3"]
BAR = re.compile(r"epoch \d+: +\d+%\|")  # a tqdm bar of train/record.py's ProgressBar
EPOCH_LINE = re.compile(r"\] (\[job \d+\] )?epoch +\d+/\d+ train_loss")


def run_in_pty(args: list[str], cwd: Path, columns: int = 0, timeout: float = 240) -> str:
    """`python -m rasp_hydra ARGS` with a pty of `columns` columns (0: no width, as under
    `script`) as its stdin, stdout and stderr; everything it wrote, \\r\\n made \\n."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "rasp_hydra", *args], cwd=cwd, env=env,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out, deadline = bytearray(), time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 1.0)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer of the pty is gone
                    break
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
    assert proc.returncode == 0, out.decode(errors="replace")
    return out.decode(errors="replace").replace("\r\n", "\n")


def check_lines(text: str, jobs: int) -> list[str]:
    """Every epoch line tagged with its job and alone on its line (after any bar that was
    erased before it); at most one bar between two carriage returns. Returns the bars."""
    bars, tagged = [], set()
    for line in text.split("\n"):
        for segment in line.split("\r"):
            assert len(BAR.findall(segment)) <= 1, f"two bars share a line: {segment!r}"
            if BAR.search(segment):
                assert "[rasp_hydra]" not in segment, f"a bar clobbers a line: {segment!r}"
                bars.append(segment)
        visible = line.split("\r")[-1]  # what a terminal shows once the line ends
        if EPOCH_LINE.search(line):
            match = EPOCH_LINE.search(visible)
            assert match and match.group(1), f"an epoch line without its job: {line!r}"
            tagged.add(match.group(1))
    assert tagged == {f"[job {k}] " for k in range(jobs)}, text
    return bars


def test_parallel_jobs_draw_no_bars_and_tag_every_epoch_line(cli_cwd):
    # asked for bars, on a pty with no width: two joblib workers would draw on one line
    text = run_in_pty([*SWEEP, "hydra.launcher.n_jobs=2", "train.progress=true",
                       f"hydra.sweep.dir={cli_cwd / 'sweep'}"], cli_cwd)
    assert check_lines(text, jobs=2) == []
    assert len(re.findall(r"\[job \d\] epoch +\d/2 ", text)) == 4  # once each: no line twice


def test_jobs_in_the_foreground_draw_bars_of_a_sane_width(cli_cwd):
    # the basic launcher runs one job at a time in this process: its bars cannot collide;
    # asked for on a pty of 0 columns, they are 80 wide
    text = run_in_pty([*SWEEP, "hydra/launcher=basic", "train.progress=true",
                       f"hydra.sweep.dir={cli_cwd / 'sweep'}"], cli_cwd)
    bars = check_lines(text, jobs=2)
    assert bars and all(len(b.strip()) <= 80 for b in bars)


def test_a_pty_without_width_gets_no_bar_unless_asked(monkeypatch):
    class Tty:
        def isatty(self):
            return True

        def fileno(self):
            raise OSError("no width")

    monkeypatch.setattr(sys, "stderr", Tty())
    assert record._terminal_width() == 0
    assert not record.show_progress("auto") and record.show_progress("true")
    assert not record.show_progress("false")
    monkeypatch.setattr(record, "_terminal_width", lambda: 120)
    assert record.show_progress("auto")
