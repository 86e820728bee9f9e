"""The ipywidgets 7 / 8 adapter: both FileUpload value shapes, clearing, display data (run under 7.7 and 8)."""

import datetime

import ipywidgets as w
import pytest

from cbir_tutorial.ui.widget_compat import (IPYWIDGETS_MAJOR, VIEW_MIME, UploadedFile, clear_upload, send_upload,
                                            uploaded_files, widget_bundle)


@pytest.fixture(scope="module")
def photos(sample_dir):
    paths = sorted((sample_dir / "images").glob("*.jpg"))[:2]
    return [(path.name, path.read_bytes()) for path in paths]


def value_7(files):
    """A FileUpload value as ipywidgets 7.7 builds it: {filename: {"metadata": {...}, "content": bytes}}."""
    return {name: {"metadata": {"name": name, "type": "image/jpeg", "size": len(content),
                                "lastModified": 1704067200000},
                   "content": content} for name, content in files}


def value_8(files):
    """A FileUpload value as ipywidgets 8 builds it: a tuple of dicts, content as a memoryview."""
    return tuple({"name": name, "type": "image/jpeg", "size": len(content), "content": memoryview(content),
                  "last_modified": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)}
                 for name, content in files)


def test_the_installed_version_is_one_the_explorer_supports():
    assert IPYWIDGETS_MAJOR in (7, 8) and w.__version__.startswith(str(IPYWIDGETS_MAJOR))


@pytest.mark.parametrize("shape", [value_7, value_8])
def test_both_value_shapes_give_the_same_files(shape, photos):
    files = uploaded_files(shape(photos))
    assert files == [UploadedFile(name, content, "image/jpeg") for name, content in photos]
    assert all(type(f.content) is bytes for f in files)  # a memoryview would outlive the widget's buffer
    assert uploaded_files(shape(photos[:1]))[0].content == photos[0][1]


@pytest.mark.parametrize("empty", [(), {}, [], None])
def test_an_empty_value_has_no_files(empty):
    assert uploaded_files(empty) == []


def test_a_7_value_without_metadata_is_named_by_its_key(photos):
    name, content = photos[0]
    assert uploaded_files({name: {"content": content}}) == [UploadedFile(name, content, "")]


def test_another_value_type_is_refused_with_both_shapes_named():
    with pytest.raises(TypeError, match="tuple of dicts .ipywidgets 8. or a dict of files .ipywidgets 7."):
        uploaded_files(b"raw bytes")


def test_an_upload_reaches_the_observer_then_clears_so_the_same_file_can_come_again(photos):
    """On a real FileUpload of the installed version, as the browser delivers files."""
    upload = w.FileUpload(accept="image/*", multiple=False)
    seen = []
    upload.observe(lambda change: seen.append(uploaded_files(change["new"])), names="value")
    name, content = photos[0]
    send_upload(upload, [(name, content, "image/jpeg")])
    assert seen == [[UploadedFile(name, content, "image/jpeg")]]
    clear_upload(upload)
    assert seen[-1] == [] and uploaded_files(upload.value) == []
    send_upload(upload, [(name, content, "image/jpeg")])  # the same file again: the observer fires again
    assert len(seen) == 3 and seen[-1] == seen[0]
    send_upload(upload, [(n, c, "image/jpeg") for n, c in photos[::-1]])
    assert [f.name for f in uploaded_files(upload.value)] == [photos[1][0], photos[0][0]]


def test_the_display_data_is_the_widget_view_in_both_versions():
    box = w.VBox([w.HTML("<b>x</b>")])
    displayed = []
    if IPYWIDGETS_MAJOR < 8:
        box.on_displayed(lambda widget: displayed.append(widget))  # no **kwargs, as Box's own callback
    bundle = widget_bundle(box, include=None, exclude=None)  # as IPython's formatter calls it
    assert bundle[VIEW_MIME]["model_id"] == box.model_id and bundle["text/plain"].startswith("VBox(")
    assert (bundle[VIEW_MIME]["version_major"], bundle[VIEW_MIME]["version_minor"]) == (2, 0)
    assert displayed == ([box] if IPYWIDGETS_MAJOR < 8 else [])


def test_ipython_displays_an_object_that_shows_a_widget_through_widget_bundle():
    """What a notebook cell ending in ``explorer`` does: IPython's formatter asks for the bundle."""
    from IPython.core.formatters import DisplayFormatter

    class Shows:
        def __init__(self, widget):
            self.widget = widget

        def _repr_mimebundle_(self, **kwargs):
            return widget_bundle(self.widget, **kwargs)

    box = w.VBox([w.Button(description="b")])
    data, _ = DisplayFormatter().format(Shows(box))
    assert data[VIEW_MIME]["model_id"] == box.model_id
