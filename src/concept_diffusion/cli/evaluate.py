"""`concept-diffusion evaluate`: disentanglement metrics of a saved pipeline on ground-truth data."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="FactorVAE, DCI, MIG, SAP, modularity and BetaVAE scores, as disentanglement_lib computes them",
    )
    parser.add_argument("model", metavar="MODEL", help="a saved pipeline's folder or Hub repo id")
    parser.add_argument("--data", required=True, help="ground-truth data: a name from `concept-diffusion data list`, a file or a Hub dataset id")
    parser.add_argument(
        "--metrics",
        default="factor_vae,dci,mig",
        help="comma-separated: factor_vae, dci, mig, sap, modularity, beta_vae (default: factor_vae,dci,mig)",
    )
    parser.add_argument("--out", default=None, help="JSON file to write the scores to")
    parser.add_argument("--batch-size", type=int, default=None, help="images per encoder call (default 64 on CPU, 512 on a GPU)")
    parser.add_argument("--seed", type=int, default=0, help="each metric starts from RandomState(seed) (default 0)")
    parser.add_argument("--fast", action="store_true", help="DCI with HistGradientBoosting: seconds, close to but not the exact value")
    parser.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        help="encode every draw anew, as disentanglement_lib does, instead of each distinct image once (same values for a deterministic model)",
    )
    parser.add_argument(
        "--mixed-precision",
        choices=["bf16", "fp16"],
        default=None,
        help="encode under torch.autocast on a GPU: faster, but no longer float32's values (default: float32)",
    )
    parser.add_argument("--image-size", type=int, default=None, help="rendering size of procedural data (default: the encoder's)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from concept_diffusion.evaluation import evaluate

    scores = evaluate(
        args.model,
        args.data,
        metrics=args.metrics,
        batch_size=args.batch_size,
        seed=args.seed,
        fast=args.fast,
        out=args.out,
        image_size=args.image_size,
        cache=args.cache,
        mixed_precision=args.mixed_precision,
    )
    width = max(len(name) for name in scores)
    for name, value in scores.items():
        print(f"{name:<{width}}  {value:.6f}")
    if args.out:
        print(f"wrote {args.out}")
    return 0
