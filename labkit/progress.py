"""Progress bars that read right both live in JupyterLab and in a saved, executed notebook.

In a live kernel ``tqdm.auto`` draws a widget that updates in place.  A notebook run by papermill
saves that widget's *first* frame as its plain-text fallback, so every viewer without the widget
state (nbconvert, GitHub, a diff, ``jupyter nbconvert --to markdown``) shows "0%" for a loop that
finished.  :func:`labkit.pipeline.run_notebook` therefore sets ``LABKIT_PROGRESS=text`` for the
kernels it starts (and coalesces their streams): the bars are then plain text on stdout whose last
frame is what the executed copy keeps.  :func:`step_bar` is the one bar of ``labkit reproduce`` and
``labkit grade`` over their steps.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

#: Environment variable: ``text`` forces plain-text bars (set for papermill-run kernels).
ENV = "LABKIT_PROGRESS"


def text_mode() -> bool:
    """Whether bars must be plain text (``LABKIT_PROGRESS=text``)."""
    return os.environ.get(ENV, "").strip().lower() == "text"


def bar(iterable: Iterable[Any] | None = None, *, desc: str, total: int | None = None,
        enabled: bool = True, leave: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar: a widget in a live notebook, plain text under papermill or in a terminal.

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate over (as ``tqdm(iterable)``).
    desc : str
        The bar's label.
    total : int, optional
        Number of items when ``iterable`` has no length.
    enabled : bool
        ``False`` gives a disabled bar (iterates silently).
    leave : bool
        Keep the finished bar (``False`` clears it, as for per-epoch bars).
    **kwargs
        Passed to tqdm.
    """
    if text_mode():
        from tqdm.std import tqdm

        # one frame per second at most keeps an executed notebook's stream small
        kwargs.setdefault("mininterval", 1.0)
        kwargs.setdefault("ncols", 88)
        return tqdm(iterable, desc=desc, total=total, disable=not enabled, leave=leave, file=sys.stdout, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=not enabled, leave=leave, **kwargs)


def write(message: str) -> None:
    """Print ``message`` without breaking an active bar (``tqdm.write`` of the same flavour)."""
    if text_mode():
        from tqdm.std import tqdm

        tqdm.write(message, file=sys.stdout)
    else:
        from tqdm.auto import tqdm

        tqdm.write(message)


def step_bar(steps: list[str], enabled: bool | None, desc: str) -> Any:
    """A plain-text tqdm bar over named steps (``labkit reproduce`` / ``labkit grade``), or ``None``.

    On stderr in a terminal and under papermill (stdout stays for results; labkit relays a
    papermill kernel's streams to the terminal); on stdout in a live notebook kernel, where
    JupyterLab shows stderr in an error-coloured box.
    """
    if enabled is False:
        return None
    from tqdm.std import tqdm

    stream = sys.stdout if "ipykernel" in sys.modules and not text_mode() else sys.stderr
    return tqdm(total=len(steps), desc=desc, unit="step", file=stream, ncols=80,
                bar_format="{desc}: {n_fmt}/{total_fmt} {bar} {elapsed} {postfix}")
