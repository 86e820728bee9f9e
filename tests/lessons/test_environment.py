import pandas as pd
import pytest

import cbir_tutorial.models.backbones as backbones_module
import cbir_tutorial.data.loaders as data_module
from cbir_tutorial import __version__
import cbir_tutorial.lessons.environment as environment_module
from cbir_tutorial.lessons.environment import (environment_summary, github_repository, imagenet_weights_on_disk,
                                               install_command, internet_reachable, running_on, setup_advice)


@pytest.mark.parametrize("environ, modules, expected", [
    ({}, {}, "local"),
    ({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, {}, "kaggle"),
    ({"KAGGLE_URL_BASE": "https://www.kaggle.com"}, {}, "kaggle"),
    ({"COLAB_RELEASE_TAG": "release-colab_20261120-060000_RC00"}, {}, "colab"),
    ({}, {"google.colab": object()}, "colab"),
])
def test_running_on(environ, modules, expected):
    assert running_on(environ, modules) == expected


def test_running_on_this_machine_is_local(monkeypatch):
    for name in ("KAGGLE_KERNEL_RUN_TYPE", "KAGGLE_URL_BASE", "COLAB_RELEASE_TAG", "COLAB_GPU"):
        monkeypatch.delenv(name, raising=False)
    assert running_on() == "local"


def test_install_command():
    assert install_command("local").startswith('pip install -e ".[dev]"')
    assert install_command("colab", repository=None) == (
        f"pip install --quiet cbir_tutorial-{__version__}-py3-none-any.whl   "
        "# upload the wheel first: python -m build makes it in dist/")
    assert install_command("colab") == install_command("colab", repository=github_repository())
    assert install_command("kaggle", repository="me/cbir-tutorial") == \
        'pip install --quiet "git+https://github.com/me/cbir-tutorial"'
    with pytest.raises(ValueError, match="where='laptop'"):
        install_command("laptop")


def test_github_repository_comes_from_the_installed_metadata(monkeypatch):
    import importlib.metadata

    class Metadata(dict):
        def get_all(self, key):
            return self[key]

    urls = ["Homepage, https://example.org", "Repository, https://github.com/me/cbir-tutorial.git"]
    monkeypatch.setattr(importlib.metadata, "metadata", lambda name: Metadata({"Project-URL": urls}))
    assert github_repository() == "me/cbir-tutorial"
    assert install_command("kaggle") == 'pip install --quiet "git+https://github.com/me/cbir-tutorial"'
    monkeypatch.setattr(importlib.metadata, "metadata", lambda name: Metadata({"Project-URL": urls[:1]}))
    assert github_repository() is None


def test_environment_summary(monkeypatch, tmp_path):
    import keras
    import tensorflow as tf

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    (tmp_path / "keras" / "models").mkdir(parents=True)
    (tmp_path / "keras" / "models" / backbones_module.BACKBONES["resnet50"].weights_file).write_bytes(b"h5")
    monkeypatch.setattr(data_module, "find_farfetch_root", lambda search=None: tmp_path / "farfetch")
    monkeypatch.setattr(environment_module, "internet_reachable", lambda: False)
    summary = environment_summary()
    assert summary["internet"] is False
    assert summary["tensorflow"] == tf.__version__ and summary["keras"] == keras.__version__
    assert summary["gpu"] == bool(tf.config.list_physical_devices("GPU"))
    assert summary["running on"] == running_on() and summary["install"] == install_command()
    assert summary["farfetch listings"] == str(tmp_path / "farfetch")
    assert summary["imagenet weights on disk"] == "vgg16: no, resnet50: yes, xception: no"
    assert imagenet_weights_on_disk() == {"vgg16": False, "resnet50": True, "xception": False}
    pd.Series(summary)  # one printable table


def test_internet_reachable_is_false_when_nothing_listens():
    import socket

    with socket.socket() as probe:  # a free local port, closed again: connecting is refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert internet_reachable("127.0.0.1", port, timeout=1) is False


def test_internet_reachable_is_true_when_the_host_answers():
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert internet_reachable("127.0.0.1", server.getsockname()[1], timeout=1) is True


@pytest.mark.parametrize("where, internet, gpu, farfetch, expected", [
    ("local", False, False, "not found under /kaggle/input", []),
    ("kaggle", True, True, "/kaggle/input/farfetch-listings", []),
    ("kaggle", False, True, "/kaggle/input/farfetch-listings", ["Internet is off"]),
    ("kaggle", False, True, "not found under /kaggle/input", ["the 770-photo sample's first download", "not attached"]),
    ("kaggle", True, False, "not found under /kaggle/input", ["Settings → Accelerator", "not attached"]),
    ("colab", False, False, "not found under /kaggle/input", ["Runtime → Change runtime type"]),
])
def test_setup_advice(where, internet, gpu, farfetch, expected):
    advice = setup_advice({"running on": where, "internet": internet, "gpu": gpu, "farfetch listings": farfetch})
    assert len(advice) == len(expected)
    for line, words in zip(advice, expected):
        assert words in line


@pytest.mark.parametrize("where", ["kaggle", "colab"])
def test_the_gpu_advice_names_the_notebooks_that_need_one_and_never_asks_to_rerun_this_one(where):
    advice = setup_advice({"running on": where, "internet": True, "gpu": False,
                           "farfetch listings": "/kaggle/input/farfetch-listings"})
    assert len(advice) == 1 and "no GPU" in advice[0]
    assert "1 to 4 and 9 need none" in advice[0] and "5 to 8 and 10" in advice[0]
    assert "run the notebook again" not in advice[0]
