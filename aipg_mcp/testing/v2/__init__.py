"""The Horde ``/api/v2`` routes of the fake grid: submit, check, status, cancel, and discovery.

Each route reproduces the real server's order of checks and its answers (status codes, ``rc``
codes, field sets, nulls dropped). The state and the simulated workers live in
:class:`~aipg_mcp.testing.fakegrid.FakeGrid`; this package only speaks HTTP. :mod:`.api`
holds the route table, :mod:`.generation` and :mod:`.status` the route groups, :mod:`.base` what
they share and :mod:`.validation` the request schemas.
"""
