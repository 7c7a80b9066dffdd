"""`concept-diffusion quickstart`: the main job of a fresh machine (no download needed)."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "quickstart", help="train the cpu preset on shapes3d-procedural for a few minutes, score it and draw it",
        description="Train EncDiff (the `cpu` preset) on shapes3d-procedural for --minutes, then write the pipeline, "
                    "metrics.json (FactorVAE, DCI, MIG), swap.png, traversal.png, curves.png and the model card. "
                    "The other flags shrink it, e.g. to check an installation in seconds: "
                    "--max-steps 2 --batch-size 4 --sample-steps 2 --score-samples 64 --fast-scores.",
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="training time (default: 10)")
    parser.add_argument("--out", "--output_dir", "--output-dir", dest="out", default="outputs/quickstart",
                        help="output folder (default: outputs/quickstart)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="cpu", help="a pixel-space preset (default: cpu)")
    parser.add_argument("--max-steps", "--max_steps", type=int, default=None, help="also stop after this many steps")
    parser.add_argument("--batch-size", "--batch_size", type=int, default=None, help="images per step, over all processes (default: 16)")
    parser.add_argument("--sample-steps", "--sample_steps", type=int, default=None,
                        help="DDIM steps of the pictures (default: 25; the preset's during training)")
    parser.add_argument("--score-samples", "--score_samples", type=int, default=None,
                        help="training points of the final scores, half as many evaluation points "
                             "(default: 2,000 to 10,000 depending on the metric)")
    parser.add_argument("--processes", type=int, default=None,
                        help="CPU processes that train as one job, one thread each (default: 2 on a CPU with 2 or more "
                             "cores, else 1; always 1 on a GPU)")
    parser.add_argument("--fast-scores", "--fast_scores", action="store_true",
                        help="DCI with HistGradientBoosting: seconds, close to but not the exact value")
    parser.set_defaults(func=run)


def run(args) -> int:
    from concept_diffusion.training.quickstart import quickstart
    from concept_diffusion.training.trainer import metric_sizes

    overrides = {name: value for name, value in (("preset", args.preset), ("max_steps", args.max_steps),
                                                 ("batch_size", args.batch_size), ("sample_steps", args.sample_steps))
                 if value is not None}
    sizes = None if args.score_samples is None else metric_sizes(args.score_samples)
    result = quickstart(args.out, minutes=args.minutes, seed=args.seed, metric_sizes=sizes, fast_scores=args.fast_scores,
                        processes=args.processes, **overrides)
    print("\nscores of the final model:")
    for name, value in result.metrics.items():
        print(f"  {name:32s} {value:.4f}")
    print("\nwritten:")
    for name, path in result.files.items():
        print(f"  {name:12s} {path}")
    return 0
