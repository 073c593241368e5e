"""Reference outputs of musicnn's original TensorFlow code, for tests/test_embedding_musicnn.py.

Run once in a throwaway environment that has TensorFlow (not a musicrec dependency)::

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install "tensorflow-cpu==2.15.*" "numpy<2" librosa soundfile soxr
    /tmp/tfenv/bin/pip install --no-deps musicnn==0.1.0
    /tmp/tfenv/bin/python benchmarks/musicnn_tf_reference.py \\
        --audio ../shared/datasets/librosa-audio --out tests/data/musicnn_reference.json

For two inputs (a synthetic 10-s signal defined by a formula, and librosa's "Pistachio Ice
Cream Ragtime" decoded with soundfile and resampled to 16 kHz by soxr HQ) it writes a
16-kHz float WAV, runs ``musicnn.extractor.extractor`` on it with each of the four models,
and stores the mean over 3-s patches of the tag probabilities (the taggram), and the first
patch's tags and penultimate features (``penultimate`` for musicnn, ``pool5`` for vgg).
Under numpy < 2 musicnn's ``10000 * float16`` preprocessing is computed in float32, so
these are the outputs the models were meant to give.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

MODELS = {"MTT_musicnn": "musicnn-mtt", "MSD_musicnn": "musicnn-msd",
          "MTT_vgg": "musicnn-mtt-vgg", "MSD_vgg": "musicnn-msd-vgg"}
RAGTIME = "442789__lena-orsa__happy-music-pistachio-ice-cream-ragtime.ogg"


def synthetic(sr: int = 16000, seconds: float = 10.0) -> np.ndarray:
    """The synthetic input (the test builds the same array)."""
    t = np.arange(int(sr * seconds)) / sr
    x = (0.3 * np.sin(2 * np.pi * 220 * t)
         + 0.2 * np.sin(2 * np.pi * 440 * t + 3 * np.sin(2 * np.pi * 0.5 * t))
         + 0.15 * (np.sin(2 * np.pi * 2 * t) > 0.9) * np.sin(2 * np.pi * 1500 * t))
    return x.astype(np.float32)


def decode(path: Path) -> np.ndarray:
    import soundfile as sf
    import soxr

    wave, rate = sf.read(path, dtype="float32", always_2d=True)
    return soxr.resample(wave.mean(axis=1), rate, 16000, quality="HQ").astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import soundfile as sf
    import tensorflow as tf
    from musicnn.extractor import extractor

    inputs = {"synthetic": synthetic(), "ragtime": decode(args.audio / RAGTIME)}
    out: dict = {"tensorflow": tf.__version__, "numpy": np.__version__, "inputs": {}}
    for key, wave in inputs.items():
        fd, name = tempfile.mkstemp(suffix=".wav")
        os.close(fd)
        sf.write(name, wave, 16000, subtype="FLOAT")
        out["inputs"][key] = {"samples": len(wave)}
        for model, spec in MODELS.items():
            taggram, _, feats = extractor(name, model=model, extract_features=True)
            feat = (np.asarray(feats["penultimate"]) if "musicnn" in model
                    else np.asarray(feats["pool5"]).reshape(len(taggram), -1))
            # extractor() repeats the first patch's penultimate for every later patch
            # (it concatenates a stale variable), so only the first patch's is kept.
            out["inputs"][key][spec] = {
                "tags": [round(float(v), 7) for v in taggram.mean(axis=0)],
                "first_patch_features": [round(float(v), 6) for v in feat[0]],
                "first_patch_tags": [round(float(v), 7) for v in taggram[0]],
                "patches": len(taggram),
            }
        os.unlink(name)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
