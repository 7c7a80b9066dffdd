"""`concept-diffusion data`: list the ground-truth data sets, preview one, convert one for `datasets` / the Hub."""

from pathlib import Path

from concept_diffusion.atomic import atomic_directory, atomic_path


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="list, preview and convert data sets with known factors")
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    commands.add_parser("list", help="the procedural data sets and the official files that can be read")

    preview = commands.add_parser("preview", help="save a grid with one row per factor, that factor swept")
    preview.add_argument("source", metavar="SOURCE", help="a name from `data list`, an official file or folder, or a Hub dataset id")
    preview.add_argument("--out", default="grid.png", help="PNG file to write (default: grid.png)")
    preview.add_argument("--image-size", type=int, default=None, help="rendering size of procedural data (default 64)")
    preview.add_argument("--columns", type=int, default=8, help="values per factor (default 8)")
    preview.add_argument("--seed", type=int, default=0, help="draws the values of the factors held fixed")

    convert = commands.add_parser("convert", help="write a datasets folder (image + one ClassLabel column per factor)")
    convert.add_argument("source", metavar="SOURCE", help="a name from `data list`, an official file or folder, or a Hub dataset id")
    convert.add_argument("--out", required=True, help="folder for datasets' save_to_disk (replaced if it exists)")
    convert.add_argument("--image-size", type=int, default=None, help="rendering size of procedural data (default 64)")
    convert.add_argument("--limit", type=int, default=None, help="convert only the first N images (for a quick look)")
    convert.add_argument("--push-to-hub", metavar="REPO", default=None, help="also push it, with a dataset card, to this Hub dataset repo")
    convert.add_argument("--private", action="store_true", help="create the Hub repo as private")
    parser.set_defaults(func=run)


def run(args) -> int:
    from concept_diffusion.data import list_ground_truth, load_ground_truth
    from concept_diffusion.data.sources import OFFICIAL_FILES

    if args.data_command == "list":
        print("Procedural (no download; any --image-size):")
        for name, description in list_ground_truth().items():
            print(f"  {name:<24} {description}")
        print("Files and folders (pass the path or repo id):")
        for name, description in OFFICIAL_FILES.items():
            print(f"  {name:<24} {description}")
        return 0

    data = load_ground_truth(args.source, image_size=args.image_size)
    if args.data_command == "preview":
        return _preview(data, args)
    return _convert(data, args)


def _preview(data, args) -> int:
    from concept_diffusion.data.preview import preview_grid

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out}: expected a .png file name")
    with atomic_path(out, ".png") as temporary:
        preview_grid(data, columns=args.columns, seed=args.seed).save(temporary, format="PNG")
    print(f"wrote {out}: one row per factor ({', '.join(data.factor_names)})")
    return 0


def _convert(data, args) -> int:
    import numpy as np

    from concept_diffusion.data import push_ground_truth_to_hub, to_hf_dataset

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit: expected a positive number of images, got {args.limit}")
    indices = None if args.limit is None else np.arange(min(args.limit, len(data)))
    dataset = to_hf_dataset(data, indices=indices)
    out = Path(args.out)
    with atomic_directory(out) as staging:
        dataset.save_to_disk(staging)
    print(f"wrote {out}: {len(dataset)} images, factors {', '.join(data.factor_names)}")
    if args.push_to_hub:
        url = push_ground_truth_to_hub(dataset if args.limit is not None else data, args.push_to_hub, private=args.private)
        print(f"pushed to {url}")
    return 0
