"""Container image references, read by docker's grammar: one definition for every option that
takes one (`build -t`, `--base-image`, `manifests --image`).

    [host[:port]/]path[:tag][@algorithm:digest]

Only the host may hold capitals; path parts are lower case, joined by '.', '_', '__' or
dashes. A looser pattern let `A_B` through to a manifest, where the policy checker then called
it an image without a tag, and let `-x` reach docker after the build context was written.
"""

from __future__ import annotations

import re

_HOST_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = rf"(?:{_HOST_PART}(?:\.{_HOST_PART})*(?::[0-9]+)?/)?{_PATH_PART}(?:/{_PATH_PART})*"
_TAG = r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
_DIGEST = r"(?:@[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,})?"

# What `build -t` names: a name and tag (a digest is the registry's to give).
IMAGE_TAG = re.compile(_NAME + _TAG)
# What an image is pulled by: a tag, a digest or both.
IMAGE_REFERENCE = re.compile(_NAME + _TAG + _DIGEST)

__all__ = ["IMAGE_REFERENCE", "IMAGE_TAG"]
