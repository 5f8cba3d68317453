"""Images on their way in and out: saved files, inline previews and source images.

- :mod:`.store`: :class:`MediaStore` saves generated images under the output folder, with names
  made only from ids and never outside that folder; :func:`image_uri` names them as resources.
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
from aipg_mcp.server.media.store import MediaStore, image_uri, media_uri, parse_image_uri

__all__ = [
    "MediaError",
    "MediaStore",
    "Preview",
    "check_image",
    "image_size",
    "image_uri",
    "load_source_image",
    "make_previews",
    "media_uri",
    "parse_image_uri",
]
