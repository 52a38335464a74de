"""The `segakit` process as a user runs it: quiet on success, and Ctrl-C at start-up or mid-run ends with exit
code 130, the one line "interrupted", no traceback and no partial file (issue 20, items 3 and 4)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

SRC = str(Path(__file__).parents[1] / "src")


def _start(tmp_path, *args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1", "SEGAKIT_THREADS": "1"}
    env.pop("SEGAKIT_VERBOSE", None)
    return subprocess.Popen([sys.executable, "-m", "segakit", *map(str, args)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_a_plain_run_prints_nothing_on_stderr(tmp_path):
    proc = _start(tmp_path, "generate", "a face", "--steps", 2, "--out", "x.png")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert err == "" and out.strip() == "x.png"


def _catches_sigint(pid: int) -> bool:
    """Python has put its SIGINT handler in place (before that, the kernel's default would kill the process)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    except OSError:
        pass
    return False


def test_ctrl_c_during_start_up(tmp_path):
    proc = _start(tmp_path, "generate", "a face", "--steps", 2, "-n", 2, "--out", "run")
    deadline = time.monotonic() + 60
    while Path("/proc/self/status").exists() and not _catches_sigint(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # still importing (torch alone takes seconds)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err == "interrupted\n", (proc.returncode, err)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_images_are_written(tmp_path):
    proc = _start(tmp_path, "generate", "a face", "--steps", 2, "-n", 400, "--out", "run")
    deadline = time.monotonic() + 240
    while not list((tmp_path / "run").glob("*.png")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err == "interrupted\n", (proc.returncode, err)
    written = sorted((tmp_path / "run").iterdir())
    assert 0 < len(written) < 400
    assert all(p.suffix == ".png" and not p.name.startswith(".") for p in written)  # no temporary file left
    for p in written:  # each file there is complete
        with Image.open(p) as im:
            im.load()


def test_an_error_after_ctrl_c_is_reported_as_the_interruption(monkeypatch, capsys):
    """A library that catches the interruption and fails another way (diffusers' lazy import, interrupted half-way,
    raises RuntimeError on the next access) still ends the command with 130 and the one line."""
    import pytest

    import segakit.cli.app as app
    from segakit.cli import interrupt, main
    from segakit.core import interrupt as flag

    def interrupted_then_reworded():
        try:
            interrupt._raise(2, None)
        except interrupt.Interrupted:
            raise RuntimeError("Failed to import diffusers.models because of the following error") from None

    monkeypatch.setattr(app, "main", interrupted_then_reworded)
    monkeypatch.setattr(flag, "_received", False)
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 130 and capsys.readouterr().err == "interrupted\n"
    monkeypatch.setattr(flag, "_received", False)
    monkeypatch.setattr(app, "main", lambda: (_ for _ in ()).throw(RuntimeError("a real bug")))
    with pytest.raises(RuntimeError, match="a real bug"):  # without a Ctrl-C an error stays an error
        main()


def test_a_ctrl_c_a_library_swallows_still_ends_the_command_and_commits_nothing(monkeypatch, capsys, tmp_path):
    """A library on the way that catches the interruption and carries on (a bare ``except:``): no file is committed
    after it, and the command still ends with 130 and the one line."""
    import pytest

    import segakit.cli.app as app
    from segakit.cli import interrupt, main
    from segakit.core.atomic import atomic_open

    def swallowed_then_writes():
        try:
            interrupt._raise(2, None)
        except BaseException:  # noqa: BLE001 - the careless library
            pass
        with atomic_open(tmp_path / "out.png") as fh:
            fh.write(b"half a run")

    monkeypatch.setattr(app, "main", swallowed_then_writes)
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 130 and capsys.readouterr().err == "interrupted\n"
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary
    monkeypatch.setattr(app, "main", lambda: None)
    main()  # the next command starts without the last one's Ctrl-C
    with atomic_open(tmp_path / "x.txt", "w") as fh:
        fh.write("ok")
    assert (tmp_path / "x.txt").read_text() == "ok"


def test_after_the_command_a_ctrl_c_ends_the_process_at_once(monkeypatch):
    """The console script: once the command is done, Python's shutdown runs exit handlers (torch's, the workers');
    a Ctrl-C there exits with 130 and the one line, not a traceback from whichever handler was running."""
    import segakit.cli.app as app
    from segakit.cli import console, interrupt

    previous = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(app, "main", lambda: None)
    try:
        console()
        assert signal.getsignal(signal.SIGINT) is interrupt.exit_at_once
    finally:
        signal.signal(signal.SIGINT, previous)
    code = subprocess.run([sys.executable, "-c", "from segakit.cli.interrupt import exit_at_once; exit_at_once()"],
                          env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, text=True)  # fmt: skip
    assert code.returncode == 130 and code.stderr == "interrupted\n"


def test_clean_up_while_the_interruption_propagates_still_commits(tmp_path):
    """The guard stops only code that carries on after swallowing a Ctrl-C: a ``finally`` on the interruption's way
    out (the batch runner rewrites results.jsonl there) still writes its file."""
    import pytest

    from segakit.cli import interrupt
    from segakit.core import interrupt as flag
    from segakit.core.atomic import atomic_open

    def run():
        try:
            interrupt._raise(2, None)
        finally:
            with atomic_open(tmp_path / "results.jsonl", "w") as fh:
                fh.write("{}\n")

    try:
        with pytest.raises(interrupt.Interrupted):
            run()
        assert (tmp_path / "results.jsonl").read_text() == "{}\n"
    finally:
        flag.clear()
