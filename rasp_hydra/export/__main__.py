"""``python -m rasp_hydra.export RUN_DIR --to lens --out FILE``: a run's model for other tools.

Checks the exported model against the run's own on sequences of the task's test split
before anything is written; a model that differs by more than the tolerance is not written.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence

import torch

from rasp_hydra.errors import UserError

TOLERANCE = 1e-5


def max_difference(encoder, lens_model, split) -> float:
    """The largest |logit difference| at the real positions of a split."""
    from rasp_hydra.data import batches
    from rasp_hydra.export.lens import lens_logits

    worst = 0.0
    for tokens, lengths, _ in batches(split, 256, shuffle=False):
        with torch.no_grad():
            ours = encoder(tokens, lengths)[0]
        real = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]
        diff = (ours - lens_logits(lens_model, tokens, lengths))[real].abs()
        worst = max(worst, float(diff.max()))
    return worst


def differences(encoder, lens_model, task, sequences: int) -> dict:
    """Logit differences on test sequences: of the exported model as it is, and of both
    models in float64 (the mapping's own error, without float32's rounding)."""
    from rasp_hydra.data import build_split
    from rasp_hydra.export.lens import to_hooked_transformer

    split = build_split(task, sequences, split="test", max_len=encoder.cfg.max_len - task.bos)
    wide = copy.deepcopy(encoder).double()
    return {"as_exported": max_difference(encoder, lens_model, split),
            "float64": max_difference(wide, to_hooked_transformer(wide), split),
            "sequences": len(split)}


def export(run_dir, out, sequences: int = 1000, which: str = "auto") -> dict:
    """Export the run's model to TransformerLens at `out` (and `out`'s .json)."""
    from rasp_hydra.export.lens import check_exportable, lens_config, save, to_hooked_transformer
    from rasp_hydra.runs import NoModelError, open_model

    try:
        encoder, task, _, which = open_model(run_dir, which, "export", "export one of them")
    except NoModelError as e:
        raise UserError(str(e)) from None
    check_exportable(encoder)
    lens_model = to_hooked_transformer(encoder)
    diff = differences(encoder, lens_model, task, sequences)
    if not diff["float64"] <= TOLERANCE:
        raise UserError(f"The exported model's logits differ from the run's by "
                        f"{diff['float64']:.3g} in float64 (more than {TOLERANCE}) on "
                        f"{diff['sequences']} test sequences, so nothing was written. This "
                        "is a bug of the exporter: please report it.")
    files = save(lens_model, lens_config(encoder), out)
    return {"files": files, **diff, "checkpoint": which}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rasp_hydra.export",
        description="Export a run's model (no LayerNorm: a compiled model, or one trained "
                    "with model.norm=none) to TransformerLens, checked against the run's "
                    "own logits first.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory")
    parser.add_argument("--to", choices=("lens",), required=True,
                        help="lens: a TransformerLens HookedTransformer")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="the state dict (torch.save); its config goes to FILE.json")
    parser.add_argument("--sequences", type=int, default=1000,
                        help="test sequences to compare logits on; default 1000")
    parser.add_argument("--which", choices=("auto", "best", "last"), default="auto")
    args = parser.parse_args(argv)
    try:
        res = export(args.run_dir, args.out, args.sequences, args.which)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    weights, config = res["files"]
    print(f"wrote {weights} and {config.name} ({res['checkpoint']} checkpoint); logits "
          f"within {res['as_exported']:.2g} of the run's on {res['sequences']} test "
          f"sequences ({res['float64']:.2g} in float64)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
