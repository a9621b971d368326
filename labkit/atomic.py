"""Write files atomically: a temp file in the target folder, fsync, then ``os.replace``.

A crash, a bad input or a termination signal never leaves a half-written output or a
stray temp file behind, and a write never replaces something that is not a plain file:

* the target must be absent or a regular file: a symlink, FIFO, device, socket or
  folder at the output path is refused (``os.replace`` would silently put a file in
  its place, e.g. replace ``/dev/null`` when run as root);
* the target must not be the input being read (``source=``): ``encode a.png a.png``
  is refused before anything is written;
* while a temp file exists, SIGTERM and SIGHUP remove it before the process ends the
  way it would have without labkit (the previous handler runs, or the default action);
* ``overwrite=False`` places the result with a hard link, which fails if the name exists by
  then, so a file that appeared while the output was being made is never replaced;
* the temp file's name is short (``.lk-XXXXXXXX.tmp`` plus the suffix), so any name the
  file system accepts for the output works, and a name it refuses is said to be too long.
"""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["WriteError", "atomic_path", "check_target", "name_too_long", "refuse_read_only", "write_bytes",
           "write_text"]


class WriteError(OSError):
    """An output could not be written; the message names the file and what to do."""


_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)
_PENDING: set[Path] = set()
_PREVIOUS: dict[int, Any] = {}
_LOCK = threading.Lock()


def _remove_pending() -> None:
    for p in list(_PENDING):
        with contextlib.suppress(OSError):
            os.unlink(p)
        _PENDING.discard(p)


def _on_signal(signum: int, frame: Any) -> None:
    """Remove every pending temp file, then let the signal do what it did before."""
    _remove_pending()
    previous = _PREVIOUS.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _track(tmp: Path) -> None:
    with _LOCK:
        if not _PENDING and threading.current_thread() is threading.main_thread():
            for s in _SIGNALS:
                try:
                    prev = signal.getsignal(s)
                    if prev is signal.SIG_IGN:
                        continue
                    _PREVIOUS[s] = prev
                    signal.signal(s, _on_signal)
                except (ValueError, OSError):  # not settable here
                    pass
        _PENDING.add(tmp)


def _untrack(tmp: Path) -> None:
    with _LOCK:
        _PENDING.discard(tmp)
        if not _PENDING and threading.current_thread() is threading.main_thread():
            for s, prev in list(_PREVIOUS.items()):
                with contextlib.suppress(ValueError, OSError, TypeError):
                    if signal.getsignal(s) is _on_signal:
                        signal.signal(s, prev if prev is not None else signal.SIG_DFL)
                _PREVIOUS.pop(s, None)


def check_target(path: str | os.PathLike[str], source: str | os.PathLike[str] | None = None,
                 overwrite: bool = True) -> Path:
    """Raise :class:`WriteError` unless ``path`` may be (re)written as a regular file.

    Parameters
    ----------
    path : str or os.PathLike
        The output path.
    source : str or os.PathLike, optional
        The input being read; writing over it is refused.
    overwrite : bool
        ``False``: an existing ``path`` is refused too.

    Returns
    -------
    Path
        ``path`` as a ``Path``.
    """
    target = Path(path)
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    except OSError as err:
        if err.errno == errno.ENAMETOOLONG:
            raise WriteError(name_too_long(target)) from None
        raise WriteError(f"cannot write {target}: {err.strerror or err}; choose another output path") from err
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = ("a symbolic link" if stat.S_ISLNK(st.st_mode) else "a folder" if stat.S_ISDIR(st.st_mode)
                else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise WriteError(f"refusing to write {target}: it is {kind}, which a write would replace; "
                         "choose a regular file name")
    if source is not None and st is not None:
        try:
            same = os.path.samefile(source, target)
        except OSError:
            same = False
        if same:
            raise WriteError(f"refusing to write {target}: it is the input file; choose another output name")
    if st is not None and not overwrite:
        raise WriteError(f"refusing to write {target}: it already exists (pass --overwrite, or overwrite=True, "
                         "to replace it)")
    return target


def refuse_read_only(target: Path) -> None:
    """``WriteError`` when the existing ``target`` may not be written by this user: replacing goes
    through the folder, which a read-only file does not stop, so the file's own mode is honoured here."""
    try:
        st = os.stat(target)
    except OSError:
        return
    if st.st_mode & 0o222 and os.access(target, os.W_OK):
        return
    mode = f"{stat.S_IMODE(st.st_mode):04o}"
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid() and os.geteuid() != 0:
        raise WriteError(f"refusing to replace {target}: it belongs to another user (uid {st.st_uid}, mode {mode}) "
                         "and is not writable by you; choose another output name")
    raise WriteError(f"refusing to replace {target}: it is read-only (mode {mode}); make it writable "
                     "(chmod u+w) or choose another output name")


def name_too_long(target: Path) -> str:
    """The message for an output name the file system refuses as too long (with its limit when known)."""
    longest = max(target.parts, key=lambda part: len(os.fsencode(part)))  # the output's name or a folder's
    size = len(os.fsencode(longest))
    what = "the file name" if longest == target.name else f"the folder name {longest[:40]}..."
    limit = ""
    for above in target.absolute().parents:  # the nearest existing folder's file system sets the limit
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if above.is_dir():
                limit = f", the file system allows {os.pathconf(above, 'PC_NAME_MAX')}"
                break
    if size <= 255 and len(os.fsencode(str(target))) > 4000:
        return f"cannot write {target}: the path is too long ({len(os.fsencode(str(target)))} bytes); choose a shorter one"
    return f"cannot write {target}: {what} is too long ({size} bytes{limit}); choose a shorter name"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, source: str | os.PathLike[str] | None = None,
                overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it becomes ``path``, on error it is removed.

    Parameters
    ----------
    path : str or os.PathLike
        Final output; must be absent or a regular file (see :func:`check_target`).
    source : str or os.PathLike, optional
        The input file the output is made from; writing over it is refused.
    overwrite : bool
        ``True``: replace an existing ``path``.  ``False``: the result is linked into place
        only if ``path`` still does not exist (checked by the file system at that moment),
        else :class:`WriteError` and nothing is replaced.
    """
    target = check_target(path, source, overwrite)
    if overwrite:
        refuse_read_only(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # a short fixed prefix: the output's own name may already be as long as the file system allows
        fd, tmp = tempfile.mkstemp(prefix=".lk-", suffix=".tmp" + target.suffix[:16], dir=target.parent)
    except OSError as err:
        raise WriteError(f"cannot write {target}: {err.strerror or err}; choose a folder you can write to") from err
    os.close(fd)
    tmp_path = Path(tmp)
    _track(tmp_path)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, _mode_for(target))  # mkstemp makes 0600: the replaced file's mode, else the usual one
        check_target(target, source)  # still a regular file (or absent) right before replacing it
        _place(tmp_path, target, overwrite)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        _untrack(tmp_path)


def _place(tmp: Path, target: Path, overwrite: bool) -> None:
    """Move the finished temp file to ``target`` (never over an existing file unless ``overwrite``)."""
    refused = (f"refusing to write {target}: a file of that name appeared while the output was being made; "
               "it is left as it is (pass --overwrite, or overwrite=True, to replace it)")
    try:
        if overwrite:
            os.replace(tmp, target)
            return
        try:
            os.link(tmp, target)  # atomic "create if absent"; the temp name is removed by the caller
        except FileExistsError:
            raise WriteError(refused) from None
        except OSError as err:
            if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
                raise
            # a file system without hard links: the narrowest check left, then the rename
            if os.path.lexists(target):
                raise WriteError(refused) from None
            os.replace(tmp, target)
    except WriteError:
        raise
    except OSError as err:
        if err.errno == errno.ENAMETOOLONG:
            raise WriteError(name_too_long(target)) from None
        raise WriteError(f"cannot write {target}: {err.strerror or err}"
                         + ("; " + _why_not_replaced(target) if err.errno in (errno.EPERM, errno.EACCES)
                            else "; choose another output path")) from err


def _why_not_replaced(target: Path) -> str:
    """The likely reason the file system refused to put a file at ``target``, with what to do."""
    try:
        folder, existing = os.stat(target.parent), os.stat(target)
    except OSError:
        return "its folder may not be writable: choose another output name"
    if folder.st_mode & stat.S_ISVTX and hasattr(os, "geteuid") and existing.st_uid != os.geteuid():
        return (f"its folder is sticky (like /tmp) and the file belongs to another user (uid {existing.st_uid}), "
                "who alone may replace it: choose another output name")
    return ("it may be immutable (lsattr shows an i), or its folder is not writable: choose another output name")


def _mode_for(target: Path) -> int:
    """Permission bits for the new ``target``: those of the file it replaces (so ``--overwrite`` keeps a
    private file private), else ``0o666`` less the umask, as any new file gets."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode) & 0o777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it where the kernel reports it (Linux); else set and restored.

    Setting it, even briefly, races with files other threads create meanwhile.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike[str], data: bytes, *, source: str | os.PathLike[str] | None = None,
                overwrite: bool = True) -> None:
    """Atomically write ``data`` to ``path`` (never over ``source`` or a non-regular file; see :func:`atomic_path`)."""
    with atomic_path(path, source=source, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str, *, source: str | os.PathLike[str] | None = None) -> None:
    """Atomically write UTF-8 ``text`` to ``path``."""
    write_bytes(path, text.encode("utf-8"), source=source)
