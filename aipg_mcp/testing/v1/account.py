"""The ``/v1`` account routes: the account and its keys, credits, and price quotes."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aipg_mcp.testing.state import FakeUser
from aipg_mcp.testing.v1.base import V1Base, digest
from aipg_mcp.testing.v1.schema import (
    QuoteRequest,
    credit_summary,
    estimate,
    parse_body,
    quote_cost,
)


class AccountRoutes(V1Base):
    """``GET /v1/account``, ``GET /v1/account/credits``, ``POST /v1/account/credits/quote``."""

    async def account(self, request: Request) -> Response:
        """``GET /v1/account``: who the key belongs to, and the account's keys."""
        user = self._authenticate(request)
        grid = self.grid
        keys = [key for key, owner in grid.users.items() if owner is user]
        local = user.username.partition("#")[0] or "user"
        return JSONResponse(
            {
                "account_id": user.account_id,
                "username": user.username,
                "wallet": None,
                "payout_wallet": None,
                "identities": [
                    {
                        "kind": "google",
                        "display_hint": f"{local[:1]}***@example.invalid",
                        "primary": True,
                        "verified": True,
                    }
                ],
                "payout": {
                    "asset": "AIPG",
                    "aipg_bps": 10000,
                    "assets": ["AIPG"],
                    "par_assets": [],
                    "conversion_fee_bps": 0,
                    "active": False,
                    "live_asset": None,
                },
                "keys": [
                    {
                        "id": digest(key)[:12],
                        "label": "default" if index == 0 else f"key {index + 1}",
                        "created": grid.utc(user.created_at).isoformat(),
                        "last_used": (
                            grid.utc(self._last_used[key]).isoformat()
                            if key in self._last_used
                            else None
                        ),
                        "revoked": False,
                    }
                    for index, key in enumerate(keys)
                ],
            }
        )

    def _summary(self, user: FakeUser) -> dict[str, Any]:
        return credit_summary(user, self.grid.free_daily_micro, self._free_spent(user))

    async def credits(self, request: Request) -> Response:
        """``GET /v1/account/credits``: the (display-only) credit summary."""
        user = self._authenticate(request)
        return JSONResponse(self._summary(user))

    async def quote(self, request: Request) -> Response:
        """``POST /v1/account/credits/quote``: the summary plus an ``estimate``; changes nothing."""
        body = parse_body(QuoteRequest, await request.body())
        self._limit(request, "v1_quote")
        user = self._authenticate(request)
        summary = self._summary(user)
        cost = quote_cost(body, self.price(body.model, body.modality))
        return JSONResponse({**summary, "estimate": estimate(body, cost, summary)})
