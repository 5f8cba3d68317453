"""What AI Power Grid's ``/v1`` API publishes about itself, and requests checked against it.

:class:`AipgCatalog` reads the models and their published limits, the styles, the prices and
quotes, the account and the network's state; before a request is spent it checks the request's
knobs against the model's limits and resolves a style named by id or name. The backend
(:class:`~aipg_mcp.grid.aipg.backend.AipgV1Backend`) is a catalog that also runs jobs.
"""

from __future__ import annotations

from typing import Any

from aipg_mcp.grid.aipg.wire import DEFAULT_MODELS, field_names, image_body, quote_segment
from aipg_mcp.grid.base import (
    AccountInfo,
    ActiveModel,
    Estimate,
    Newspiece,
    Style,
    StyleKind,
)
from aipg_mcp.grid.errors import (
    GenerationTimeout,
    GridError,
    InvalidAPIKey,
    NotFound,
    NoWorkers,
    ServerError,
    ValidationFailed,
    WorkerFailed,
)
from aipg_mcp.grid.jobs import JobKind
from aipg_mcp.grid.requests import (
    AudioRequest,
    ImageRequest,
    MediaRequest,
    MeshRequest,
    ModelType,
    TextRequest,
    VideoRequest,
)
from aipg_mcp.grid.transport import GridTransport

# AI Power Grid's published prices (USD): a video second, an audio second, a mesh.
PUBLISHED_PRICES = {JobKind.VIDEO: 0.02, JobKind.AUDIO: 0.0002, JobKind.MESH: 0.25}


class AipgCatalog:
    """The lookups and pre-spend checks of the ``/v1`` backend (see the module's description)."""

    _root: str
    _key: str | None
    transport: GridTransport
    _params: dict[str, dict[str, Any] | None]

    def _url(self, path: str) -> str:
        return f"{self._root}/v1/{path}"

    async def estimate(self, request: TextRequest | ImageRequest | MediaRequest) -> Estimate:
        if isinstance(request, VideoRequest | AudioRequest | MeshRequest):
            return await self._estimate_media(request)
        if isinstance(request, TextRequest):
            body: dict[str, Any] = {
                "model": request.models[0] if request.models else "auto",
                "modality": "text",
                "prompt_tokens": max(1, (len(request.prompt) + len(request.system or "")) // 4),
                "max_tokens": request.max_length,
            }
        else:
            image = image_body(request)
            body = {
                "model": image.get("model", DEFAULT_MODELS[JobKind.IMAGE]),
                "modality": "image",
                "n": image["n"],
            }
        _, payload = await self.transport.submit(self._url("account/credits/quote"), body)
        return _quoted(payload)

    async def _estimate_media(self, request: MediaRequest) -> Estimate:
        """The grid's quote for a video, song or mesh; when it has no price for it, the
        published per-second or per-mesh price, said to be an estimate."""
        kind = request.kind
        body: dict[str, Any] = {
            "model": request.model or DEFAULT_MODELS[kind],
            "modality": kind.value,
            "n": 1,
        }
        if isinstance(request, VideoRequest | AudioRequest):
            body["seconds"] = request.seconds
        try:
            _, payload = await self.transport.submit(self._url("account/credits/quote"), body)
        except (NotFound, ValidationFailed):
            payload = None
        quoted = _quoted(payload)
        if quoted.cost is not None:
            return quoted
        units = body.get("seconds", 1.0)
        price = PUBLISHED_PRICES[kind]
        return Estimate(
            cost=round(price * units, 6),
            unit="usd",
            details={
                "source": "published price",
                "price_usd": price,
                "per": "mesh" if kind is JobKind.MESH else "second",
                "note": "The grid's quote has no price for this, so this is an estimate from "
                "AI Power Grid's published prices.",
            },
        )

    async def _style_id(self, named: str, kind: StyleKind) -> str:
        """The id of the style named by id or name (in any case), checked against the grid's
        list before anything is billed; the name as given when the list is out of reach (the
        grid then judges it)."""
        wanted = named.lower()
        try:
            styles = await self.styles(kind)
        except GridError:
            return named
        for style in styles:
            if wanted in (style.id.lower(), style.name.lower()):
                return style.id
        raise ValidationFailed(
            f"no {kind} style {named!r} on this grid",
            fields={"style": "unknown; call list_styles for the styles this grid has"},
        )

    async def _check_model_params(self, kind: JobKind, body: dict[str, Any]) -> None:
        """Check knobs against the model's published ranges before spending a request.

        A styled request without a model is left to the grid: the style picks the model.
        """
        if body.get("style") and not body.get("model"):
            return
        model = body.get("model") or DEFAULT_MODELS[kind]
        if model not in self._params:
            try:
                payload = await self.transport.get(
                    self._url(f"models/{quote_segment(model)}/params")
                )
            except GridError:
                payload = None
            self._params[model] = payload if isinstance(payload, dict) else None
        spec = (self._params[model] or {}).get("params")
        if not isinstance(spec, dict):
            return
        values = dict(body)
        # The body carries the size as "WxH"; the model publishes its bands per side.
        width, _, height = str(body.get("size", "")).partition("x")
        if width.isdigit() and height.isdigit():
            values.update(width=int(width), height=int(height))
        problems: dict[str, str] = {}
        for name, value in values.items():
            rule = spec.get(name)
            if not isinstance(rule, dict) or not isinstance(value, int | float):
                continue
            low, high = rule.get("minimum"), rule.get("maximum")
            if (isinstance(low, int | float) and value < low) or (
                isinstance(high, int | float) and value > high
            ):
                problems[field_names(kind).get(name, name)] = (
                    f"{model} accepts {low}..{high}, got {value}"
                )
        if problems:
            raise ValidationFailed(f"parameters out of range for {model}", fields=problems)

    async def _lookup(
        self, url: str, *, with_key: bool = False, params: dict[str, Any] | None = None
    ) -> Any:
        """GET a lookup route.

        /v1 answers a generation's 502, 503 and 504 for failed workers, none online and a job
        nobody took; on a lookup they come from the grid or a gateway in trouble, so they are
        reported as that, not as advice about a job.
        """
        try:
            return await self.transport.get(url, with_key=with_key, params=params)
        except (WorkerFailed, NoWorkers, GenerationTimeout) as exc:
            raise ServerError(
                f"grid error HTTP {exc.status}: {exc.message}", status=exc.status
            ) from None

    async def models(
        self, kind: ModelType, *, min_count: int | None = None, name: str | None = None
    ) -> list[ActiveModel]:
        payload = await self._lookup(self._url("status/models"))
        models = []
        for item in payload if isinstance(payload, list) else []:
            if not isinstance(item, dict) or item.get("type") != kind.value:
                continue
            count = int(item.get("count") or 0)
            if min_count is not None and count < min_count:
                continue
            if name and str(item.get("name")) != name:
                continue
            models.append(
                ActiveModel(
                    name=str(item.get("name", "")),
                    count=count,
                    performance=float(item.get("tokens_per_s") or 0.0),
                    eta=round(float(item.get("avg_latency_s") or 0.0)),
                    type=kind.value,
                )
            )
        return models

    async def account(self) -> AccountInfo:
        if not self._key:
            raise InvalidAPIKey(
                "no API key is set",
                hint="AI Power Grid's /v1 API has no anonymous access: create a key at "
                "https://dashboard.aipowergrid.io and set AIPG_API_KEY.",
            )
        account = await self._lookup(self._url("account"), with_key=True)
        credits = await self._lookup(self._url("account/credits"), with_key=True)
        account = account if isinstance(account, dict) else {}
        credits = credits if isinstance(credits, dict) else {}
        balance = credits.get("total_spendable_usd")
        return AccountInfo(
            username=str(account.get("username") or account.get("account_id") or "unknown"),
            account_id=str(account.get("account_id")) if account.get("account_id") else None,
            balance=float(balance) if isinstance(balance, int | float) else None,
            balance_unit="usd",
            details={"credits": credits, "wallet": account.get("wallet")},
        )

    async def styles(self, kind: StyleKind) -> list[Style]:
        """The grid's curated styles for one kind of job (``GET /v1/styles?job_type=``)."""
        payload = await self._lookup(self._url("styles"), params={"job_type": kind})
        listed = payload.get("styles") if isinstance(payload, dict) else None
        styles = []
        for item in listed if isinstance(listed, list) else []:
            if (
                not isinstance(item, dict)
                or item.get("job_type", kind) != kind
                or not item.get("id")
            ):
                continue
            styles.append(
                Style(
                    id=str(item["id"]),
                    name=str(item.get("name") or item["id"]),
                    type=kind,
                    description=str(item.get("description") or ""),
                    models=[str(item["model"])] if item.get("model") else [],
                    locked=[str(key) for key in item.get("locked") or []],
                    aspect=str(item["aspect"]) if item.get("aspect") else None,
                )
            )
        return styles

    async def _network(self) -> dict[str, Any]:
        try:
            payload = await self._lookup(self._url("status/network"))
        except NotFound:
            return {}
        return payload if isinstance(payload, dict) else {}

    async def news(self) -> list[Newspiece]:
        network = await self._network()
        date = str(network.get("generated_at") or "")[:10]
        pieces = []
        for kind in ("incidents", "advisories"):
            for item in network.get(kind) or []:
                if isinstance(item, dict):
                    pieces.append(
                        Newspiece(
                            date_published=date,
                            title=str(item.get("code") or kind[:-1]),
                            newspiece=str(item.get("summary") or ""),
                            importance=str(item.get("severity") or "information"),
                            tags=[kind],
                        )
                    )
        return pieces

    async def performance(self) -> dict[str, Any]:
        network = await self._network()
        try:
            totals = await self._lookup(self._url("stats/totals"))
        except GridError:
            totals = None
        return {
            "status": network.get("status"),
            "capacity": network.get("capacity"),
            "totals": totals,
            "note": "AI Power Grid's /v1 API reports workers and completed work, but no queue "
            "depth or wait estimates.",
        }

    async def modes(self) -> dict[str, Any]:
        network = await self._network()
        charging = network.get("charging") or {}
        return {
            "status": network.get("status", "unknown"),
            "charging_mode": charging.get("mode") if isinstance(charging, dict) else None,
            "note": "AI Power Grid's /v1 API has no maintenance or invite-only modes; this is its "
            "network status.",
        }

    async def health(self) -> dict[str, Any]:
        payload = await self._lookup(f"{self._root}/health")
        return payload if isinstance(payload, dict) else {}

    async def probe(self) -> None:
        """The health route: proof that AI Power Grid's ``/v1`` API answers at the root URL."""
        await self.health()


def _quoted(payload: Any) -> Estimate:
    """The grid's quote (``POST /v1/account/credits/quote``) as an estimate; no cost if none."""
    estimate = payload.get("estimate", {}) if isinstance(payload, dict) else {}
    cost = estimate.get("cost_usd")
    return Estimate(
        cost=float(cost) if isinstance(cost, int | float) else None,
        unit="usd",
        affordable=estimate.get("balance_sufficient"),
        details=estimate,
    )
