"""The session-continuation protocol: the radio and its baselines on held-out sessions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musicrec.cli import main
from musicrec.data.logs import read_play_events
from musicrec.errors import ParameterError
from musicrec.recommender.evaluation.sessions import (
    METHODS,
    coherence,
    distinct_artists,
    evaluate_sessions,
)

N_TRACKS = 120


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Users listen in sessions inside one of four clusters of 30 tracks (in sound too)."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("sessions")
    ids = [f"t{t:03d}" for t in range(N_TRACKS)]
    cluster = np.arange(N_TRACKS) // 30
    centres = rng.standard_normal((4, 16))
    vectors = centres[cluster] + 0.3 * rng.standard_normal((N_TRACKS, 16))
    np.savez(root / "content.npz", track_ids=np.array(ids), vectors=vectors.astype(np.float32))
    rows = []
    start = pd.Timestamp("2024-01-01T00:00:00Z")
    for u in range(160):
        pool = np.flatnonzero(cluster == u % 4)
        for s in range(3):
            at = start + pd.Timedelta(days=s, hours=u % 24)
            for m, t in enumerate(rng.choice(pool, 6, replace=False)):
                rows.append((f"u{u:03d}", ids[t], (at + pd.Timedelta(minutes=4 * m)).isoformat()))
    pd.DataFrame(rows, columns=["user", "track", "timestamp"]).to_csv(root / "plays.csv",
                                                                      index=False)
    pd.DataFrame({"track_id": ids, "title": [f"Song {t}" for t in range(N_TRACKS)],
                  "artist": [f"Artist {t % 12}" for t in range(N_TRACKS)]}
                 ).to_csv(root / "catalog.csv", index=False)
    return {"root": root, "plays": root / "plays.csv", "content": root / "content.npz",
            "catalog": root / "catalog.csv"}


def test_protocol_on_clustered_sessions(data: dict[str, Path], tmp_path: Path) -> None:
    from musicrec.data.catalog import read_catalog

    with np.load(data["content"]) as arrays:
        ids, vectors = arrays["track_ids"].astype(str).tolist(), arrays["vectors"]
    result = evaluate_sessions(read_play_events(data["plays"]), content_ids=ids,
                               content=vectors, catalog=read_catalog(data["catalog"]),
                               n_bootstrap=200, model_dir=tmp_path / "model")
    assert result.split["n_test"] == 160 and result.split["n_sessions"] == 480
    assert result.methods == list(METHODS)
    for method in METHODS:
        for metric in ("hit_rate", "ndcg", "artists", "coherence"):
            values = result.per_session[method][metric]
            assert values.shape == (160,)
            low, high = result.intervals[method][metric]
            assert low <= result.mean(method, metric) <= high
    # the continuation is in the seeds' cluster: the radio and similar-last find it,
    # popularity does not know the cluster
    assert result.mean("radio", "hit_rate") > 0.75
    assert result.mean("similar-last", "hit_rate") > 0.75
    assert result.mean("popularity", "hit_rate") < result.mean("radio", "hit_rate") - 0.2
    # the radio's artist window: never an artist twice within 4 tracks
    assert result.mean("radio", "artists") >= 7
    assert result.mean("radio", "coherence") > result.mean("popularity", "coherence")
    diffs = {(c["model"], c["metric"]) for c in result.comparisons}
    assert ("popularity", "hit_rate@10") in diffs and len(diffs) == 3 * 4
    paths = result.write(tmp_path / "report")
    payload = json.loads(paths["json"].read_text())
    assert payload["schema"] == "musicrec.sessions" and payload["k"] == 10
    assert payload["results"]["radio"]["hit_rate"]["mean"] == result.mean("radio", "hit_rate")
    assert "| radio |" in paths["md"].read_text()


def test_the_protocol_can_build_with_a_chosen_model(data: dict[str, Path],
                                                    tmp_path: Path) -> None:
    from musicrec.recommender.facade import Recommender
    from musicrec.recommender.served import ServedModel

    with np.load(data["content"]) as arrays:
        ids, vectors = arrays["track_ids"].astype(str).tolist(), arrays["vectors"]
    served = ServedModel(grids={"itemknn": [{"k": 20}]}, blend_weights=[], random_state=0)
    result = evaluate_sessions(read_play_events(data["plays"]), content_ids=ids,
                               content=vectors, methods=["similar-last"], n_bootstrap=50,
                               model_dir=tmp_path / "model", served=served)
    rec = Recommender(tmp_path / "model")
    assert rec.manifest["served"]["choice"]["model"] == "itemknn"
    assert rec.chosen_similarity is not None
    # listeners stay in their cluster: the neighbour lists continue most sessions
    assert result.mean("similar-last", "hit_rate") > 0.8


def test_artists_and_coherence_by_hand(data: dict[str, Path], tmp_path: Path) -> None:
    assert distinct_artists(np.array(["a", "b", "a", "", ""], dtype=object)) == 4

    class Fake:
        content = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 0.0], [0.0, 1.0]])
        has_content = np.array([True, True, False, True])

    # pairs (0,1): 0.6; (1,3): 0.8; (1,2) and (2,3) lack content
    assert coherence(Fake(), np.array([0, 1, 3])) == pytest.approx(0.7)
    assert coherence(Fake(), np.array([0, 1, 2, 3])) == pytest.approx(0.6)
    assert np.isnan(coherence(Fake(), np.array([2, 0])))
    assert np.isnan(coherence(Fake(), np.array([0])))


def test_bad_arguments(data: dict[str, Path]) -> None:
    events = read_play_events(data["plays"])
    with pytest.raises(ParameterError, match="method 'als' is not one of"):
        evaluate_sessions(events, methods=["radio", "als"])
    with pytest.raises(ParameterError, match="k=0 must be an integer"):
        evaluate_sessions(events, k=0)


def test_cli_sessions_protocol(data: dict[str, Path], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["evaluate", "--interactions", str(data["plays"]), "--protocol", "sessions",
                 "--content", str(data["content"]), "--catalog", str(data["catalog"]),
                 "--models", "radio,popularity", "--max-sessions", "40", "--bootstrap", "50",
                 "--report", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == 0
    assert "sessions: 40 held-out sessions of 480 (30-min gaps, 2 seed tracks)" in out
    assert "hit_rate@10" in out and "coherence@10" in out
    assert json.loads((tmp_path / "r" / "report.json").read_text())["split"]["n_test"] == 40
    hetrec = tmp_path / "hetrec"
    hetrec.mkdir()
    assert main(["evaluate", "--interactions", str(hetrec), "--protocol", "sessions",
                 "--report", str(tmp_path / "x")]) == 2
    assert "HetRec 2011 has no play times" in capsys.readouterr().err
