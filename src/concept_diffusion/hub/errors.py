"""Hub failures turned into messages that say what happened and what to do.

huggingface_hub raises HTTP and transport errors whose text names a URL and a status code; a user
pushing a pipeline wants to know whether the token, the repo id or the network is at fault, and
where the local copy of the work is.
"""

import contextlib
import os
from typing import Iterator, Optional


class HubError(RuntimeError):
    """A push or pull that the Hub (or the network to it) refused.

    `local_folder` is the complete local save that a failed push left behind (None for a pull).
    """

    def __init__(self, message: str, local_folder: Optional[str] = None):
        super().__init__(message)
        self.local_folder = local_folder


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _status(error: BaseException) -> Optional[int]:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def describe_failure(error: BaseException, action: str, repo_id: str, repo_type: str = "model") -> Optional[str]:
    """One sentence for a Hub failure while doing `action` on `repo_id`, or None if it is not one.

    Example:
        >>> describe_failure(error, "push to", "user/encdiff-shapes3d")
        'push to user/encdiff-shapes3d failed: the Hub rejected the token (401 Unauthorized). ...'
    """
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    kind = "data set" if repo_type == "dataset" else "repo"
    for cause in _causes(error):
        if isinstance(cause, RevisionNotFoundError):
            return (
                f"{action} {repo_id} failed: the revision does not exist in that {kind}. Check the branch, tag or "
                "commit sha (list them with `huggingface_hub.list_repo_refs`)"
            )
        if isinstance(cause, HfHubHTTPError) and _status(cause) == 401 and not isinstance(cause, RepositoryNotFoundError):
            return (
                f"{action} {repo_id} failed: the Hub at {_endpoint()} rejected the token (401 Unauthorized). Log in "
                "with `hf auth login`, or set HF_TOKEN (or pass token=...) to a token with write access"
            )
        if isinstance(cause, RepositoryNotFoundError):
            return (
                f"{action} {repo_id} failed: the Hub at {_endpoint()} has no {kind} {repo_id!r} that this token can "
                "see (404). Check the id ('user/name'); for a private repo, use a token that can read it"
            )
        if isinstance(cause, HfHubHTTPError) and _status(cause) == 403:
            return (
                f"{action} {repo_id} failed: the token may not write to {repo_id!r} (403 Forbidden). Push to your own "
                "namespace, or use a token with write access to that organisation"
            )
        if isinstance(cause, (httpx2.TransportError, ConnectionError)):
            return (
                f"{action} {repo_id} failed: the connection to the Hub at {_endpoint()} broke "
                f"({type(cause).__name__}: {cause}). Check the network (and HF_ENDPOINT), then try again"
            )
        if isinstance(cause, HfHubHTTPError) and (_status(cause) or 0) >= 500:
            return f"{action} {repo_id} failed: the Hub answered {_status(cause)} (a server error). Try again later"
    return None


@contextlib.contextmanager
def explained_hub_failures(action: str, repo_id: str, repo_type: str = "model", local_folder: Optional[str] = None):
    """Re-raise Hub and network failures inside the block as `HubError` with a clear message.

    With `local_folder`, the message says that the local save is intact and how to push it again.
    """
    try:
        yield
    except Exception as error:
        message = describe_failure(error, action, repo_id, repo_type)
        if message is None:
            raise
        if local_folder is not None:
            message += (
                f". A commit lands whole or not at all, so the repo holds no half-pushed pipeline. The local save is intact at "
                f"{os.fspath(local_folder)}: push it again with `concept-diffusion push {os.fspath(local_folder)} {repo_id}`"
            )
        raise HubError(message, local_folder=None if local_folder is None else os.fspath(local_folder)) from error
