"""The ``README.md`` written into every built demo dataset."""

from __future__ import annotations

from typing import Any

import pandas as pd

TEMPLATE = """\
# musicrec demo dataset (seed {seed})

{n_tracks} tracks, {n_users} users, {n_rows} log rows ({n_plays} plays).

**The audio is real music, synthesised; the listeners are simulated.** Read this before
drawing conclusions from anything trained or evaluated on it.

## Audio: real compositions rendered through a General MIDI soundfont

- Every track is a 20-30 s excerpt of a real score from the corpus shipped with the
  `music21` package (version {music21}): Renaissance masses and motets, trecento
  polyphony, Monteverdi madrigals, Bach chorales, classical string quartets, a few
  Romantic pieces, and Irish fiddle tunes.
- Each score was parsed by music21 and reduced to a note list (onset, end, pitch,
  velocity and part of every note, ties merged, repeats not expanded, measure boundaries
  and metronome marks kept). An excerpt is a window of whole measures of about 22-28 s;
  its notes were synthesised by `tinysoundfont` ({tinysoundfont}) through the General
  MIDI soundfont `{soundfont}` shipped in `pretty_midi`'s wheel, at {sample_rate} Hz
  mono, and stored as OGG Vorbis. Notes play at the velocity the encoding gives, else
  90; dynamics markings and articulations are not rendered. There are no performers,
  no recording room and no expression: it sounds like a MIDI rendition, not a recording.
- A short tune (10-19 s of music) is played twice, as folk tunes and hymns are
  (`played_twice` in the catalogue). Longer music is cut at 30 s with a 1 s fade.
- A long piece gives up to {per_piece} non-overlapping excerpts: the first at its start,
  the others spread evenly over the rest (`excerpt` numbers them in piece order); an
  opus file gives several tunes, one excerpt each. {n_reused} of the {n_tracks} tracks are
  a second or later excerpt of a piece (`excerpt` > 1), so tracks of the same piece share
  composer, instruments and often key: split train and test sets by `corpus_path` when
  that matters.
- Styles are balanced: each style gets an equal share of the tracks, as far as its
  collections can serve (the Romantic collections are small: their share goes to the
  other styles when they run out). Within a style, pieces are drawn in a seeded random
  order.
- **Instrumentation follows the corpus, not the style label.** Instruments come from each
  score's own parts: music21 gives the Palestrina masses voices, the quartets strings,
  and most folk tunes and chorales piano (`midi_programs` lists the General MIDI programs
  of each track's parts). So a "style" label partly encodes instrumentation: a model can
  tell the collections apart by timbre alone (in a prototype the MIDI programs alone
  predicted the collection 39 % of the time among 8 collections).

Tracks by style:

{style_table}

## Catalogue: `catalog.csv`

`track_id, title, artist, style, key, tempo, duration, audio_path, licence, collection,
corpus_path, tune, excerpt, measure_start, measure_end, played_twice, midi_programs`

- `artist` is the composer, or the collection for anonymous folk tunes.
- `style` is set per corpus collection (see `musicrec.data.demo.corpus`).
- `key` is a Krumhansl-Schmuckler estimate of the excerpt's key (Aarden-Essen profiles,
  as music21's `analyze("key")`; music21 spelling, `-` is a flat); `tempo` is the
  quarter-note BPM in effect at the excerpt's start (120 when the score has no
  metronome mark, as rendered).
- `duration` is in seconds; `audio_path` is relative to this folder.
- `corpus_path` (relative to `music21/corpus`), `tune` (1-based tune of an opus file),
  `measure_start`/`measure_end` (1-based measure indices) locate the excerpt.

## Listening logs: `plays.csv` (simulated)

`user, track, timestamp, plays`: one row per user, track and listening session; `plays`
counts the plays of that track in that session and `timestamp` (UTC, ISO 8601) is the
first of them. **No real person listened to anything here.** The generative model
(parameters in `truth/model.json`):

1. Track popularity is lognormal, `q_t = exp({sigma_pop} z)`, `z ~ N(0, 1)`: a long tail.
2. Each user has a taste over styles, `theta_u ~ Dirichlet({alpha_style})`, and 1-{max_fav}
   favourite artists drawn in proportion to their taste-weighted popularity.
3. A user is light with probability {p_light} (`1 + Poisson({light_sessions})` sessions);
   otherwise they have `1 + Poisson(lambda_u)` sessions, `lambda_u ~ Lognormal(log
   {sessions_median}, {sessions_sigma})`. A session holds `1 + Poisson({session_plays})` plays.
4. Sessions start uniformly over {days} days from 2024-01-01. Each picks a style from the
   user's taste; each play is a favourite artist's track (probability {p_fav}), any track
   (probability {p_explore}) or a track of the session's style, drawn by popularity.
   Plays are 2-6 minutes apart.

## Ground truth: `truth/`

- `users.csv`: `user, light, n_sessions, top_style, favourite_artists` (`|`-separated).
- `tastes.csv`: each user's style taste `theta_u` (one column per style).
- `tracks.csv`: `track_id, style, artist, popularity` (the latent `q_t`), `plays`.
- `skipped.csv`: corpus pieces or excerpts that could not be rendered, and why.
- `model.json`: seed, sizes, listener-model parameters and package versions.

## Licences

- Compositions: public domain. Encodings: the music21 corpus, distributed with music21
  (BSD-3-Clause software) with the encoders' permission; some encodings may be restricted
  to non-commercial use (see `music21/corpus/license.txt`). Check before commercial use.
- Soundfont: `TimGM6mb.sf2` by Tim Brechbill, as shipped with pretty_midi (GPL-2.0).
- The simulated logs and this dataset's tables: generated by musicrec (MIT).

Built with `musicrec demo-data --tracks {n_tracks} --users {n_users} --seed {seed}`.
"""


def render_readme(info: dict[str, Any], catalog: pd.DataFrame) -> str:
    """The dataset's README, filled in from its build information and catalogue."""
    counts = catalog.groupby("style").agg(tracks=("track_id", "size"),
                                          collections=("collection", _join))
    lines = ["| style | tracks | collections |", "| --- | --- | --- |"]
    lines += [f"| {style} | {row.tracks} | {row.collections} |"
              for style, row in counts.iterrows()]
    model = info["listener_model"]
    return TEMPLATE.format(
        seed=info["seed"], n_tracks=info["n_tracks"], n_users=info["n_users"],
        n_rows=info["n_rows"], n_plays=info["n_plays"], n_reused=info["n_reused_pieces"],
        per_piece=info["excerpts_per_piece"],
        sample_rate=info["sample_rate"], soundfont=info["soundfont"],
        music21=info["versions"]["music21"], tinysoundfont=info["versions"]["tinysoundfont"],
        style_table="\n".join(lines), max_fav=model["max_favourite_artists"], **{
            k: model[k] for k in ("sigma_pop", "alpha_style", "p_light", "light_sessions",
                                  "sessions_median", "sessions_sigma", "session_plays",
                                  "days", "p_fav", "p_explore")},
    )


def _join(values: pd.Series) -> str:
    return ", ".join(sorted(set(values)))
