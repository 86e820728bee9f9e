import pytest

from cbir_tutorial.lessons.parameters import Parameters, env_name, notebook_parameters, parsed_like

DEFAULTS = dict(catalogue="auto", backbones=["vgg16", "resnet50", "xception"], n_images=5000,
                threshold=0.5, pretrained=True, k=10)


def test_defaults_are_in_force_without_variables(capsys):
    params = notebook_parameters(environ={}, **DEFAULTS)
    assert params == DEFAULTS
    assert params.overridden() == []
    assert set(params.sources.values()) == {"default"}
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["parameter", "value", "set", "by"]
    assert set(rows[1]) == {"-", " "}
    assert rows[2].split() == ["catalogue", "'auto'", "default"]
    assert rows[3].split() == ["backbones", "vgg16,", "resnet50,", "xception", "default"]
    assert len(rows) == 2 + len(DEFAULTS)


def test_each_variable_is_parsed_like_its_default():
    environ = {"CBIR_NB_CATALOGUE": "../shared/data/fashion-sample", "CBIR_NB_BACKBONES": " resnet50, ,efficientnet_lite0 ",
               "CBIR_NB_N_IMAGES": " 150", "CBIR_NB_THRESHOLD": "0.25", "CBIR_NB_PRETRAINED": "off", "CBIR_NB_K": "5"}
    params = notebook_parameters(environ=environ, show=False, **DEFAULTS)
    assert params == {"catalogue": "../shared/data/fashion-sample", "backbones": ["resnet50", "efficientnet_lite0"],
                      "n_images": 150, "threshold": 0.25, "pretrained": False, "k": 5}
    assert type(params["n_images"]) is int and type(params["threshold"]) is float
    assert params.sources["k"] == "CBIR_NB_K" and sorted(params.overridden()) == sorted(DEFAULTS)


def test_real_environment_and_table(monkeypatch, capsys):
    monkeypatch.setenv("CBIR_NB_K", "3")
    monkeypatch.delenv("CBIR_NB_N_IMAGES", raising=False)
    params = notebook_parameters(k=10, n_images=5000)
    assert params.k == 3 and params.n_images == 5000
    rows = capsys.readouterr().out.splitlines()
    assert rows[2].split() == ["k", "3", "CBIR_NB_K"]
    assert rows[3].split() == ["n_images", "5000", "default"]
    assert repr(params) == params.table()


@pytest.mark.parametrize("text, expected", [("1", True), ("TRUE", True), (" yes", True), ("on", True),
                                            ("0", False), ("False", False), ("no", False), ("off", False)])
def test_booleans(text, expected):
    assert parsed_like(text, False, "flag") is expected


@pytest.mark.parametrize("default, text, message", [
    (10, "ten", r"CBIR_NB_K='ten': expected an integer"),
    (10, "2.5", r"CBIR_NB_K='2.5': expected an integer"),
    (0.5, "half", r"CBIR_NB_K='half': expected a number"),
    (True, "maybe", r"CBIR_NB_K='maybe': expected a boolean"),
])
def test_values_that_do_not_parse_name_the_variable(default, text, message):
    with pytest.raises(ValueError, match=message):
        notebook_parameters(environ={"CBIR_NB_K": text}, show=False, k=default)


def test_lists_of_numbers_cannot_come_from_the_environment():
    assert notebook_parameters(environ={}, show=False, filters=[16, 32]).filters == [16, 32]
    with pytest.raises(TypeError, match="only lists of strings"):
        notebook_parameters(environ={"CBIR_NB_FILTERS": "8,8"}, show=False, filters=[16, 32])


def test_empty_list_and_none_defaults():
    params = notebook_parameters(environ={"CBIR_NB_EXTRA": "", "CBIR_NB_PATH": "/data"}, show=False,
                                 extra=["x"], path=None)
    assert params.extra == [] and params.path == "/data"


def test_names_and_attribute_errors():
    assert env_name("n_images") == "CBIR_NB_N_IMAGES"
    params = Parameters({"k": 10}, {"k": "default"})
    with pytest.raises(AttributeError, match=r"no parameter 'K'; parameters are \['k'\]"):
        params.K


def test_a_settings_file_gives_its_name_value_lines_and_names_a_bad_line(tmp_path):
    from cbir_tutorial.lessons.parameters import settings_file

    path = tmp_path / "run.env"
    path.write_text("# a comment\n\nCBIR_NB_K=5\n CBIR_NB_BACKBONES = resnet50,vgg16 \nURL=http://x/?a=b\n")
    assert settings_file(path) == {"CBIR_NB_K": "5", "CBIR_NB_BACKBONES": "resnet50,vgg16", "URL": "http://x/?a=b"}
    path.write_text("CBIR_NB_K=5\nnot a setting\n")
    with pytest.raises(ValueError, match=r"run\.env, line 2: expected NAME=value, got 'not a setting'"):
        settings_file(path)


def test_the_test_run_settings_parse_and_set_only_known_variables():
    from pathlib import Path

    from cbir_tutorial.lessons.parameters import settings_file

    settings = settings_file(Path(__file__).resolve().parents[2] / "notebooks" / "test_run.env")
    assert settings["CBIR_NB_WEIGHTS"] == "random" and settings["CBIR_NB_BACKBONE"] == "efficientnet_lite0"
    assert all(name.startswith(("CBIR_", "TF_", "MPL", "TQDM_")) for name in settings), settings


def test_a_value_below_its_bound_stops_the_parameters_cell_with_where_it_came_from():
    params = notebook_parameters(n_photos=0, k=5, show=False, environ={"CBIR_NB_K": "0"})
    params.require_at_least("n_photos", 0)
    with pytest.raises(ValueError, match=r"^n_photos=0 \(in the parameters cell\) must be at least 1: the grids"):
        params.require_at_least("n_photos", 1, "the grids show that many products")
    with pytest.raises(ValueError, match=r"^k=0 \(by CBIR_NB_K\) must be at least 1$"):
        params.require_at_least("k", 1)
