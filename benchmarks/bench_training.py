"""Fine-tuning (issue 19): training throughput, and the protocols table from the CLI with its defaults.

1. **Throughput**: images per second of one optimiser step (Keras's ``train_on_batch``, the step ``fit``
   takes; warm-up: the backbone's blocks at learning rate 0, their gradients still computed; fine-tune: the
   last blocks move too) and of embedding without gradients, at the CLI preset's batch (P x K) and the
   backbone's input size, for each loss. Steps are timed round-robin after one compiling step each.
2. **Protocols**: ``python -m cbir_tutorial train --catalogue sample --protocol P --loss L --out DIR`` with
   every other setting at the CLI's default, one subprocess per (protocol, loss), timed (wall and CPU
   seconds of the child). Each run chooses its epoch on its own validation split (carved from the train
   side); the test side is seen only by the report (``report.json``): frozen backbone, projection head,
   the fine-tuned model alone and the robust one (fused with the frozen features, the weight chosen on
   categories held out of training), MAP@10 and instance Recall@1/@10 for altered photos. The protocols:
   unseen products, unseen categories and "trained on A, searched on B" (``new-types``: trained on half the
   sample's categories, searched on a catalogue holding the other half too; MAP@10 of seen and unseen types).

    python benchmarks/bench_training.py                   # 3 protocols x 2 losses: ~45-75 min on 2 cores
    python benchmarks/bench_training.py --loss proxy-anchor --protocol unseen-products --protocol new-types
    python benchmarks/bench_training.py --throughput-only # ~2 min
    python benchmarks/bench_training.py --smoke           # tiny sizes: checks the script runs
    # on a GPU (Kaggle/Colab), the GPU preset's batch and mixed precision:
    python benchmarks/bench_training.py --preset gpu --throughput-only
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

from common import (add_json_option, interleaved_medians, note, print_header, print_table, sample_catalogue,
                    write_json)

LOSSES = ("proxy-anchor", "multi-similarity")
PROTOCOLS = ("unseen-products", "unseen-categories", "new-types")


def optimiser_step(trainer, rows: np.ndarray, *, fine_tune: bool) -> float:
    """One step of ``trainer``'s learner (Keras's ``train_on_batch``, the step ``fit`` takes) on the batch ``rows``
    (positions in its train side); ``fine_tune``: the backbone's last blocks move too. Returns the loss."""
    trainer.optimizer.fine_tune.assign(float(fine_tune))
    p, seed = trainer.photos, np.array([trainer.settings.seed, 0], dtype=np.int64)
    return float(trainer.model.train_on_batch((p.pixels[p.train_rows[rows]], seed), p.train_codes[rows]))


def throughput_rows(settings, n_images: int, repeats: int, losses=LOSSES) -> list[dict]:
    """Images/s of a warm-up step, a fine-tune step and embedding, per loss, on ``n_images`` sample photos."""
    from cbir_tutorial.training.sampler import pk_batches
    from cbir_tutorial.training.trainer import Trainer

    catalogue = sample_catalogue()
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for loss in losses:
            trainer = Trainer(catalogue.subset(np.arange(len(catalogue)) < n_images), replace(settings, loss=loss),
                              out, progress=False)
            s = trainer.settings
            batch = pk_batches(trainer.photos.train_codes, s.classes_per_batch, s.images_per_class, seed=s.seed)[0]
            n_val = len(trainer.photos.validation_rows)
            timed = interleaved_medians({
                "warm-up step": lambda: optimiser_step(trainer, batch, fine_tune=False),
                f"fine-tune step ({s.trainable_blocks} blocks)": lambda: optimiser_step(trainer, batch, fine_tune=True),
                f"embedding ({n_val} validation photos)": trainer.validation_map,
            }, repeats=repeats)
            for what, seconds in timed.items():
                images = n_val if what.startswith("embedding") else len(batch)
                rows.append({"loss": loss, "what": what, "batch": len(batch), "image px": trainer.size,
                             "precision": trainer.precision or "float32", "s/call": seconds, "img/s": images / seconds})
    return rows


def cli_run(protocol: str, loss: str, out: Path, extra: list[str]) -> dict:
    """Runs ``cbir_tutorial train`` in a subprocess; its report rows, history and wall / CPU seconds."""
    command = [sys.executable, "-m", "cbir_tutorial", "train", "--catalogue", "sample", "--protocol", protocol,
               "--loss", loss, "--out", str(out), "--no-progress", *extra]
    print("$", " ".join(command[1:]), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    print(done.stdout, flush=True)
    info = json.loads((out / "trained.json").read_text())
    return {"report": json.loads((out / "report.json").read_text()), "history": info["history"],
            "best_epoch": info["best_epoch"], "val_map": info["val_map_at_k"],
            "frozen_val_map": info["frozen_val_map_at_k"],
            "probe_val_map": info.get("probe_val_map_at_k", float("nan")),
            "fusion_weight": info.get("fusion_weight", 1.0),
            "wall": wall, "cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)}


def protocol_tables(protocols, losses, extra: list[str], keep: Path | None) -> None:
    runs, report_rows = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for protocol in protocols:
            for loss in losses:
                out = (keep or Path(scratch)) / f"{protocol}-{loss}"
                run = cli_run(protocol, loss, out, extra)
                runs.append({"protocol": protocol, "loss": loss, "epochs run": len(run["history"]),
                             "best epoch": run["best_epoch"], "frozen val MAP@10": run["frozen_val_map"],
                             "probe val MAP@10": run["probe_val_map"],
                             "best val MAP@10": run["val_map"], "fusion weight": run["fusion_weight"],
                             "wall s": run["wall"], "CPU s": run["cpu"]})
                for row in run["report"]:
                    if row["model"].startswith("robust"):
                        row["model"] += f" ({loss})"  # the fine-tuned rows name their loss already
                    if any(r["model"] == row["model"] and r["split"] == protocol for r in report_rows):
                        continue  # the frozen backbone and the head are the same for every loss
                    report_rows.append({"split": protocol, **row})
    print_table("Training runs (CLI defaults; epoch chosen on the validation split; best epoch 0: the probe)", runs)
    print_table("Protocols: test side of each split", [shown_columns(row) for row in report_rows])
    for protocol in protocols:
        rows = [r for r in report_rows if r["split"] == protocol]
        frozen = next(r["map_at_10"] for r in rows if r["model"].startswith("frozen"))
        head = next((r["map_at_10"] for r in rows if r["model"] == "projection head"), float("nan"))
        unseen = next((r.get("map_at_10_unseen_types") for r in rows if r["model"].startswith("frozen")), None)
        for r in rows:
            if r["model"].startswith(("fine-tuned", "probe kept", "robust")):
                types = (f"; unseen types {r['map_at_10_unseen_types']:.3f} vs frozen {unseen:.3f} "
                         f"({r['map_at_10_unseen_types'] - unseen:+.3f})" if unseen is not None else "")
                note(f"{protocol}: {r['model']} MAP@10 {r['map_at_10']:.3f} = frozen {frozen:.3f} "
                     f"{r['map_at_10'] - frozen:+.3f}, projection head {head:.3f} "
                     f"({r['map_at_10'] - head:+.3f}){types}")
    print()


def shown_columns(row: dict) -> dict:
    """A report row as the results table shows it: the split named ``protocol`` (the row's own description of it
    left out), counts and scores named in words (``test products``, ``MAP@10``, ``crop R@1`` ...)."""
    from cbir_tutorial.evaluation.reports import column_name

    return {"protocol" if c == "split" else column_name(c): v for c, v in row.items() if c != "protocol"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="auto", choices=("auto", "cpu", "gpu"), help="as the CLI's --preset")
    parser.add_argument("--throughput-images", type=int, default=200, help="sample photos decoded for throughput")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--throughput-only", action="store_true")
    parser.add_argument("--protocols-only", action="store_true")
    parser.add_argument("--protocol", action="append", choices=PROTOCOLS, help="default: both")
    parser.add_argument("--loss", action="append", choices=LOSSES, help="default: both")
    parser.add_argument("--keep", type=Path, default=None, help="write the trained folders here (default: a temp dir)")
    parser.add_argument("--smoke", action="store_true",
                        help="64 px, 1 epoch, 90 products asked (--limit 90): checks the script runs")
    add_json_option(parser)
    args = parser.parse_args(argv)

    print_header("Fine-tuning: throughput and protocols", ("numpy", "tensorflow", "keras"))
    from cbir_tutorial.training.trainer import TrainingSettings

    presets = {"auto": TrainingSettings.for_this_machine, "cpu": TrainingSettings.cpu, "gpu": TrainingSettings}
    settings = presets[args.preset]()
    extra = ["--preset", args.preset]
    if args.smoke:
        settings = replace(settings, image_size=64)
        args.throughput_images, args.repeats = 60, 1
        args.protocol, args.loss = args.protocol or ["unseen-products"], args.loss or ["multi-similarity"]
        extra += ["--epochs", "1", "--image-size", "64", "--limit", "90"]  # 60 leaves one category to validate on
    if not args.protocols_only:
        rows = throughput_rows(settings, args.throughput_images, args.repeats, args.loss or LOSSES)
        print_table(f"Training throughput ({settings.backbone}, {args.preset} preset)", rows)
    if not args.throughput_only:
        protocol_tables(args.protocol or PROTOCOLS, args.loss or LOSSES, extra, args.keep)
    write_json(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
