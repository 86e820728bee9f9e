"""What differs between ipywidgets 7.7 (Colab) and 8: the FileUpload value, clearing it, the display hook.

Everything else the explorer uses (Dropdown, IntSlider, FloatRangeSlider, Checkbox, Button, Text, HTML,
Output.capture, HBox/VBox, Layout) behaves the same in both, so :mod:`cbir_tutorial.ui.widgets` is
written against that and calls this module for the rest:

=====================  ==========================================  ==========================================
                       ipywidgets 7.7                              ipywidgets 8
=====================  ==========================================  ==========================================
``FileUpload.value``   read-only dict ``{filename: {"metadata":    tuple of dicts ``{"name", "type", "size",
                       {...}, "content": bytes}}``, set from the   "last_modified", "content": memoryview}``,
                       ``data``/``metadata`` traits when the       settable
                       browser bumps ``_counter``
displaying a widget    ``Widget._ipython_display_``                ``Widget._repr_mimebundle_``
=====================  ==========================================  ==========================================
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import ipywidgets

#: The installed ipywidgets major version (7 or 8).
IPYWIDGETS_MAJOR = int(ipywidgets.__version__.split(".")[0])
VIEW_MIME = "application/vnd.jupyter.widget-view+json"


@dataclass(frozen=True)
class UploadedFile:
    """One file the learner uploaded: its ``name``, MIME ``type`` (may be ``""``) and ``content`` bytes."""

    name: str
    content: bytes = field(repr=False)
    type: str = ""


def uploaded_files(value) -> list[UploadedFile]:
    """The files in a ``FileUpload.value`` of either major version, in upload order (``[]`` when empty).

    ipywidgets 8: a tuple (or list) of dicts with ``name``, ``type`` and ``content`` (a memoryview).
    ipywidgets 7: a dict ``{filename: {"metadata": {"name", "type", ...}, "content": bytes}}``.
    """
    if not value:
        return []
    if isinstance(value, Mapping):  # ipywidgets 7
        files = []
        for key, item in value.items():
            metadata = item.get("metadata") or {}
            files.append(UploadedFile(str(metadata.get("name") or key), bytes(item["content"]),
                                      str(metadata.get("type") or "")))
        return files
    if isinstance(value, (tuple, list)):  # ipywidgets 8
        return [UploadedFile(str(item.get("name") or "your photo"), bytes(item["content"]), str(item.get("type") or ""))
                for item in value]
    raise TypeError(f"unexpected FileUpload value of type {type(value).__name__}: "
                    "expected a tuple of dicts (ipywidgets 8) or a dict of files (ipywidgets 7)")


def clear_upload(upload: ipywidgets.FileUpload) -> None:
    """Empty ``upload`` so that the same file can be uploaded again (its value changes again then).

    Fires the value observers with an empty value, which :func:`uploaded_files` turns into ``[]``.
    """
    if IPYWIDGETS_MAJOR >= 8:
        upload.value = ()
    else:  # 7: value is read-only, recomputed from data/metadata when the browser bumps _counter
        upload.set_trait("value", {})
        upload.metadata, upload.data = [], []


def send_upload(upload: ipywidgets.FileUpload, files: Iterable[tuple[str, bytes, str]]) -> None:
    """Put ``files`` (``(name, content, type)`` each) into ``upload`` as the browser does after a pick.

    For code and tests that drive the explorer without a browser; the value observers fire as for
    a real upload, with the value shape of the installed ipywidgets.
    """
    files = [(str(name), bytes(content), str(kind)) for name, content, kind in files]
    if IPYWIDGETS_MAJOR >= 8:
        now = datetime.datetime.now(datetime.timezone.utc)
        upload.value = tuple({"name": name, "type": kind, "size": len(content), "content": memoryview(content),
                              "last_modified": now} for name, content, kind in files)
    else:  # what the 7.x front end sends: metadata and data, then a bumped counter
        upload.metadata = [{"name": name, "type": kind, "size": len(content), "lastModified": 0}
                           for name, content, kind in files]
        upload.data = [content for _, content, _ in files]
        upload._counter += len(files)


def widget_bundle(widget: ipywidgets.Widget, **kwargs) -> dict:
    """The display data of ``widget`` (``text/plain`` and the widget view's model id), in either version.

    ``kwargs``: what IPython passes to ``_repr_mimebundle_`` (``include``, ``exclude``). ipywidgets 8
    makes the dict in ``_repr_mimebundle_``; 7 publishes the same dict from ``_ipython_display_``, so it
    is built here and the widget told it was displayed, as 7 does.
    """
    if hasattr(widget, "_repr_mimebundle_"):
        return widget._repr_mimebundle_(**kwargs)
    plaintext = repr(widget)
    data = {"text/plain": plaintext if len(plaintext) <= 110 else plaintext[:110] + "…"}
    if widget._view_name is not None:
        data[VIEW_MIME] = {"version_major": 2, "version_minor": 0, "model_id": widget._model_id}
        widget._handle_displayed()  # 7 calls on_displayed callbacks without include/exclude
    return data
