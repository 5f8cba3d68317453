"""AI Power Grid's ``/v1`` API: the backend, its wire format, its errors and the jobs it runs."""

DEFAULT_ROOT_URL = "https://api.aipowergrid.io"
"""AI Power Grid's API host (the default grid)."""
