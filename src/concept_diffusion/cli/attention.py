"""`concept-diffusion attention`: where each concept token looks, as a labelled grid of maps."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "attention", help="draw each concept token's cross-attention map over images",
        description="Record the softmax of the UNet's cross-attention layers while it reconstructs each image "
                    "(or on the image noised to --timesteps) and draw one map per concept over it.",
    )
    parser.add_argument("model", metavar="PIPELINE", help="a saved pipeline's folder or Hub repo id")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files; resized to the model's resolution")
    parser.add_argument("--out", default="attention.png", help="PNG to write (default: attention.png)")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps of the reconstruction (default 20)")
    parser.add_argument("--timesteps", default=None,
                        help="comma-separated training timesteps, e.g. 100,300,500: average one pass on the noised image "
                             "per timestep instead of a reconstruction")
    parser.add_argument("--layers", default=None, help="comma-separated layer names or prefixes, e.g. up_blocks (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    parser.add_argument("--tile-size", type=int, default=128, help="pixels per tile (default 128)")
    parser.set_defaults(func=run)


def run(args) -> int:
    import numpy as np
    import PIL.Image
    import torch

    from concept_diffusion.app.images import fit_image
    from concept_diffusion.atomic import atomic_path
    from concept_diffusion.pipelines import ConceptDiffusionPipeline

    pipe = ConceptDiffusionPipeline.from_pretrained(args.model)
    config = pipe.concept_encoder.config
    images = []
    for path in args.images:
        with PIL.Image.open(path) as image:
            images.append(fit_image(image, config.sample_size, config.in_channels))
    timesteps = None if args.timesteps is None else [int(t) for t in args.timesteps.split(",") if t.strip()]
    layers = None if args.layers is None else [name.strip() for name in args.layers.split(",") if name.strip()]
    grid = pipe.attention_grid(np.stack(images), tile_size=args.tile_size, num_inference_steps=args.steps,
                               timesteps=timesteps, layers=layers, generator=torch.Generator().manual_seed(args.seed))
    with atomic_path(args.out, ".png") as temporary:
        grid.save(temporary)
    print(f"wrote {args.out} ({len(images)} image(s) x {config.num_concepts} concepts)")
    return 0
