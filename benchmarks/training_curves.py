"""Compare training runs along the way: the trainer's periodic scores against images seen, grouped over seeds.

Every `concept-diffusion train` run with `--eval-every` logs fast FactorVAE / DCI and each factor's accuracy
from the concepts (`factor_accuracy.<factor>`) to its `log.jsonl`. This reads the run folders given, groups
them by name without the seed (`base-seed0-1000k` and `base-seed1-1000k` are one group, "base"), prints a
Markdown table of the mean (min..max) at the given image counts (the last record at or before each), and
draws one panel per score with one line per group (the mean over seeds; thin lines for each seed).

    python benchmarks/training_curves.py RUNS/arms/*-1000k RUNS/long/seed* --at 100000,300000 --out curves.png
"""

import argparse
import json
import os
import re
import statistics
import sys

SCORES = ["factor_vae.eval_accuracy", "dci.disentanglement", "factor_accuracy.scale", "factor_accuracy.shape",
          "factor_accuracy.orientation", "factor_accuracy.object_hue"]
TITLES = {"factor_vae.eval_accuracy": "FactorVAE (fast)", "dci.disentanglement": "DCI disentanglement (fast)"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("runs", nargs="+", help="run folders (each with a log.jsonl)")
    parser.add_argument("--at", default="100000", help="comma-separated image counts for the table")
    parser.add_argument("--out", required=True, help="the PNG to draw; the table also goes to a .json beside it")
    args = parser.parse_args(argv)
    args.at = [int(value) for value in args.at.split(",")]
    missing = [run for run in args.runs if not os.path.isfile(os.path.join(run, "log.jsonl"))]
    if missing:
        parser.error(f"no log.jsonl in {missing}: pass folders of `concept-diffusion train` runs")
    return args


def group_name(folder: str) -> str:
    """A run folder's group: its name without the seed (`skip_dropout-seed1-1000k` -> `skip_dropout-1000k`)."""
    name = os.path.basename(os.path.normpath(folder))
    parent = os.path.basename(os.path.dirname(os.path.normpath(folder)))
    grouped = re.sub(r"-?seed\d+", "", name)
    return grouped or parent  # `long/seed0` groups under "long"


def read_scores(folder: str) -> list:
    """The log's evaluation records, (images seen, record), in order."""
    with open(os.path.join(folder, "log.jsonl")) as file:
        records = [json.loads(line) for line in file if line.strip()]
    return [(record["images_seen"], record) for record in records if SCORES[0] in record]


def value_at(points: list, images: int, key: str):
    """The score of the last evaluation at or before `images`, or None."""
    before = [record[key] for seen, record in points if seen <= images and key in record]
    return before[-1] if before else None


def table(groups: dict, at: list) -> tuple:
    """Markdown lines and JSON of each group's mean (min..max) over seeds at each image count."""
    lines = ["| runs | seeds | images | " + " | ".join(TITLES.get(key, key.split(".")[-1] + " acc.") for key in SCORES) + " |",
             "|---|---:|---:|" + "---|" * len(SCORES)]
    rows = []
    for name, runs in groups.items():
        for images in at:
            cells, row = [], {"runs": name, "seeds": len(runs), "images": images}
            for key in SCORES:
                values = [v for v in (value_at(points, images, key) for points in runs.values()) if v is not None]
                row[key] = values
                cells.append(f"{statistics.mean(values):.3f} ({min(values):.2f}..{max(values):.2f})" if values else "-")
            rows.append(row)
            lines.append(f"| {name} | {len(runs)} | {images:,} | " + " | ".join(cells) + " |")
    return lines, rows


def plot(groups: dict, png_path: str) -> None:
    from matplotlib.figure import Figure

    from concept_diffusion.atomic import atomic_path

    figure = Figure(figsize=(16, 8.5))
    axes = figure.subplots(2, 3).flat
    colours = [f"C{i}" for i in range(10)]
    for axis, key in zip(axes, SCORES):
        for colour, (name, runs) in zip(colours * 3, groups.items()):
            series = [[(seen / 1000, record[key]) for seen, record in points if key in record] for points in runs.values()]
            for points in series:
                axis.plot(*zip(*points), color=colour, alpha=0.3, linewidth=0.8)
            common = sorted(set.intersection(*(set(x for x, _ in points) for points in series)))
            means = [statistics.mean(dict(points)[x] for points in series) for x in common]
            axis.plot(common, means, color=colour, linewidth=2, label=f"{name} ({len(series)} seed{'s' if len(series) > 1 else ''})")
        axis.set_title(TITLES.get(key, f"{key.split('.')[-1]}: accuracy from the concepts"), fontsize=11)
        axis.set_xlabel("images seen (thousands)")
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle("Scores along training (the trainer's fast metrics): mean over seeds, thin lines per seed", fontsize=12)
    figure.tight_layout()
    with atomic_path(png_path, ".png") as temporary:
        figure.savefig(temporary, dpi=100)


def main(argv=None) -> int:
    from concept_diffusion.atomic import write_json

    args = parse_args(argv)
    groups = {}
    for folder in sorted(args.runs):
        groups.setdefault(group_name(folder), {})[folder] = read_scores(folder)
    lines, rows = table(groups, args.at)
    print("\n".join(lines))
    plot(groups, args.out)
    command = " ".join(["python", "benchmarks/training_curves.py", *(argv if argv is not None else sys.argv[1:])])
    write_json(os.path.splitext(args.out)[0] + ".json", {"command": command, "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
