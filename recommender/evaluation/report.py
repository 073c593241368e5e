"""Evaluation reports: versioned JSON, Markdown, and a self-contained HTML page.

:func:`write_report` writes into one directory:

``report.json``
    The machine-readable result, schema ``musicrec.evaluation`` version
    :data:`SCHEMA_VERSION`; :func:`validate_report` checks a payload against it.
``per_user.parquet``
    One row per (model, test user): ``model, user_id`` and one column per metric
    (``ndcg@10``, ``novelty@10``, ...), so any comparison can be recomputed.
``report.md``
    The tables of the JSON in Markdown.
``report.html``
    The same tables plus matplotlib plots embedded as base64 PNG: each accuracy metric
    against k per model, a histogram of per-user popularity bias per model, and the
    hybrid's α sweep when one is given.

The JSON schema, version 1 (a field is never removed or retyped within a version;
new optional fields may appear)::

    {
      "schema": "musicrec.evaluation", "schema_version": 1,
      "created": ISO-8601 UTC str, "musicrec_version": str,
      "data": {"source": str, "fingerprint": str, "n_users": int, "n_tracks": int,
               "n_interactions": int, "has_timestamps": bool},
      "protocol": {"name": str, "params": {str: number|str}, "n_train": int,
                   "n_test": int, "n_test_users": int, "ranked_tracks": int,
                   "candidates": "catalogue" | "cold-tracks"},
      "ks": [int], "metrics": [str], "primary_metric": str, "reference": str | null,
      "bootstrap": {"n_resamples": int, "seed": int, "confidence": float, "method": str},
      "models": [{"name": str, "status": "ok" | "skipped", "message": str,
                  "params": {...}, "fit_seconds": float, "score_seconds": float,
                  "metrics": {"ndcg@10": {"mean": float, "ci_low": float,
                                          "ci_high": float}, ...},
                  "coverage": {"coverage@10": float, ...}}],
      "comparisons": [{"model": str, "reference": str, "metric": str,
                       "mean_diff": float, "ci_low": float, "ci_high": float,
                       "p_wilcoxon": float, "p_ttest": float, "n_users": int}],
      "alpha_sweep": null | [{"alpha": float, "metric": str, "value": float}],
      "files": {"per_user": str, "markdown": str, "html": str}
    }

``models[].metrics`` holds every accuracy metric and ``novelty@k``,
``popularity_bias@k`` and (with content vectors) ``diversity@k``; NaN is written as null.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musicrec.errors import ModelFormatError, ParameterError
from musicrec.recommender.evaluation.runner import EvaluationResult

SCHEMA = "musicrec.evaluation"
SCHEMA_VERSION = 1


def _num(x: Any) -> Any:
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def report_payload(
    result: EvaluationResult,
    *,
    alpha_sweep: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The JSON-ready dict of a result (see the module docstring for the schema)."""
    from musicrec import __version__

    models = []
    for m in result.models:
        entry: dict[str, Any] = {"name": m.name, "status": m.status, "message": m.message,
                                 "params": {k: _num(v) for k, v in m.params.items()},
                                 "fit_seconds": round(m.fit_seconds, 3),
                                 "score_seconds": round(m.score_seconds, 3),
                                 "metrics": {}, "coverage": {}}
        if m.status == "ok":
            ci = result.intervals[m.name]
            entry["metrics"] = {
                key: {"mean": _num(float(np.nanmean(v))) if not np.isnan(v).all() else None,
                      "ci_low": _num(ci[key][0]), "ci_high": _num(ci[key][1])}
                for key, v in m.per_user.items()}
            entry["coverage"] = {k: _num(v) for k, v in m.coverage.items()}
        models.append(entry)
    sweep = None
    if alpha_sweep is not None:
        sweep = _check_sweep(alpha_sweep)
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "musicrec_version": __version__,
        "data": {k: _num(v) for k, v in result.data.items()},
        "protocol": {"name": result.protocol, "params": result.split_params,
                     "n_train": result.n_train, "n_test": result.n_test,
                     "n_test_users": int(len(result.test_users)),
                     "ranked_tracks": result.n_candidates, "candidates": result.candidates,
                     "split_sha256": result.split_sha256},
        "ks": list(result.ks),
        "metrics": list(result.metrics),
        "primary_metric": result.primary_metric,
        "reference": result.reference,
        "bootstrap": result.bootstrap,
        "models": models,
        "comparisons": [{k: _num(v) for k, v in c.items()} for c in result.comparisons],
        "alpha_sweep": sweep,
        "files": {"per_user": "per_user.parquet", "markdown": "report.md",
                  "html": "report.html"},
    }


def _check_sweep(sweep: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for i, row in enumerate(sweep):
        try:
            rows.append({"alpha": float(row["alpha"]), "metric": str(row["metric"]),
                         "value": _num(float(row["value"]))})
        except (KeyError, TypeError, ValueError):
            raise ParameterError(
                f"alpha_sweep row {i} ({dict(row)!r}) needs numeric 'alpha' and 'value' and "
                "a 'metric' name") from None
    return rows


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema": str, "schema_version": int, "created": str, "musicrec_version": str,
    "data": dict, "protocol": dict, "ks": list, "metrics": list, "primary_metric": str,
    "bootstrap": dict, "models": list, "comparisons": list, "files": dict,
}
_MODEL_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str, "status": str, "message": str, "params": dict,
    "fit_seconds": (int, float), "score_seconds": (int, float), "metrics": dict,
    "coverage": dict,
}
_COMPARISON_KEYS = ("model", "reference", "metric", "mean_diff", "ci_low", "ci_high",
                    "p_wilcoxon", "p_ttest", "n_users")


def validate_report(payload: Mapping[str, Any]) -> None:
    """Check a ``report.json`` payload against schema version 1.

    Raises
    ------
    ModelFormatError
        Naming the first missing or mistyped field.
    """
    if payload.get("schema") != SCHEMA:
        raise ModelFormatError(f"schema={payload.get('schema')!r} is not {SCHEMA!r}")
    if payload.get("schema_version") != SCHEMA_VERSION:
        raise ModelFormatError(f"schema_version={payload.get('schema_version')!r} is not "
                               f"{SCHEMA_VERSION} (this musicrec reads version 1)")
    for key, typ in _REQUIRED.items():
        if not isinstance(payload.get(key), typ):
            raise ModelFormatError(f"report field {key!r} is missing or not {typ}")
    for key in ("name", "params", "n_train", "n_test", "n_test_users", "ranked_tracks",
                "candidates"):
        if key not in payload["protocol"]:
            raise ModelFormatError(f"report field 'protocol.{key}' is missing")
    for i, model in enumerate(payload["models"]):
        for key, typ in _MODEL_KEYS.items():
            if not isinstance(model.get(key), typ):
                raise ModelFormatError(f"report field 'models[{i}].{key}' is missing or "
                                       f"not {typ}")
        if model["status"] not in ("ok", "skipped"):
            raise ModelFormatError(f"models[{i}].status={model['status']!r} is not ok/skipped")
        for metric, stats in model["metrics"].items():
            if set(stats) != {"mean", "ci_low", "ci_high"}:
                raise ModelFormatError(f"models[{i}].metrics[{metric!r}] needs mean, ci_low, "
                                       "ci_high")
    for i, cmp in enumerate(payload["comparisons"]):
        for key in _COMPARISON_KEYS:
            if key not in cmp:
                raise ModelFormatError(f"report field 'comparisons[{i}].{key}' is missing")
    sweep = payload.get("alpha_sweep")
    if sweep is not None and not isinstance(sweep, list):
        raise ModelFormatError("report field 'alpha_sweep' must be null or a list")


# -- writing ------------------------------------------------------------------------------
def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def per_user_frame(result: EvaluationResult) -> Any:
    """The per-user values as a long-by-model frame: ``model, user_id, <metric>...``."""
    import pandas as pd

    frames = []
    for m in result.evaluated:
        frame = pd.DataFrame({"model": m.name, "user_id": result.user_ids})
        for key, values in m.per_user.items():
            frame[key] = values
        frames.append(frame)
    if not frames:
        return pd.DataFrame({"model": [], "user_id": []})
    return pd.concat(frames, ignore_index=True)


def write_report(
    result: EvaluationResult,
    directory: str | Path,
    *,
    alpha_sweep: Sequence[Mapping[str, Any]] | None = None,
    title: str | None = None,
) -> dict[str, Path]:
    """Write ``report.json``, ``per_user.parquet``, ``report.md``, ``report.html`` and,
    when the result holds its split, ``split.parquet`` (the held-out pairs, whose
    sha256 the report records as ``protocol.split_sha256``).

    Parameters
    ----------
    result : EvaluationResult
    directory : str or Path
        Created if needed; existing report files in it are replaced (each atomically).
    alpha_sweep : sequence of mappings, optional
        The hybrid's blend sweep, rows ``{"alpha": a, "metric": "ndcg@10", "value": v}``
        (e.g. from :func:`musicrec.recommender.evaluation.tune.sweep_parameter`).
    title : str, optional

    Returns
    -------
    dict
        The written paths by kind (``json``, ``per_user``, ``markdown``, ``html``,
        ``split``).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = report_payload(result, alpha_sweep=alpha_sweep)
    validate_report(payload)
    title = title or f"musicrec evaluation: {result.protocol} on {Path(result.data['source']).name}"
    paths = {"json": directory / "report.json", "per_user": directory / "per_user.parquet",
             "markdown": directory / "report.md", "html": directory / "report.html"}
    _atomic_write(paths["json"], json.dumps(payload, indent=2, allow_nan=False).encode())
    buffer = io.BytesIO()
    per_user_frame(result).to_parquet(buffer, index=False)
    _atomic_write(paths["per_user"], buffer.getvalue())
    _atomic_write(paths["markdown"], render_markdown(payload, title=title).encode())
    _atomic_write(paths["html"], render_html(payload, result, title=title).encode())
    if result.split is not None:
        paths["split"] = directory / "split.parquet"
        buffer = io.BytesIO()
        result.split.test_frame().to_parquet(buffer, index=False)
        _atomic_write(paths["split"], buffer.getvalue())
    return paths


def _f(x: Any, digits: int = 4) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        if x != 0 and abs(x) < 10 ** -digits:
            return f"{x:.1e}"
        return f"{x:.{digits}f}"
    return str(x)


def _tables(payload: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(caption, header, rows) of every table, shared by Markdown and HTML."""
    tables = []
    ok = [m for m in payload["models"] if m["status"] == "ok"]
    for k in payload["ks"]:
        header = ["model", *[f"{m}@{k}" for m in payload["metrics"]], f"coverage@{k}",
                  f"novelty@{k}", f"popularity_bias@{k}"]
        if ok and f"diversity@{k}" in ok[0]["metrics"]:
            header.append(f"diversity@{k}")
        rows = []
        for m in payload["models"]:
            if m["status"] != "ok":
                rows.append([m["name"], *["skipped"] * (len(header) - 1)])
                continue
            row = [m["name"]]
            for col in header[1:]:
                if col.startswith("coverage@"):
                    row.append(_f(m["coverage"][col]))
                else:
                    row.append(_f(m["metrics"][col]["mean"]))
            rows.append(row)
        tables.append((f"Means at k={k}", header, rows))
    primary = payload["primary_metric"]
    rows = []
    for m in ok:
        s = m["metrics"][primary]
        rows.append([m["name"], _f(s["mean"]), f"[{_f(s['ci_low'])}, {_f(s['ci_high'])}]",
                     _f(m["fit_seconds"], 1), _f(m["score_seconds"], 1)])
    conf = int(round(100 * payload["bootstrap"]["confidence"]))
    tables.append((f"{primary} with {conf} % bootstrap intervals",
                   ["model", primary, f"{conf} % CI", "fit s", "ranking s"], rows))
    rows = [[c["model"], c["reference"], _f(c["mean_diff"]),
             f"[{_f(c['ci_low'])}, {_f(c['ci_high'])}]", _f(c["p_wilcoxon"], 3),
             _f(c["p_ttest"], 3)]
            for c in payload["comparisons"] if c["metric"] == primary]
    tables.append((f"Paired differences in {primary} against {payload['reference']} "
                   f"(model − reference)",
                   ["model", "reference", "Δ mean", f"{conf} % CI", "p (Wilcoxon)",
                    "p (t-test)"], rows))
    skipped = [[m["name"], m["message"]] for m in payload["models"] if m["status"] != "ok"]
    if skipped:
        tables.append(("Skipped models", ["model", "why"], skipped))
    if payload.get("alpha_sweep"):
        tables.append(("Hybrid α sweep", ["alpha", "metric", "value"],
                       [[_f(r["alpha"], 3), r["metric"], _f(r["value"])]
                        for r in payload["alpha_sweep"]]))
    return tables


def _describe(payload: Mapping[str, Any]) -> list[str]:
    p = payload["protocol"]
    d = payload["data"]
    params = ", ".join(f"{k}={v}" for k, v in p["params"].items())
    return [
        f"Data: `{d['source']}` ({d['n_users']} users, {d['n_tracks']} tracks, "
        f"{d['n_interactions']} interactions; sha256 {d['fingerprint'][:12]}…).",
        f"Protocol: **{p['name']}** ({params}): {p['n_train']} training and {p['n_test']} "
        f"test interactions, {p['n_test_users']} test users, ranking {p['ranked_tracks']} "
        f"tracks ({p['candidates']}) with each user's training tracks excluded.",
        f"Intervals: {payload['bootstrap']['method']}, "
        f"{payload['bootstrap']['n_resamples']} resamples, seed {payload['bootstrap']['seed']}; "
        "p-values: two-sided Wilcoxon signed-rank and paired t-test.",
    ]


def render_markdown(payload: Mapping[str, Any], *, title: str) -> str:
    """The report as Markdown."""
    lines = [f"# {title}", "", *(f"{x}  " for x in _describe(payload)), ""]
    for caption, header, rows in _tables(payload):
        lines += [f"## {caption}", "", "| " + " | ".join(header) + " |",
                  "| " + " | ".join("---" for _ in header) + " |"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    lines.append(f"Generated {payload['created']} by musicrec {payload['musicrec_version']} "
                 f"(report schema {payload['schema']} v{payload['schema_version']}).")
    return "\n".join(lines) + "\n"


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def render_plots(
    payload: Mapping[str, Any], result: EvaluationResult | None
) -> list[tuple[str, str]]:
    """(caption, base64 PNG) of each plot; matplotlib's object API, no global state."""
    from matplotlib.figure import Figure

    plots = []
    ok = [m for m in payload["models"] if m["status"] == "ok"]
    ks = payload["ks"]
    metric_names = payload["metrics"]
    fig = Figure(figsize=(4 * min(3, len(metric_names)),
                          3.2 * math.ceil(len(metric_names) / 3)))
    for i, metric in enumerate(metric_names):
        ax = fig.add_subplot(math.ceil(len(metric_names) / 3), min(3, len(metric_names)), i + 1)
        for m in ok:
            ax.plot(ks, [m["metrics"][f"{metric}@{k}"]["mean"] for k in ks], marker="o",
                    label=m["name"])
        ax.set_xlabel("k")
        ax.set_title(f"{metric}@k")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=8)
    fig.tight_layout()
    plots.append(("Accuracy against k, per model", _png(fig)))
    if result is not None and any(np.isfinite(m.per_user[f"popularity_bias@{ks[0]}"]).any()
                                  for m in result.evaluated):
        k = ks[0]
        fig = Figure(figsize=(7, 3.5))
        ax = fig.add_subplot(1, 1, 1)
        bins = np.linspace(0, 100, 41).tolist()
        for m in result.evaluated:
            values = m.per_user[f"popularity_bias@{k}"]
            if np.isfinite(values).any():
                ax.hist(values[~np.isnan(values)], bins=bins, alpha=0.5, label=m.name)
        ax.set_xlabel(f"mean popularity percentile of a user's top {k}")
        ax.set_ylabel("users")
        ax.legend(fontsize=8)
        plots.append((f"Popularity bias per user (k={k})", _png(fig)))
    if payload.get("alpha_sweep"):
        fig = Figure(figsize=(6, 3.5))
        ax = fig.add_subplot(1, 1, 1)
        for metric in sorted({r["metric"] for r in payload["alpha_sweep"]}):
            rows = sorted((r for r in payload["alpha_sweep"] if r["metric"] == metric),
                          key=lambda r: r["alpha"])
            ax.plot([r["alpha"] for r in rows], [r["value"] for r in rows], marker="o",
                    label=metric)
        ax.set_xlabel("α (weight of the content score)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        plots.append(("Hybrid α sweep", _png(fig)))
    return plots


def render_html(payload: Mapping[str, Any], result: EvaluationResult | None, *,
                title: str) -> str:
    """A self-contained HTML page: tables plus base64 PNG plots, no external resources."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%}.scroll{overflow-x:auto}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        *(f"<p>{e(x).replace('**', '')}</p>" for x in _describe(payload)),
    ]
    for caption, header, rows in _tables(payload):
        parts.append(f"<h2>{e(caption)}</h2><div class='scroll'><table><tr>"
                     + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table></div>")
    for caption, png in render_plots(payload, result):
        parts.append(f"<h2>{e(caption)}</h2><img alt='{e(caption)}' "
                     f"src='data:image/png;base64,{png}'>")
    parts.append(f"<p><small>Generated {e(payload['created'])} by musicrec "
                 f"{e(payload['musicrec_version'])}.</small></p></body></html>")
    return "\n".join(parts) + "\n"


def load_report(path: str | Path) -> dict[str, Any]:
    """Read and validate a ``report.json``."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"{path}: not a readable report ({exc})") from None
    validate_report(payload)
    return payload
