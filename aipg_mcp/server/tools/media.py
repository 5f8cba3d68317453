"""The tools that make a media file on the grid: a video, a song, a 3D mesh.

AI Power Grid's ``/v1`` API runs them; Horde v2 grids have none, and say so before any call.
Each result is saved as one file (MP4, WAV, GLB) and served as a resource.
"""

from __future__ import annotations

from typing import Annotated

from mcp.types import CallToolResult
from pydantic import Field

from aipg_mcp.grid.requests import (
    KEY_SCALE_PATTERN,
    MAX_MEDIA_SEED,
    VOCAL_LANGUAGE_PATTERN,
    AudioRequest,
    MeshRequest,
    TimeSignature,
    VideoRequest,
)
from aipg_mcp.server.reports import MediaJobReport
from aipg_mcp.server.tools.common import (
    AppContext,
    NewJob,
    Text,
    WaitSeconds,
    build_request,
    generate,
    read_source_image,
    state_of,
)

MediaSeed = Annotated[
    int | None,
    Field(ge=0, le=MAX_MEDIA_SEED, description="A seed a result showed, to reproduce it."),
]
MediaModel = Annotated[
    Text | None,
    Field(min_length=1, max_length=128, description="The model; default: the grid's own."),
]


async def generate_video(
    prompt: Annotated[
        str, Field(min_length=1, max_length=20000, description="What happens in the video.")
    ],
    ctx: AppContext,
    width: Annotated[
        int | None,
        Field(
            ge=256,
            le=1536,
            multiple_of=64,
            description="Frame width; set with height. Default: the grid's (768x512, or the "
            "source image's shape). LTX-2.3 takes 512-1280 per side.",
        ),
    ] = None,
    height: Annotated[
        int | None, Field(ge=256, le=1536, multiple_of=64, description="Frame height.")
    ] = None,
    seconds: Annotated[
        float, Field(ge=1, le=10, description="Length; LTX-2.3 takes at most 8.")
    ] = 4.0,
    fps: Annotated[
        int, Field(ge=8, le=30, description="Frames per second; seconds * fps <= 240.")
    ] = 24,
    source_image: Annotated[
        Text | None,
        Field(
            description="A start frame to animate: an image's resource_uri (aipg://images/...), "
            "a data: URL, base64, or a local file path inside the allowed folders."
        ),
    ] = None,
    negative_prompt: Annotated[Text | None, Field(description="What to avoid.")] = None,
    seed: MediaSeed = None,
    steps: Annotated[
        int | None, Field(ge=1, le=80, description="Sampling steps; default: the model's.")
    ] = None,
    cfg_scale: Annotated[
        float | None, Field(ge=0, le=30, description="Prompt adherence; default: the model's.")
    ] = None,
    style: Annotated[
        Text | None,
        Field(
            min_length=1, max_length=128, description="A video style's id or name (list_styles)."
        ),
    ] = None,
    model: MediaModel = None,
    wait_seconds: WaitSeconds = None,
    new_job: NewJob = False,
) -> Annotated[CallToolResult, MediaJobReport]:
    """Generate a short video (MP4) on AI Power Grid from a prompt, or animate a start frame.

    Videos take minutes: you usually get a job handle first; call get_status(job_id) to wait
    again. When done, the result shows the first frame and a contact sheet of frames spread
    over the video, plus the saved file's path and resource_uri, its seed, size, seconds and
    fps. Costs about $0.02 per second of video (estimate_cost says). A repeated identical call
    within a few minutes returns the same job instead of paying twice.
    """
    state = state_of(ctx)
    source = None
    if source_image:
        source = await read_source_image(state, source_image, "source_image")
    request = build_request(
        lambda: VideoRequest(
            prompt=prompt,
            negative_prompt=negative_prompt,
            model=model,
            width=width,
            height=height,
            seconds=seconds,
            fps=fps,
            source_image=source,
            steps=steps,
            cfg_scale=cfg_scale,
            seed=seed,
            style=style,
        )
    )
    return await generate(ctx, request, wait_seconds=wait_seconds, new_job=new_job, inline=True)


async def generate_audio(
    prompt: Annotated[
        str,
        Field(
            min_length=1,
            max_length=2000,
            description="The music: genre, mood, instruments, voice (e.g. 'lofi piano, rain').",
        ),
    ],
    ctx: AppContext,
    lyrics: Annotated[
        Text | None,
        Field(max_length=20000, description="Words to sing, with [verse]/[chorus] tags."),
    ] = None,
    seconds: Annotated[float, Field(ge=10, le=300, description="Length of the song.")] = 30.0,
    bpm: Annotated[int | None, Field(ge=30, le=300, description="Tempo.")] = None,
    key_scale: Annotated[
        str | None, Field(pattern=KEY_SCALE_PATTERN, description="Key, e.g. 'C Major', 'F# minor'.")
    ] = None,
    time_signature: Annotated[TimeSignature | None, Field(description="Meter.")] = None,
    vocal_language: Annotated[
        str | None,
        Field(pattern=VOCAL_LANGUAGE_PATTERN, description="Two lowercase letters, e.g. 'en'."),
    ] = None,
    seed: MediaSeed = None,
    steps: Annotated[
        int | None, Field(ge=1, le=20, description="Inference steps; default: the model's.")
    ] = None,
    model: MediaModel = None,
    wait_seconds: WaitSeconds = None,
    new_job: NewJob = False,
) -> Annotated[CallToolResult, MediaJobReport]:
    """Generate music or sound (a WAV file) on AI Power Grid from a prompt and optional lyrics.

    Returns the saved file's path and resource_uri, its seed and length (the sound itself too
    when it fits a tool result, about 500 KB: rarely a whole song). If it is not finished
    within wait_seconds you get a job handle: call get_status(job_id) to wait again. A repeated
    identical call within a few minutes returns the same job instead of paying twice.
    """
    request = build_request(
        lambda: AudioRequest(
            prompt=prompt,
            lyrics=lyrics,
            model=model,
            seconds=seconds,
            steps=steps,
            bpm=bpm,
            key_scale=key_scale,
            time_signature=time_signature,
            vocal_language=vocal_language,
            seed=seed,
        )
    )
    return await generate(ctx, request, wait_seconds=wait_seconds, new_job=new_job, inline=True)


async def generate_3d(
    image: Annotated[
        str,
        Field(
            min_length=1,
            description="A picture of one object to model: an image's resource_uri "
            "(aipg://images/...), a data: URL, base64, or a local path inside the allowed folders.",
        ),
    ],
    ctx: AppContext,
    steps: Annotated[int | None, Field(ge=4, le=30, description="Sampling steps.")] = None,
    guidance: Annotated[float | None, Field(ge=1, le=10, description="Guidance strength.")] = None,
    target_faces: Annotated[
        int | None, Field(ge=5000, le=300000, description="Faces the mesh is reduced to.")
    ] = None,
    seed: MediaSeed = None,
    model: MediaModel = None,
    wait_seconds: WaitSeconds = None,
    new_job: NewJob = False,
) -> Annotated[CallToolResult, MediaJobReport]:
    """Turn a picture of an object into a textured 3D mesh (a GLB file) on AI Power Grid.

    Returns the saved file's path and resource_uri (model/gltf-binary) and its seed. Costs
    about $0.25 a mesh. If it is not finished within wait_seconds you get a job handle: call
    get_status(job_id) to wait again. A repeated identical call within a few minutes returns
    the same job instead of paying twice.
    """
    source = await read_source_image(state_of(ctx), image, "image")
    request = build_request(
        lambda: MeshRequest(
            image=source,
            model=model,
            steps=steps,
            guidance=guidance,
            target_faces=target_faces,
            seed=seed,
        )
    )
    return await generate(ctx, request, wait_seconds=wait_seconds, new_job=new_job, inline=False)
