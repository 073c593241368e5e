"""The Whisper encoder alone, in each arithmetic: seconds per 3-s window and fidelity.

Compares, on the same windows in the same run: torch float32, torch bfloat16 (the
default where the CPU has it natively), torch's int8 dynamic quantisation, and, when
``onnxruntime``, ``onnx`` and ``onnxscript`` are installed (they are not dependencies of
musicrec), ONNX Runtime float32 and its int8 dynamic quantisation of the same truncated
encoder. Fidelity is the lowest cosine between a window's mean-pooled vector and
float32's.

Usage::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_encoder.py [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cf import median_seconds  # noqa: E402
from bench_embed import AUDIO, recordings  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16, help="windows per forward pass")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args(argv)
    import torch

    from musicrec.embedding.registry import get_embedder

    torch.set_num_threads(args.threads)
    f32 = get_embedder("whisper-tiny", precision="float32")
    windows = [w for p in recordings(AUDIO) for w in f32.load(p).windows][:args.batch]
    waves = torch.from_numpy(np.stack([np.pad(w, (0, f32._samples - len(w)))
                                       for w in windows]))
    with torch.inference_mode():
        mel = f32._mel(waves)
    reference = None
    rows = []

    def record(name: str, run) -> None:  # type: ignore[no-untyped-def]
        nonlocal reference
        with torch.inference_mode():
            pooled = np.asarray(run(), dtype=np.float32).mean(axis=1)
            seconds = median_seconds(run, args.repeats)  # run() above warmed up
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
        if reference is None:
            reference = pooled
        rows.append({"backend": name, "s_per_window": round(seconds / len(windows), 5),
                     "min_cosine_vs_float32": round(float(np.min(np.sum(
                         pooled * reference, axis=1))), 5)})

    record("torch float32", lambda: f32._forward(mel).float().numpy())
    b16 = get_embedder("whisper-tiny", precision="bfloat16")
    record("torch bfloat16", lambda: b16._forward(mel).float().numpy())
    q8 = get_embedder("whisper-tiny", precision="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates torch.ao.quantization
        q8._encoder = torch.ao.quantization.quantize_dynamic(
            q8._encoder, {torch.nn.Linear}, dtype=torch.qint8)
    record("torch int8 dynamic", lambda: q8._forward(mel).float().numpy())
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        print("onnxruntime is not installed: ONNX Runtime rows skipped", file=sys.stderr)
    else:
        class Encoder(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder = f32._encoder

            def forward(self, features):  # type: ignore[no-untyped-def]
                return f32._forward(features)

        with tempfile.TemporaryDirectory() as tmp:
            fp, q = f"{tmp}/encoder.onnx", f"{tmp}/encoder.int8.onnx"
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(Encoder().eval(), (mel.clone(),), fp, dynamo=False,
                                  input_names=["mel"], output_names=["hidden"],
                                  dynamic_axes={"mel": {0: "batch"}}, opset_version=17)
            quantize_dynamic(fp, q, weight_type=QuantType.QInt8)
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            feed = {"mel": mel.numpy()}
            for name, path in (("onnxruntime float32", fp), ("onnxruntime int8 dynamic", q)):
                session = ort.InferenceSession(path, options,
                                               providers=["CPUExecutionProvider"])
                record(name, lambda s=session: s.run(None, feed)[0])
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
