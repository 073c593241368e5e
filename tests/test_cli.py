"""The core CLI: train, recommend, similar; errors are one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from musicrec.cli import main, print_table


@pytest.fixture
def logs_csv(tmp_path: Path) -> Path:
    rows = [(f"u{u}", f"t{t}", 1 + (u * t) % 4) for u in range(30) for t in range(12)
            if (t % 3) == (u % 3)]
    path = tmp_path / "plays.csv"
    pd.DataFrame(rows, columns=["listener", "song", "n"]).to_csv(path, index=False)
    return path


@pytest.fixture
def model_dir(logs_csv: Path, tmp_path: Path) -> Path:
    out = tmp_path / "model"
    code = main(["train", "--interactions", str(logs_csv), "--user-col", "listener",
                 "--track-col", "song", "--weight-col", "n", "--out", str(out),
                 "--factors", "4", "--iterations", "5"])
    assert code == 0
    return out


def test_train_writes_a_model_directory(model_dir: Path) -> None:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["kind"] == "cf"
    counts = manifest["counts"]
    assert (counts["users"], counts["tracks"], counts["interactions"]) == (30, 12, 120)
    assert manifest["cf"]["factors"] == 4
    assert manifest["data"]["interactions"]["rows_read"] == 120
    assert {"manifest.json", "cf", "catalog.parquet", "items.npy", "index"} <= {
        p.name for p in model_dir.iterdir()}
    assert not list(model_dir.parent.glob(".model.tmp-*"))


def test_recommend_json(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", "--model", str(model_dir), "--user", "u1", "-n", "3",
                 "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 3
    assert all(int(r["track_id"][1:]) % 3 != 1 for r in recs)  # u1 played every t%3==1
    assert {"track_id", "score", "reason", "title"} <= set(recs[0])


def test_recommend_and_similar_tables(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", "--model", str(model_dir), "--user", "u2", "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Top 2 for user u2:") and "listeners of t" in out
    assert main(["similar", "--model", str(model_dir), "--track", "t0", "-n", "2"]) == 0
    assert "Tracks similar to t0:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["recommend", "--user", "ghost"], "musicrec: error: unknown user 'ghost'"),
     (["similar", "--track", "t99"], "musicrec: error: unknown track 't99'")],
)
def test_errors_are_one_line(
    model_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main([argv[0], "--model", str(model_dir), *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert err.strip() == message
    assert "Traceback" not in err


def test_bad_input_file_and_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--interactions", str(tmp_path / "none.csv"), "--out",
                 str(tmp_path / "m")]) == 2
    assert capsys.readouterr().err.strip().endswith("none.csv: file not found")
    assert main(["recommend", "--model", str(tmp_path), "--user", "u"]) == 2
    assert "not a musicrec model (no manifest.json)" in capsys.readouterr().err


def test_refuses_to_overwrite_a_foreign_folder(logs_csv: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.txt").write_text("keep me")
    assert main(["train", "--interactions", str(logs_csv), "--user-col", "listener",
                 "--track-col", "song", "--out", str(out)]) == 2
    assert "is not empty and is not a musicrec model" in capsys.readouterr().err
    assert (out / "thesis.txt").read_text() == "keep me"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["recommend", "--model", "m", "--user", "u", "-n", "0"])
    assert "0 must be at least 1" in str(exc.value.code)
    with pytest.raises(SystemExit):
        main(["frobnicate"])


def test_tables_show_an_undefined_metric_as_n_a(capsys: pytest.CaptureFixture[str]) -> None:
    # novelty under cold-tracks is NaN (undefined), and the console says so as the reports do
    print_table([["hybrid", 0.27524, float("nan")]], ["model", "ndcg@10", "novelty@10"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split() == ["hybrid", "0.2752", "n/a"]
