"""`concept-diffusion fit-prior` and `concept-diffusion sample`: new images from concepts drawn from a fitted prior."""

PRIOR_KINDS = ("empirical", "independent", "gmm")  # as models.concept_prior, without importing torch for --help


def register(subparsers) -> None:
    fit = subparsers.add_parser(
        "fit-prior", help="fit a concept prior on a saved pipeline's data and store it in the folder",
        description="Encode images of the data the pipeline was trained on, fit a concept prior (the concept vectors "
                    "themselves, for the 'empirical' and 'independent' kinds, and a Gaussian mixture for 'gmm') and "
                    "save the pipeline again with it (the folder is replaced atomically).",
    )
    fit.add_argument("model", metavar="FOLDER", help="a saved pipeline's folder")
    fit.add_argument("--data", required=True, help="the training data: a procedural name, an official file or a folder")
    fit.add_argument("--images", type=int, default=4000, help="images whose concepts are fitted (default 4000)")
    fit.add_argument("--kind", choices=PRIOR_KINDS, default="independent", help="the kind `sample` draws by default")
    fit.add_argument("--seed", type=int, default=0, help="seed of the images and the mixture (default 0)")
    fit.set_defaults(func=run_fit)
    sample = subparsers.add_parser(
        "sample", help="draw new images from a pipeline's concept prior, as a labelled grid",
        description="Draw concept vectors from the pipeline's concept prior (fit one with `concept-diffusion fit-prior`) "
                    "and decode them; writes a grid with one row per prior kind asked for.",
    )
    sample.add_argument("model", metavar="PIPELINE", help="a saved pipeline's folder or Hub repo id")
    sample.add_argument("--num-images", type=int, default=8, help="images per prior kind (default 8)")
    sample.add_argument("--prior", default=None, help=f"comma-separated kinds from {PRIOR_KINDS} (default: the prior's own)")
    sample.add_argument("--steps", type=int, default=20, help="DDIM steps (default 20)")
    sample.add_argument("--seed", type=int, default=0, help="seed of the concepts and the noise (default 0)")
    sample.add_argument("--out", default="samples.png", help="PNG to write (default: samples.png)")
    sample.set_defaults(func=run_sample)


def run_fit(args) -> int:
    import os

    import numpy as np

    from concept_diffusion.data import load_ground_truth
    from concept_diffusion.pipelines import ConceptDiffusionPipeline
    from concept_diffusion.training.prior import attach_prior, fit_concept_prior

    if not os.path.isfile(os.path.join(args.model, "model_index.json")):
        raise ValueError(f"{args.model}: no model_index.json; fit-prior writes into a saved pipeline folder (download a "
                         "Hub model first, e.g. with huggingface_hub.snapshot_download)")
    if args.images < 2:
        raise ValueError(f"--images must be at least 2, got {args.images}")
    pipe = ConceptDiffusionPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    data = load_ground_truth(args.data, image_size=pipe.concept_encoder.config.sample_size)
    images = data.sample_observations(args.images, np.random.RandomState(args.seed))
    attach_prior(pipe, fit_concept_prior(pipe, images, kind=args.kind, seed=args.seed))
    pipe.save_pretrained(args.model)
    print(f"fitted a {args.kind} concept prior on {args.images} images of {args.data}; saved in {args.model}/concept_prior")
    return 0


def run_sample(args) -> int:
    import torch

    from concept_diffusion.atomic import atomic_path
    from concept_diffusion.pipelines import ConceptDiffusionPipeline
    from concept_diffusion.training.visualize import labelled_grid

    kinds = [kind.strip() for kind in args.prior.split(",") if kind.strip()] if args.prior else [None]
    unknown = [kind for kind in kinds if kind not in (None, *PRIOR_KINDS)]
    if unknown or args.num_images < 1:
        raise ValueError(f"--prior takes kinds from {PRIOR_KINDS} (got {unknown}) and --num-images >= 1 (got {args.num_images})")
    pipe = ConceptDiffusionPipeline.from_pretrained(args.model)
    rows = []
    for kind in kinds:
        out = pipe.sample(args.num_images, prior=kind, num_inference_steps=args.steps,
                          generator=torch.Generator().manual_seed(args.seed))
        rows.append((kind or pipe.concept_prior.config.kind, out.images))
    grid = labelled_grid([image for _, images in rows for image in images], rows=len(rows), cols=args.num_images,
                         row_labels=[f"prior:\n{kind}" for kind, _ in rows], title=f"{args.model}: {args.steps} DDIM steps, seed {args.seed}")
    with atomic_path(args.out, ".png") as temporary:
        grid.save(temporary)
    print(f"wrote {args.out} ({len(rows)} x {args.num_images} samples)")
    return 0
