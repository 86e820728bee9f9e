"""``python -m cbir_tutorial demo``: the sample indexed, one query, its top 10, MAP@10 and a result grid,
headless, and offline too."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_runs_headless_and_falls_back_offline(tmp_path):
    env = dict(os.environ, KERAS_HOME=str(tmp_path / "keras"), PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "cbir_tutorial", "demo", "--out", str(tmp_path / "demo.png")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout
    if "unavailable (offline?)" in out:  # no internet: one clear line, then the offline backbone
        assert "-> using EfficientNet-Lite0, ImageNet weights (shipped with pip) instead." in out
    assert "Top 10 for" in out and "MAP@10 =" in out
    assert f"Result grid written to {tmp_path / 'demo.png'}" in out and (tmp_path / "demo.png").is_file()
