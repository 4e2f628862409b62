"""`optnas report`: PNG plots, an HTML page and study artifacts from a study with known contents."""

from __future__ import annotations

import json
import struct
import threading
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import matplotlib.image
import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta
from optuna.distributions import IntDistribution

from optnas.studies.dashboard import make_app
from optnas.studies.report import iteration_figures, write_report
from tests.conftest import invoke_cli

# (top1 %, avg_macs M, exit ratios): a front of three plus one dominated trial.
POINTS = [(90.0, 30.0, [0.1, 0.2, 0.7]), (85.0, 20.0, [0.5, 0.3, 0.2]), (70.0, 10.0, [0.8, 0.1, 0.1]),
          (60.0, 25.0, [0.3, 0.3, 0.4])]


@pytest.fixture
def study(tmp_path: Path) -> optuna.Study:
    study = optuna.create_study(study_name="rep", storage=f"sqlite:///{tmp_path / 'rep.db'}",
                                directions=["maximize", "minimize"])
    study.set_metric_names(["top1", "avg_macs"])
    study.set_user_attr("artifact_dir", str(tmp_path / "artifacts"))
    for index, (top1, avg_macs, ratios) in enumerate(POINTS):
        study.add_trial(optuna.trial.create_trial(
            params={"x": index}, distributions={"x": IntDistribution(0, 10)}, values=[top1, avg_macs],
            user_attrs={"top1": top1, "avg_macs": avg_macs, "exit_ratios": ratios,
                        "subnet": {"d": [2] * 5, "exits": [1, 1, 0, 0], "n": index}},
        ))
    for iteration, (hv, tau) in enumerate([(0.2, None), (0.3, 0.4), (0.35, 0.8)]):
        figures = {"iteration": iteration, "hv": hv}
        if tau is not None:
            figures["predictor"] = {"kendall_tau": tau, "rmse": 1.0, "n": 4, "winner": "rbf"}
        study.set_user_attr(f"iteration:{iteration:04d}", figures)
    return study


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.cells: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag not in ("meta", "br"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data: str) -> None:
        if self.open and self.open[-1] == "td":
            self.cells.append(data)


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def test_report_writes_valid_plots_and_page_and_attaches_them(study: optuna.Study, tmp_path: Path) -> None:
    assert [f["iteration"] for f in iteration_figures(study)] == [0, 1, 2]
    report = write_report(study, tmp_path / "out", n=2, prefer="avg_macs")
    assert report["plots"] == ["pareto.png", "hypervolume.png", "predictor_tau.png", "exit_ratios.png"]
    assert report["chosen"] == [0, 2]
    for name in report["plots"]:
        width, height = _png_size(tmp_path / "out" / name)
        assert width > 300 and height > 200
        assert matplotlib.image.imread(tmp_path / "out" / name).shape[:2] == (height, width)
    page = _Page()
    page.feed((tmp_path / "out" / "index.html").read_text())
    page.close()
    assert page.images == report["plots"] and page.open == []
    assert page.cells[:4] == ["0", "most accurate", "90", "30"]
    attached = sorted(meta.filename for meta in get_all_artifact_meta(study))
    assert attached == sorted(report["plots"]) and report["uploaded"] == report["plots"]
    # Identical plots are not attached twice.
    assert write_report(study, tmp_path / "out", n=2, prefer="avg_macs")["uploaded"] == []
    assert len(get_all_artifact_meta(study)) == 4
    assert sorted(_dashboard_artifacts(f"sqlite:///{tmp_path / 'rep.db'}")) == sorted(report["plots"])


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _dashboard_artifacts(url: str) -> list[str]:
    """The study artifacts optuna-dashboard lists, as `optnas dashboard` serves it."""
    server = make_server("127.0.0.1", 0, make_app(url), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        study_id = json.load(urllib.request.urlopen(f"{base}/api/studies"))["study_summaries"][0]["study_id"]
        detail = json.load(urllib.request.urlopen(f"{base}/api/studies/{study_id}"))
        return [artifact["filename"] for artifact in detail["artifacts"]]
    finally:
        server.shutdown()


def test_report_command(study: optuna.Study, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rep.db'}"
    result = invoke_cli("report", "--study-name", "rep", "--storage", url, "--out", str(tmp_path / "r"), "--no-upload")
    assert result.returncode == 0, result.stderr
    assert "chosen trials [0, 1, 2]" in result.stdout and (tmp_path / "r" / "pareto.png").is_file()
    assert get_all_artifact_meta(study) == []
    bad = invoke_cli("report", "--study-name", "nope", "--storage", url, "--out", str(tmp_path / "r"))
    assert bad.returncode == 2 and "no study named 'nope'" in bad.stderr
