"""Images on their way in and out: saved files, inline previews and source images.

- :mod:`.store`: the :class:`MediaStore` interface that saves generated files with names made
  only from ids, :func:`open_media_store`, and :func:`image_uri` that names them as resources;
  :mod:`.folder` keeps them in the output folder (never outside it), :mod:`.bucket` in an
  S3-compatible bucket.
- :mod:`.previews`: :func:`make_previews` shrinks images to fit the size a client accepts inline.
- :mod:`.sources`: :func:`load_source_image` turns what a model passes as an input image (URL,
  data URL, file path or base64) into what the grid accepts, reading local files only from
  folders the user allowed.
- :mod:`.images`: opening and checking encoded images, and :class:`MediaError`.
- :mod:`.files`: checking videos, songs and meshes are whole files of their type, and a video's
  frames (with the optional PyAV, imported on first use).

The rest of the server imports these names from here.
"""

from aipg_mcp.server.media.images import MediaError, check_image, image_size
from aipg_mcp.server.media.previews import Preview, make_previews
from aipg_mcp.server.media.sources import load_source_image
from aipg_mcp.server.media.store import (
    MediaStore,
    MediaStoreError,
    image_uri,
    media_uri,
    open_media_store,
    parse_image_uri,
)

__all__ = [
    "MediaError",
    "MediaStore",
    "MediaStoreError",
    "Preview",
    "check_image",
    "image_size",
    "image_uri",
    "load_source_image",
    "make_previews",
    "media_uri",
    "open_media_store",
    "parse_image_uri",
]
