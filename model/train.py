"""`python -m model.train preset=seed epochs=2 subset=5000 [key=value ...]`: one training run.

Prints a table row per epoch and the final validation accuracy. Never touches the test set. The
validation split is the one search.run uses for the same val_size (model.data.SPLIT_SEED), so a
config scores on the same images here and in a search. Any Config key overrides the preset.
"""

from __future__ import annotations

from model import overrides

if __name__ == "__main__":  # first: a Ctrl-C or SIGTERM during the slow imports below (torch) ends in one line
    overrides.starting()

from model import data as fmnist
from model.config import PRESETS, Config, field_types, preset
from model.trainer import EpochMetrics, train

RUN_KEYS = {
    "preset": "the starting config: " + ", ".join(PRESETS),
    "data_dir": "folder with the Fashion-MNIST files (default: FASHION_MNIST_DIR, then Debian's package)",
    "subset": "train on a stratified subset of this many images (default: all)",
    "val_size": "validation images held out of the 60,000 (default 6000)",
    "device": "cpu or cuda (default: cuda when available)",
    "cuda_graph": "auto (default: on CUDA for runs of 20+ steps), on, or off: the captured training step",
}
GRAPH_CHOICES = {"auto": None, "on": True, "off": False}


def usage() -> str:
    return overrides.usage(__doc__, RUN_KEYS, f"And every Config key: {', '.join(field_types())}.")


def parse_run(argv: list[str]) -> tuple[Config, dict]:
    """(config, run options) from key=value arguments; ValueError with the valid keys/values."""
    args = overrides.parse(argv, [*RUN_KEYS, *field_types()])
    cfg = preset(args.pop("preset", "seed"))
    run = {
        "data_dir": overrides.parse_text("data_dir", args.pop("data_dir")) if "data_dir" in args else None,
        "subset": fmnist.parse_subset(args.pop("subset")) if "subset" in args else None,
        "val_size": overrides.parse_int("val_size", args.pop("val_size", "6000"), 1, fmnist.SPLITS["train"] - 1),
        "device": args.pop("device", None),
        "cuda_graph": args.pop("cuda_graph", "auto"),
    }
    if run["cuda_graph"] not in GRAPH_CHOICES:
        raise ValueError(f"cuda_graph={run['cuda_graph']!r}: choose auto, on or off")
    run["cuda_graph"] = GRAPH_CHOICES[run["cuda_graph"]]
    if run["device"] not in (None, "cpu", "cuda"):
        raise ValueError(f"device={run['device']!r}: choose cpu or cuda")
    if run["device"] == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("device=cuda: PyTorch sees no CUDA GPU on this machine; use device=cpu or leave device out")
    if run["cuda_graph"]:
        import torch

        if run["device"] == "cpu" or not torch.cuda.is_available():
            raise ValueError("cuda_graph=on captures a CUDA graph: it needs a CUDA GPU (device=cuda)")
    cfg = Config.from_flat(args, base=cfg)
    fmnist.check_sizes(run["val_size"], run["subset"], cfg.batch_size)
    return cfg, run


def prepare(argv: list[str]) -> tuple[Config, dict, fmnist.Split]:
    """(config, run options, the data split) for a command line; ValueError (one line) otherwise."""
    cfg, run = parse_run(argv)
    return cfg, run, fmnist.load_split(run["data_dir"], run["val_size"], run["subset"])


def main(argv: list[str]) -> int:
    from rich import box
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    if overrides.wants_help(argv):
        print(usage())
        return 0
    try:
        cfg, run, split = prepare(argv)
    except ValueError as e:
        return overrides.reject(e)
    # Borderless and short-headed: 8 columns fit 80 characters without cutting a number.
    table = Table(
        title=f"{len(split.train_images):,} training / {len(split.val_images):,} validation images",
        box=box.SIMPLE,
        pad_edge=False,
    )
    for column in ("epoch", "train loss", "train acc", "val loss", "val acc", "lr", "s", "img/s"):
        table.add_column(column, justify="right", no_wrap=True)
    console = Console()
    with Live(table, console=console, auto_refresh=False) as live:

        def show(m: EpochMetrics) -> None:
            table.add_row(
                str(m.epoch), f"{m.train_loss:.3f}", f"{100 * m.train_acc:.2f}%", f"{m.val_loss:.3f}",
                f"{100 * m.val_acc:.2f}%", f"{m.lr:.2e}", f"{m.seconds:.1f}", f"{m.images_per_second:,.0f}",
            )
            live.refresh()

        trainer = train(cfg, split, on_epoch=show, device=run["device"], cuda_graph=run["cuda_graph"])
    if not console.is_terminal:
        console.print()  # rich leaves the cursor after a non-terminal Live table
    val_loss, val_acc = trainer.evaluate(trainer.val_x, trainer.val_y)
    console.print(f"final validation accuracy: {100 * val_acc:.2f}% (loss {val_loss:.3f}), {trainer.params:,} parameters")
    return 0


if __name__ == "__main__":
    overrides.command(main)
