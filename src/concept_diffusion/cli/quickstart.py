"""`concept-diffusion quickstart`: the main job of a fresh machine (no download needed)."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "quickstart", help="train the cpu preset on shapes3d-procedural for a few minutes, score it and draw it",
        description="Train EncDiff (the `cpu` preset) on shapes3d-procedural for --minutes, then write the pipeline, "
                    "metrics.json (FactorVAE, DCI, MIG), swap.png, traversal.png, curves.png and the model card.",
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="training time (default: 10)")
    parser.add_argument("--out", default="outputs/quickstart", help="output folder (default: outputs/quickstart)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def run(args) -> int:
    from concept_diffusion.training.quickstart import quickstart

    result = quickstart(args.out, minutes=args.minutes, seed=args.seed)
    print("\nscores of the final model:")
    for name, value in result.metrics.items():
        print(f"  {name:32s} {value:.4f}")
    print("\nwritten:")
    for name, path in result.files.items():
        print(f"  {name:12s} {path}")
    return 0
