"""`concept-diffusion push REPO_ID [PATH]` and `concept-diffusion pull REPO_ID --local-dir DIR`, spelt like
`hf upload REPO_ID PATH` and `hf download REPO_ID --local-dir DIR`."""

import os
import sys


def register(subparsers) -> None:
    push = subparsers.add_parser(
        "push",
        help="upload a saved pipeline folder with its model card to the Hugging Face Hub",
        description=(
            "Upload a folder written by ConceptDiffusionPipeline.save_pretrained to the Hub in one commit "
            "(like `hf upload REPO_ID PATH`). Its README.md is the card; without one, a card is rendered from "
            "the pipeline. The token comes from `hf auth login` or HF_TOKEN. The older order, FOLDER REPO_ID, "
            "is still understood."
        ),
    )
    push.add_argument("repo_id", help="Hub repo id, 'user/name' (created if missing)")
    push.add_argument("path", nargs="?", default=".", help="folder written by pipe.save_pretrained(folder) (default: .)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", default=None, help="branch to commit to (created if missing; default main)")
    push.add_argument("--commit-message", "--commit_message", default=None, help="commit message")
    push.set_defaults(func=run_push)

    pull = subparsers.add_parser(
        "pull",
        help="download a concept-diffusion pipeline from the Hub into a folder",
        description=(
            "Check that REPO_ID holds a ConceptDiffusionPipeline with safetensors weights, then download it "
            "(like `hf download REPO_ID --local-dir DIR`). The folder loads with "
            "ConceptDiffusionPipeline.from_pretrained(folder)."
        ),
    )
    pull.add_argument("repo_id", help="Hub repo id, 'user/name'")
    pull.add_argument("--local-dir", "--local_dir", "--out", dest="local_dir", required=True,
                      help="folder to download into (created if missing); --out is the older spelling")
    pull.add_argument("--revision", default=None, help="branch, tag or commit sha (default main)")
    pull.set_defaults(func=run_pull)


def push_arguments(repo_id: str, path: str):
    """`(repo_id, folder)`, also from the older `push FOLDER REPO_ID` order (told apart by which one is a folder)."""
    if not os.path.isdir(path) and os.path.isdir(repo_id):
        return path, repo_id
    return repo_id, path


def run_push(args) -> int:
    from concept_diffusion.hub import HubError, push_folder_to_hub

    repo_id, folder = push_arguments(args.repo_id, args.path)
    try:
        url = push_folder_to_hub(
            folder, repo_id, commit_message=args.commit_message,
            private=True if args.private else None, revision=args.revision,
        )
    except HubError as error:
        print(f"concept-diffusion push: error: {error}", file=sys.stderr)
        return 1
    print(f"pushed {folder} to {repo_id}: {url}")
    return 0


def run_pull(args) -> int:
    from concept_diffusion.hub import HubError, pull_pipeline

    try:
        folder = pull_pipeline(args.repo_id, args.local_dir, revision=args.revision)
    except HubError as error:
        print(f"concept-diffusion pull: error: {error}", file=sys.stderr)
        return 1
    print(f"pulled {args.repo_id} into {folder}")
    return 0
