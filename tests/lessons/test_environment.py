import pandas as pd
import pytest

import cbir_tutorial.models.backbones as backbones_module
import cbir_tutorial.data.loaders as data_module
from cbir_tutorial.lessons.environment import (environment_summary, imagenet_weights_on_disk, install_command,
                                               running_on)


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
    assert install_command("colab") == 'pip install --quiet "git+https://github.com/REPO_URL"'
    assert install_command("kaggle", repository="me/cbir-tutorial") == \
        'pip install --quiet "git+https://github.com/me/cbir-tutorial"'
    with pytest.raises(ValueError, match="where='laptop'"):
        install_command("laptop")


def test_environment_summary(monkeypatch, tmp_path):
    import keras
    import tensorflow as tf

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    (tmp_path / "keras" / "models").mkdir(parents=True)
    (tmp_path / "keras" / "models" / backbones_module.BACKBONES["resnet50"].weights_file).write_bytes(b"h5")
    monkeypatch.setattr(data_module, "find_farfetch_root", lambda search=None: tmp_path / "farfetch")
    summary = environment_summary()
    assert summary["tensorflow"] == tf.__version__ and summary["keras"] == keras.__version__
    assert summary["gpu"] == bool(tf.config.list_physical_devices("GPU"))
    assert summary["running on"] == running_on() and summary["install"] == install_command()
    assert summary["farfetch listings"] == str(tmp_path / "farfetch")
    assert summary["imagenet weights on disk"] == "vgg16: no, resnet50: yes, xception: no"
    assert imagenet_weights_on_disk() == {"vgg16": False, "resnet50": True, "xception": False}
    pd.Series(summary)  # one printable table
