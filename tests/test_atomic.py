"""labkit.atomic: all-or-nothing writes that never replace a non-regular file or the input, and clean up on SIGTERM."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labkit.atomic import WriteError, atomic_path, check_target, write_bytes


def _listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_write_replaces_regular_file_and_leaves_no_temp(tmp_path):
    write_bytes(tmp_path / "a.bin", b"one")
    write_bytes(tmp_path / "a.bin", b"two")
    assert (tmp_path / "a.bin").read_bytes() == b"two"
    assert _listing(tmp_path) == {"a.bin"}


def test_symlink_is_never_replaced(tmp_path):
    (tmp_path / "real.txt").write_text("keep")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    with pytest.raises(WriteError, match="symbolic link"):
        write_bytes(tmp_path / "link.txt", b"new")
    assert (tmp_path / "link.txt").is_symlink() and (tmp_path / "real.txt").read_text() == "keep"
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(WriteError, match="symbolic link"):
        write_bytes(tmp_path / "dangling", b"new")
    assert _listing(tmp_path) == {"real.txt", "link.txt", "dangling"}


def test_fifo_folder_and_device_are_refused(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(WriteError, match="FIFO"):
        write_bytes(tmp_path / "pipe", b"x")
    (tmp_path / "dir").mkdir()
    with pytest.raises(WriteError, match="folder"):
        write_bytes(tmp_path / "dir", b"x")
    with pytest.raises(WriteError, match="device"):
        check_target("/dev/null")  # checked only: nothing is written
    assert _listing(tmp_path) == {"pipe", "dir"}


def test_input_file_is_never_overwritten(tmp_path):
    (tmp_path / "a.png").write_bytes(b"source")
    with pytest.raises(WriteError, match="is the input file"):
        write_bytes(tmp_path / "a.png", b"x", source=tmp_path / "a.png")
    os.link(tmp_path / "a.png", tmp_path / "hard.png")  # another name for the same file
    with pytest.raises(WriteError, match="is the input file"):
        write_bytes(tmp_path / "hard.png", b"x", source=tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    with pytest.raises(WriteError, match="is the input file"):
        write_bytes(tmp_path / "sub" / ".." / "a.png", b"x", source=tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes() == b"source"
    assert _listing(tmp_path) == {"a.png", "hard.png", "sub"}
    write_bytes(tmp_path / "b.png", b"x", source=tmp_path / "a.png")  # another output is fine


def test_codec_encode_file_refuses_its_input(tmp_path, eval_tiles):
    import labkit.codec
    from PIL import Image

    Image.fromarray(eval_tiles[0][:16, :16].copy()).save(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    with pytest.raises(WriteError, match="is the input file"):
        labkit.codec.encode_file(tmp_path / "a.png", tmp_path / "a.png", model="ae1")
    assert (tmp_path / "a.png").read_bytes() == before


def test_error_inside_keeps_old_file(tmp_path):
    (tmp_path / "out").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert (tmp_path / "out").read_bytes() == b"old" and _listing(tmp_path) == {"out"}


_CHILD = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    from labkit.atomic import atomic_path
    if sys.argv[2] == "handler":
        def mine(signum, frame):
            print("own handler ran", flush=True)
            sys.exit(7)
        signal.signal(signal.SIGTERM, mine)
    with atomic_path(Path(sys.argv[1]) / "out.bin") as tmp:
        tmp.write_bytes(b"partial")
        print("writing", flush=True)
        time.sleep(60)
""")


@pytest.mark.parametrize("previous", ["default", "handler"])
def test_sigterm_mid_write_removes_the_temp_file(tmp_path, previous):
    (tmp_path / "out.bin").write_bytes(b"old")
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path), previous],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
        assert any(n.endswith(".tmp.bin") for n in _listing(tmp_path)), "the child is mid-write"
        child.send_signal(signal.SIGTERM)
        try:
            rest = child.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:  # say why: was SIGTERM ignored, caught, or the child stalled?
            status = Path(f"/proc/{child.pid}/status")
            lines = [ln for ln in status.read_text().splitlines()
                     if ln.split(":")[0] in ("State", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")] \
                if status.exists() else ["no /proc"]
            # a leader in state Z is a process whose main thread has exited while another thread has
            # not: name every thread's state and where it sleeps (wchan), so the stall can be traced
            threads = []
            for task in sorted(Path(f"/proc/{child.pid}/task").glob("*")):
                try:
                    state = next(ln for ln in (task / "status").read_text().splitlines() if ln.startswith("State"))
                    threads.append(f"{task.name} {state.split(':', 1)[1].strip()} in {(task / 'wchan').read_text() or '?'}")
                except (OSError, StopIteration):
                    continue
            pytest.fail(f"the child outlived SIGTERM by 60 s; its signal state: {'; '.join(lines)}; "
                        f"threads: {', '.join(threads) or 'none listed'}")
    finally:
        if child.poll() is None:
            child.kill()
    if previous == "default":
        assert child.returncode == -signal.SIGTERM  # ended by the signal, as without labkit
    else:
        assert child.returncode == 7 and "own handler ran" in rest  # the program's own handler still runs
    assert _listing(tmp_path) == {"out.bin"}, "no temp file left"
    assert (tmp_path / "out.bin").read_bytes() == b"old"


def test_signal_handler_is_restored_after_the_write(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with atomic_path(tmp_path / "x") as tmp:
        assert signal.getsignal(signal.SIGTERM) is not before
        tmp.write_bytes(b"1")
    assert signal.getsignal(signal.SIGTERM) is before


def test_replacing_a_file_keeps_its_permissions(tmp_path):
    """--overwrite of a private file (0600) used to leave it 0644, readable by everyone."""
    from labkit import atomic

    target = tmp_path / "private.png"
    target.write_bytes(b"old")
    target.chmod(0o600)
    atomic.write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and (target.stat().st_mode & 0o777) == 0o600
    fresh = tmp_path / "fresh.png"
    atomic.write_bytes(fresh, b"x")
    assert (fresh.stat().st_mode & 0o777) == 0o666 & ~atomic._umask()


def test_a_read_only_file_is_not_replaced(tmp_path):
    """Its folder being writable does not make a 0444 file fair game (a rename would have replaced it)."""
    from labkit import atomic

    target = tmp_path / "keep.png"
    target.write_bytes(b"old")
    target.chmod(0o444)
    with pytest.raises(atomic.WriteError, match=r"refusing to replace .*keep.png: it is read-only "
                                                r"\(mode 0444\); make it writable \(chmod u\+w\)"):
        atomic.write_bytes(target, b"new")
    assert target.read_bytes() == b"old" and not [p for p in tmp_path.iterdir() if p.name.startswith(".lk-")]


def test_the_umask_is_read_without_changing_it(monkeypatch):
    """Read from /proc/self/status: setting it, even to put it back, races with other threads' new files."""
    from labkit import atomic

    before = os.umask(0o027)
    try:
        if Path("/proc/self/status").exists():   # Linux: read, never set
            def forbidden(mask):
                raise AssertionError("os.umask was called")
            monkeypatch.setattr(atomic.os, "umask", forbidden)
        assert atomic._umask() == 0o027             # elsewhere: set and put back, the only way there
    finally:
        monkeypatch.undo()
        os.umask(before)


def test_a_file_of_another_user_is_named_as_such(tmp_path, monkeypatch):
    from labkit import atomic

    target = tmp_path / "theirs.png"
    target.write_bytes(b"old")
    monkeypatch.setattr(atomic.os, "geteuid", lambda: target.stat().st_uid + 4242)
    monkeypatch.setattr(atomic.os, "access", lambda *a, **k: False)
    with pytest.raises(atomic.WriteError, match=r"it belongs to another user \(uid \d+, mode \d{4}\) and is not writable "
                                                r"by you; choose another output name"):
        atomic.write_bytes(target, b"new")
    assert target.read_bytes() == b"old"


def test_a_refusal_in_a_sticky_folder_says_why(tmp_path, monkeypatch):
    from labkit import atomic

    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o1777)
    target = folder / "theirs.png"
    target.write_bytes(b"old")
    monkeypatch.setattr(atomic.os, "geteuid", lambda: target.stat().st_uid + 4242)
    assert "sticky (like /tmp) and the file belongs to another user" in atomic._why_not_replaced(target)
