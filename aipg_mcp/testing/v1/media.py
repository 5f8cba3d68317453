"""AIPG's ``/v1`` video, audio and 3D routes: blocking calls, like the image route.

``POST /v1/videos/generations``, ``POST /v1/audio/generations`` and ``POST /v1/3d/generations``
each queue one job (kind ``"video"``, ``"audio"`` or ``"3d"``) for the fake workers of its
model's table (``grid.v1_video_models``, ``v1_audio_models``, ``v1_3d_models``) and wait for it
on the fake clock, so ``grid.advance``, ``grid.finish`` and ``grid.fault`` steer them as they
steer images. A job nobody picks up within ``grid.v1_media_timeouts[kind]`` seconds answers 504
(``"video generation timed out"``); a failed worker is a 502 with its message; ``progress_token``
reports through ``GET /v1/progress/{token}``. Results are real files (see
:mod:`~aipg_mcp.testing.mediafiles`) at ``/media/<video|audio|3d>/<job_id>/0.<mp4|wav|glb>``.

Order of checks, as on the server: the body (FastAPI's 422 list), the rate limit (4 a minute per
key), for audio the feature switch (503), the key, the worker, the style (video), the model
(503 without workers of the kind, 404 when not online), then the route's own 422s and 400s with
the daily quota in between, then charging (402), the account's media slots (429, shared with
images), and last the recipe's bands (422) just before the job is queued.

Steering a job from the request: ``[fake:never]``, ``[fake:fault]`` and ``[fake:seconds=N]`` in
the video prompt, in the audio prompt or lyrics, or for 3D anywhere in the source image's bytes
(a PNG text chunk, say).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aipg_mcp.testing.mediafiles import AudioSpec, MediaSpec, MeshSpec, VideoSpec
from aipg_mcp.testing.state import FakeJob, FakeUser, JobKind
from aipg_mcp.testing.v1.base import INFERENCE_SCOPE, V1Base
from aipg_mcp.testing.v1.media_schema import (
    ACE_STEP_RECIPE_ROOT,
    DEFAULT_3D_MODEL,
    DEFAULT_AUDIO_MODEL,
    DEFAULT_VIDEO_MODEL,
    VIDEO_BATCH_UNAVAILABLE,
    AudioRequest,
    ThreeDRequest,
    VideoRequest,
    diffusion_knobs,
    matched_size,
    media_seed,
    media_size,
    source_picture,
    video_timing,
)
from aipg_mcp.testing.v1.recipes import MediaRecipe, find_recipe, gate, virtual_models
from aipg_mcp.testing.v1.schema import MAX_SEED, V1Error, parse_body
from aipg_mcp.testing.v1.styles import apply_style

AUDIO_DISABLED = "Audio generation is not enabled."
#: How each kind is named in the grid's "no workers" and "not available" answers.
LABELS: dict[JobKind, str] = {"video": "video", "audio": "audio", "3d": "3D"}
#: Request knob -> the recipe variable it sets (``strength`` and ``denoise`` are one slot).
_RECIPE_KNOBS = (
    ("steps", "steps"),
    ("cfg_scale", "cfg"),
    ("sampler", "sampler"),
    ("scheduler", "scheduler"),
    ("strength", "denoise"),
    ("denoise", "denoise"),
)
_TIMELINE = ("timeline", "local_prompts", "segment_lengths", "guide_strength")


@dataclass
class Dispatch:
    """Everything a checked media request hands to :meth:`MediaRoutes._dispatch`."""

    kind: JobKind
    model: str
    recipe: MediaRecipe | None
    seed: int
    units: float
    media: Callable[[int], MediaSpec]
    prompt: str = ""
    directives: str = ""
    progress_token: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


def _video_inputs(prompt: str, extras: dict[str, Any], timing: dict[str, Any]) -> dict[str, Any]:
    """What the grid hands a video recipe: the prompts, the effective size and timing always,
    and the advanced knobs (``cfg_scale`` as ``cfg``) and director strings only when set."""
    inputs = {"prompt": prompt, "negative_prompt": extras.get("negative_prompt"), **timing}
    for knob, variable in _RECIPE_KNOBS:
        if extras.get(knob) is not None:
            inputs[variable] = extras[knob]
    for knob in _TIMELINE:
        if extras.get(knob) is not None:
            inputs[knob] = str(extras[knob])
    return inputs


def _no_image(model: str) -> V1Error:
    detail = f"model '{model}' does not accept an input image (no img2img/img2video recipe)"
    return V1Error(422, detail)


class MediaRoutes(V1Base):
    """``POST /v1/videos/generations``, ``/v1/audio/generations`` and ``/v1/3d/generations``."""

    # ------------------------------------------------------------------------------ video

    async def videos(self, request: Request) -> Response:
        """``POST /v1/videos/generations``: one MP4, blocking until it exists."""
        body = parse_body(VideoRequest, await request.body())
        self._limit(request, "v1_videos")
        user = self._authenticate(request, INFERENCE_SCOPE)
        self._check_worker(body.worker)
        extras: dict[str, Any] = dict(body.model_extra or {})
        prompt, style_model = body.prompt, None
        style_loras: tuple[Any, ...] = ()
        if body.style:
            styled = apply_style(self.grid.v1_styles, body.style, body.prompt, extras)
            prompt, style_model, style_loras = styled.prompt, styled.model, styled.loras
        model, recipe = self._media_model("video", body.model or style_model or DEFAULT_VIDEO_MODEL)
        wants_denoise = extras.get("strength") is not None or extras.get("denoise") is not None
        if wants_denoise and not (recipe and recipe.takes_denoise):
            raise V1Error(422, f"model '{model}' does not support strength/denoise")
        if body.n > 1:
            raise V1Error(422, VIDEO_BATCH_UNAVAILABLE)
        self._consume_quota(user)
        pinned = "size" in body.model_fields_set
        width, height = media_size(body.size, (768, 512), strict=pinned)
        frames, seconds = video_timing(body.seconds, body.fps)
        steps, cfg_scale, sampler = diffusion_knobs(model, extras)
        seed = media_seed(extras.get("seed"), self._draw_seed)
        if body.image:
            if not (recipe and recipe.takes_image):
                raise _no_image(model)
            _, source_width, source_height = source_picture(body.image)
            if not pinned:
                width, height = matched_size(source_width, source_height)
        if body.loras or style_loras:
            raise V1Error(422, f"model '{model}' does not support loras")
        timing = {"width": width, "height": height, "seconds": seconds, "fps": body.fps}
        inputs = _video_inputs(prompt, extras, {**timing, "frames": frames})
        params = {
            "width": width,
            "height": height,
            "frames": frames,
            "fps": body.fps,
            "seconds": seconds,
            "steps": steps,
            "cfg_scale": cfg_scale,
            "sampler": sampler,
            "negative_prompt": extras.get("negative_prompt"),
        }

        def video(ran: int) -> MediaSpec:
            return VideoSpec(width, height, frames, body.fps, ran)

        call = Dispatch(
            "video",
            model,
            recipe,
            seed,
            seconds,
            video,
            prompt=prompt,
            directives=prompt,
            progress_token=body.progress_token,
            inputs=inputs,
            params=params,
        )
        job = await self._dispatch(user, call)
        data = await self._outputs(request, job, body.response_format == "b64_json")
        return JSONResponse(self._media_answer(job, data))

    # ------------------------------------------------------------------------------ audio

    async def audio(self, request: Request) -> Response:
        """``POST /v1/audio/generations``: one WAV (503 unless ``grid.v1_audio_enabled``)."""
        body = parse_body(AudioRequest, await request.body())
        self._limit(request, "v1_audio")
        if not self.grid.v1_audio_enabled:
            raise V1Error(503, AUDIO_DISABLED)
        user = self._authenticate(request, INFERENCE_SCOPE)
        self._check_worker(body.worker)
        model, recipe = self._media_model("audio", body.model or DEFAULT_AUDIO_MODEL)
        self._consume_quota(user)
        seed = media_seed(body.seed, self._draw_seed)
        controls = body.controls()

        def song(ran: int) -> MediaSpec:
            return AudioSpec(body.seconds, ran)

        params = {
            "seconds": body.seconds,
            "inference_steps": body.inference_steps,
            "lyrics": body.lyrics,
            "controls": controls,
        }
        call = Dispatch(
            "audio",
            model,
            recipe,
            seed,
            body.seconds,
            song,
            prompt=body.prompt,
            directives=f"{body.prompt}\n{body.lyrics}",
            progress_token=body.progress_token,
            params=params,
        )
        job = await self._dispatch(user, call)
        data = await self._outputs(request, job, False)
        answer = self._media_answer(job, data)
        answer["grid"].update({"recipe_root": ACE_STEP_RECIPE_ROOT, "controls": controls})
        return JSONResponse(answer)

    # --------------------------------------------------------------------------------- 3D

    async def threed(self, request: Request) -> Response:
        """``POST /v1/3d/generations``: one GLB mesh from an inline source image."""
        body = parse_body(ThreeDRequest, await request.body())
        self._limit(request, "v1_3d")
        user = self._authenticate(request, INFERENCE_SCOPE)
        self._check_worker(body.worker)
        model, recipe = self._media_model("3d", body.model or DEFAULT_3D_MODEL)
        self._consume_quota(user)
        if not (recipe and recipe.takes_image):
            raise _no_image(model)
        raw, _, _ = source_picture(body.image)
        seed = media_seed(body.seed, self._draw_seed)
        knobs = {"steps": body.steps, "guidance": body.guidance, "target_faces": body.target_faces}
        call = Dispatch(
            "3d",
            model,
            recipe,
            seed,
            1.0,
            MeshSpec,
            directives=raw.decode("latin-1"),
            progress_token=body.progress_token,
            inputs=knobs,
            params=dict(knobs),
        )
        job = await self._dispatch(user, call)
        data = await self._outputs(request, job, body.response_format == "b64_json")
        meshes = [{"seed": item.pop("seed"), **item} for item in data]  # the grid puts seed first
        return JSONResponse(self._media_answer(job, meshes))

    # --------------------------------------------------------------------------- shared

    def _draw_seed(self) -> int:
        return self.grid.random_seed(MAX_SEED + 1)

    @staticmethod
    def _check_worker(worker: str | None) -> None:
        """The grid's worker affinity needs a worker the account owns; the fake's own no one."""
        if worker:
            raise V1Error(404, f"No worker named '{worker}'.")

    def _available(self, kind: JobKind) -> list[str]:
        """The models of ``kind`` a call may name now: online checkpoints, and for video the
        recipe models that run on one."""
        grid = self.grid
        table = grid.models_for(kind, "v1")
        online = {name: table[name] for name in self._online(table)}
        names = set(online)
        if kind == "video":
            names.update(virtual_models(grid.v1_recipes, online, kind))
        return sorted(names)

    def _media_model(self, kind: JobKind, requested: str) -> tuple[str, MediaRecipe | None]:
        """``requested`` and its recipe; 503 without workers of ``kind``, 404 if not online."""
        self.grid.sync()
        available = self._available(kind)
        label = LABELS[kind]
        if not available:
            raise V1Error(503, f"No {label} workers are online.")
        if requested not in available:
            detail = f"Model '{requested}' is not available. Online {label} models: {available!r}"
            raise V1Error(404, detail)
        return requested, find_recipe(self.grid.v1_recipes, requested)

    async def _dispatch(self, user: FakeUser, call: Dispatch) -> FakeJob:
        """Charge, take a media slot, gate the recipe, queue the job and wait for it."""
        rate = self.price(call.model, call.kind) or {}
        unit_price = rate.get("mesh" if call.kind == "3d" else "second", 0.0)
        self._authorize(user, call.model, call.kind, math.ceil(unit_price * call.units))
        release = self._acquire(user, "media")
        try:
            recipe = call.recipe
            seed = call.seed
            if recipe is not None:
                seed = gate(recipe, call.seed, {**call.inputs, "seed": call.seed})
            params = {**call.params, "seed": seed, "spec": call.media(seed)}
            job = self.grid.new_job(
                call.kind,
                user,
                n=1,
                prompt=call.prompt,
                models=[recipe.checkpoint if recipe else call.model],
                params=params,
                kudos_per_job=0.0,
                directives_text=call.directives,
                api="v1",
            )
            if call.progress_token:
                self.progress.bind(call.progress_token, job)
            timeout = self.grid.v1_media_timeouts[call.kind]
            await self._wait_media(job, timeout, f"{call.kind} generation timed out")
        finally:
            release()
        return job

    async def _outputs(self, request: Request, job: FakeJob, inline: bool) -> list[dict[str, Any]]:
        """One ``{"url" | "b64_json", "seed"}`` per result file."""
        data = []
        for generation in job.generations:
            spec: MediaSpec = job.params["spec"]
            key = f"{job.kind}/{job.id}/{generation.index}.{spec.extension}"
            item: dict[str, Any] = {}
            if inline:
                item["b64_json"] = base64.b64encode(await self.grid.store.read(key)).decode()
            else:
                item["url"] = self._media_url(request, key)
            item["seed"] = generation.seed
            data.append(item)
        return data
