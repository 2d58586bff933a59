"""Per-video randomisation of Synthetic Actions: format, figure placement, background, camera, distractor,
lighting and sensor noise.

`sample_scene(rng, motion, difficulty)` draws everything one video needs from one generator, in a fixed
order, and precomputes every per-frame quantity (camera path, figure joints in pixels, distractor path,
gain, noise offsets) so that rendering frame k is a pure function of k. That makes `stand_up` (frames of
`sit_down` in reverse order) exact and the output independent of worker count or order.

`difficulty` scales the nuisances (0 = clean: flat background, static camera, no distractor, no noise;
1 = moderate, the default; 2 = hard): figure size and position ranges, view angle, speed, lighting
drift, camera jitter/pan/zoom, distractor, noise and compression. Format choices (resolution, fps,
duration, container) follow the dataset definition at every difficulty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fstcn.model.synth.skeleton import (
    SIDE_VIEW_CLASSES,
    Body,
    PoseTrack,
    forward_kinematics,
    motion_track,
    sample_body,
)
from fstcn.model.synth.writer import Encoding

FPS_CHOICES = (15, 24, 25, 30)
# Landscape (width, height) and weights: mostly small frames (training resizes the short side to 128).
RESOLUTIONS = ((160, 120), (192, 144), (224, 168), (240, 180), (256, 192), (320, 240), (320, 180), (400, 300),
               (480, 360))  # fmt: skip
RESOLUTION_WEIGHTS = (3.0, 3.0, 3.0, 3.0, 2.0, 2.0, 1.0, 0.5, 0.5)
PORTRAIT_PROBABILITY = 0.15
DURATION_RANGE_S = (2.0, 6.0)
CONTAINER_WEIGHTS = {"mp4": 0.75, "avi": 0.15, "webm": 0.1}  # VP9 encodes slowest
NOISE_BANK = 3  # pre-drawn noise images; each frame takes a random window of one
ZOOM_STEP = 0.004  # log-zoom quantum of the background


@dataclass(frozen=True)
class Distractor:
    """A ball or box that drifts and bounces across the scene. Positions (F, 2) in frame pixels."""

    shape: str  # "ellipse" | "rectangle"
    colour: tuple[int, int, int]
    radius: float
    centres: np.ndarray
    in_front: bool


@dataclass(frozen=True)
class Scene:
    """Everything needed to render one video; per-frame arrays have F rows.

    joints (F, J, 2) figure joints in frame pixels, depth (F, J) towards the camera (larger = nearer),
    scale (F,) pixels per figure unit (standing height about 1), canvas (Hc, Wc, 3) uint8 background,
    zoom_levels (F,) int: frame k shows the canvas scaled by exp(level * ZOOM_STEP), view_offsets (F, 2)
    int: from pixel (x, y) of that scaled canvas; chair (F, K, 2, 2) line segments in frame pixels or None.
    """

    motion: str
    width: int
    height: int
    fps: int
    frames: int
    encoding: Encoding
    body: Body
    track: PoseTrack
    yaw: float  # 0 = facing the camera, +-pi/2 = profile facing right/left
    joints: np.ndarray
    depth: np.ndarray
    scale: np.ndarray
    limb_width: float  # figure units
    colours: dict[str, tuple[int, int, int]]
    canvas: np.ndarray
    zoom_levels: np.ndarray
    view_offsets: np.ndarray
    chair: np.ndarray | None
    chair_colour: tuple[int, int, int]
    distractor: Distractor | None
    gain: np.ndarray
    noise: np.ndarray | None  # (NOISE_BANK, H + 8, W + 8, 3) int16
    noise_index: np.ndarray  # (F, 3) bank, dy, dx

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


def _spread(centre: float, half: float, difficulty: float, low: float, high: float) -> tuple[float, float]:
    """The range centre +- half*difficulty, clipped to [low, high]."""
    return max(low, centre - half * difficulty), min(high, centre + half * difficulty)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float64)


def _contrasting_colour(
    rng: np.random.Generator, against: float, min_contrast: float
) -> tuple[int, int, int]:
    """A random colour whose luminance differs from `against` by at least `min_contrast`."""
    colour = _random_colour(rng)
    for _ in range(30):
        if abs(float(_luminance(colour)) - against) >= min_contrast:
            break
        colour = _random_colour(rng)
    else:  # push the luminance away from the background's
        colour = np.clip(colour + (min_contrast if against < 128 else -min_contrast) * 1.5, 0, 255)
    return (int(colour[0]), int(colour[1]), int(colour[2]))


def _background(
    rng: np.random.Generator, height: int, width: int, difficulty: float, ground_y: float
) -> np.ndarray:
    """(height, width, 3) uint8 canvas: flat, gradient or noise texture, optional floor and clutter."""
    kinds = ("flat", "gradient", "texture") if difficulty > 0 else ("flat",)
    kind = kinds[int(rng.integers(len(kinds)))]
    base = _random_colour(rng) * 0.8 + 25
    canvas = np.empty((height, width, 3), dtype=np.float32)
    canvas[:] = base
    if kind == "gradient":
        other = _random_colour(rng) * 0.8 + 25
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        ramp = xx * np.cos(angle) + yy * np.sin(angle)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
        canvas += ramp[..., None] * (other - base)[None, None, :].astype(np.float32)
    elif kind == "texture":
        from PIL import Image

        cells = int(rng.integers(4, 24))
        coarse = rng.normal(0.0, 1.0, size=(max(2, height // cells), max(2, width // cells), 3))
        coarse = ((np.clip(coarse, -2.5, 2.5) + 2.5) / 5 * 255).astype(np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR))
        canvas += (smooth.astype(np.float32) - 127.5) * rng.uniform(0.15, 0.35) * min(difficulty, 2.0)
    if difficulty > 0 and rng.random() < 0.5:  # a floor below the figure's feet
        floor = int(np.clip(ground_y - rng.uniform(0.0, 0.15) * height, 0, height))
        canvas[floor:] = canvas[floor:] * rng.uniform(0.6, 0.9) + _random_colour(rng) * 0.15
    canvas = np.clip(canvas, 0, 255).astype(np.uint8)
    clutter = int(rng.integers(0, 1 + round(6 * difficulty)))
    if clutter:
        from PIL import Image, ImageDraw

        image = Image.fromarray(canvas)
        draw = ImageDraw.Draw(image)
        for _ in range(clutter):
            colour = tuple(int(c) for c in _random_colour(rng))
            x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
            w, h = rng.uniform(0.03, 0.2) * width, rng.uniform(0.03, 0.2) * height
            shape = int(rng.integers(3))
            if shape == 0:
                draw.rectangle((x0, y0, x0 + w, y0 + h), fill=colour)
            elif shape == 1:
                draw.ellipse((x0, y0, x0 + w, y0 + h), fill=colour)
            else:
                draw.line((x0, y0, x0 + w, y0 + h), fill=colour, width=int(rng.integers(1, 5)))
        canvas = np.asarray(image).copy()
    return canvas


def _chair_segments(track: PoseTrack, joints3d: np.ndarray) -> np.ndarray:
    """(K, 2, 3) chair line segments in the figure frame, seat under the deepest pose's pelvis."""
    deepest = int(np.argmin(joints3d[:, 0, 1]))
    pelvis = joints3d[deepest, 0]
    seat_y, seat_z = max(pelvis[1] - 0.04, 0.12), pelvis[2]
    front, back, half = seat_z + 0.12, seat_z - 0.1, 0.13
    segments = []
    for x in (-half, half):
        segments += [
            ((x, seat_y, back), (x, seat_y, front)),  # seat side
            ((x, 0.0, front), (x, seat_y, front)),  # front leg
            ((x, 0.0, back), (x, seat_y + 0.32, back)),  # back leg and backrest post
        ]
    segments += [
        ((-half, seat_y, front), (half, seat_y, front)),
        ((-half, seat_y + 0.3, back), (half, seat_y + 0.3, back)),
    ]
    return np.asarray(segments, dtype=np.float64)


def _project(points: np.ndarray, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """(..., 3) figure-frame points -> ((..., 2) image-plane x, y-up; (...) depth towards the camera)."""
    x = points[..., 0] * np.cos(yaw) + points[..., 2] * np.sin(yaw)
    depth = -points[..., 0] * np.sin(yaw) + points[..., 2] * np.cos(yaw)
    return np.stack([x, points[..., 1]], axis=-1), depth


def sample_scene(rng: np.random.Generator, motion: str, difficulty: float = 1.0) -> Scene:
    """Draw one video's scene for motion class `motion` (`stand_up` videos pass "sit_down")."""
    if difficulty < 0:
        raise ValueError(f"difficulty must be >= 0, got {difficulty}")
    d = difficulty
    # --- format
    fps = int(FPS_CHOICES[int(rng.integers(len(FPS_CHOICES)))])
    weights = np.asarray(RESOLUTION_WEIGHTS) / sum(RESOLUTION_WEIGHTS)
    width, height = RESOLUTIONS[int(rng.choice(len(RESOLUTIONS), p=weights))]
    if rng.random() < PORTRAIT_PROBABILITY:
        width, height = height, width
    frames = max(2, round(rng.uniform(*DURATION_RANGE_S) * fps))
    names = list(CONTAINER_WEIGHTS)
    container = names[int(rng.choice(len(names), p=np.asarray(list(CONTAINER_WEIGHTS.values()))))]
    if container == "mp4":
        quality = int(rng.integers(18, 24 + round(5 * min(d, 3))))
    elif container == "avi":
        quality = int(rng.integers(2, 4 + round(4 * min(d, 3))))
    else:
        quality = int(rng.integers(24, 32 + round(8 * min(d, 3))))
    preset = "veryfast" if rng.random() < 0.15 else "ultrafast"  # ultrafast: no CABAC, no deblocking
    encoding = Encoding(container=container, quality=quality, preset=preset)
    t = np.arange(frames) / fps

    # --- figure and its motion
    body = sample_body(rng, d)
    track = motion_track(motion, t, rng, d)
    joints3d = forward_kinematics(track, body)  # (F, J, 3)
    side_view = motion in SIDE_VIEW_CLASSES
    if side_view:  # profile, turned up to 40 deg x difficulty towards the camera
        yaw = np.pi / 2 - rng.uniform(0.0, min(np.radians(40) * d, np.pi / 2))
    else:  # facing the camera, turned up to 35 deg x difficulty
        yaw = rng.uniform(0.0, min(np.radians(35) * d, np.pi / 2))
    yaw = float(yaw if rng.random() < 0.5 else -yaw)  # facing left or right equally often
    plane, depth = _project(joints3d, yaw)  # (F, J, 2) x right / y up, (F, J)
    chair3d = _chair_segments(track, joints3d) if track.chair else None

    low, high = _spread(0.575, 0.175, d, 0.25, 0.85)
    # px per figure unit (the standing figure's height), relative to the short side so that a portrait
    # frame's centre crop still holds the figure
    scale = rng.uniform(low, high) * min(width, height)
    head_r = body.head_radius
    x_min, x_max = float(plane[..., 0].min()) - 0.08, float(plane[..., 0].max()) + 0.08
    y_min, y_max = float(plane[..., 1].min()) - 0.03, float(plane[..., 1].max()) + head_r + 0.02
    # keep the whole motion inside 94% of the frame
    scale = min(scale, 0.94 * width / (x_max - x_min), 0.94 * height / (y_max - y_min))
    # off-centre by up to 12% (x) / 8% (y) of the frame x difficulty, never beyond the frame
    slack_x = max(0.0, width - scale * (x_max - x_min)) / 2
    offset_x = np.clip(rng.uniform(-0.12, 0.12) * d * width, -slack_x, slack_x)
    centre_x = width / 2 - scale * (x_min + x_max) / 2 + offset_x
    slack_y = max(0.0, height - scale * (y_max - y_min)) / 2
    offset_y = np.clip(rng.uniform(-0.08, 0.08) * d * height, -slack_y, slack_y)
    ground = height / 2 + scale * (y_min + y_max) / 2 + offset_y
    limb_width = rng.uniform(*_spread(0.06, 0.015, d, 0.03, 0.09))

    # --- camera: slow pan/zoom and jitter around the frame centre (world = frame pixels at t = 0)
    zoom_rate = rng.uniform(-0.03, 0.03) * d  # per second, log scale
    zoom = np.exp(np.clip(zoom_rate * (t - t[-1] / 2), -0.15, 0.15))  # (F,)
    pan_speed = rng.uniform(-1, 1, size=2) * np.array([0.03 * width, 0.015 * height]) * d  # px / s
    jitter_amp = rng.uniform(0.0, 1.5) * d
    jitter_hz = rng.uniform(0.5, 2.0)
    jitter_phase = rng.uniform(0, 2 * np.pi, size=2)
    shift = pan_speed[None, :] * (t - t[-1] / 2)[:, None]  # (F, 2)
    shift += jitter_amp * np.sin(2 * np.pi * jitter_hz * t[:, None] + jitter_phase[None, :])
    shift += rng.normal(0.0, 0.3 * d, size=(frames, 2))
    centre = np.array([width / 2, height / 2])

    def to_frame(world: np.ndarray) -> np.ndarray:
        """(F, ..., 2) world pixels -> frame pixels."""
        extra = (1,) * (world.ndim - 2)
        z = zoom.reshape(-1, *extra, 1)
        return z * (world - centre - shift.reshape(-1, *extra, 2)) + centre

    # world pixels: x right, y down
    world = np.stack([centre_x + scale * plane[..., 0], ground - scale * plane[..., 1]], axis=-1)
    joints = to_frame(world)
    chair = None
    if chair3d is not None:
        chair_plane, _ = _project(chair3d, yaw)  # (K, 2, 2)
        chair_world = np.stack(
            [centre_x + scale * chair_plane[..., 0], ground - scale * chair_plane[..., 1]], -1
        )
        chair = to_frame(np.broadcast_to(chair_world, (frames, *chair_world.shape)))

    # the background window of each frame in world pixels, and a canvas that covers all of them
    corners_lo = (0 - centre) / zoom[:, None] + centre + shift  # (F, 2) world of frame pixel (0, 0)
    corners_hi = (np.array([width, height]) - centre) / zoom[:, None] + centre + shift
    origin = np.floor(corners_lo.min(axis=0)) - 2
    extent = np.ceil(corners_hi.max(axis=0)) + 2 - origin
    canvas = _background(rng, int(extent[1]), int(extent[0]), d, ground - origin[1])
    # Resampling the background every frame is the generator's most expensive step, so the background
    # zooms in steps of ZOOM_STEP (edges move < 1 px per step) and shifts by whole pixels: frame pixel
    # (u, v) shows pixel (u, v) + offset of the canvas scaled by the frame's zoom level.
    zoom_levels = np.round(np.log(zoom) / ZOOM_STEP).astype(np.int64)  # (F,)
    level_zoom = np.exp(zoom_levels * ZOOM_STEP)[:, None]
    scaled_size = np.round(extent[None, :] * level_zoom).astype(np.int64)  # (F, 2) width, height
    offsets = np.round((centre + shift - origin) * level_zoom - centre).astype(np.int64)
    offsets = np.clip(offsets, 0, np.maximum(scaled_size - np.array([width, height]), 0))

    # --- colours, contrasting with the background around the figure
    # (frame pixels are close to world pixels: the camera moves slowly)
    lo = np.clip(joints.reshape(-1, 2).min(axis=0) - origin, 0, None).astype(int)
    hi = np.clip(joints.reshape(-1, 2).max(axis=0) - origin, 0, None).astype(int) + 1
    region = canvas[lo[1] : hi[1], lo[0] : hi[0]]
    background_luma = (
        float(_luminance(region.reshape(-1, 3).astype(np.float64)).mean()) if region.size else 128.0
    )
    min_contrast = 70.0 / max(d, 1.0) if d > 0 else 100.0
    colours = {
        "shirt": _contrasting_colour(rng, background_luma, min_contrast),
        "pants": _contrasting_colour(rng, background_luma, min_contrast),
        "skin": _contrasting_colour(rng, background_luma, min_contrast * 0.8),
        "shoes": _contrasting_colour(rng, background_luma, min_contrast * 0.8),
    }
    chair_colour = _contrasting_colour(rng, background_luma, 40.0)

    # --- distractor
    distractor = None
    if rng.random() < min(0.85 * d, 1.0):
        radius = rng.uniform(0.04, 0.1) * min(width, height)
        start = rng.uniform([0, 0], [width, height])
        velocity = rng.uniform(-1, 1, size=2) * rng.uniform(0.1, 0.35) * d * width  # px / s
        path = start[None, :] + velocity[None, :] * t[:, None]
        # bounce inside the frame: reflect into [0, size]
        size = np.array([width, height], dtype=np.float64)
        path = np.abs(np.mod(path, 2 * size) - size)
        path = size - path
        distractor = Distractor(
            shape=("ellipse", "rectangle")[int(rng.integers(2))],
            colour=tuple(int(c) for c in _random_colour(rng)),  # type: ignore[arg-type]
            radius=float(radius),
            centres=to_frame(path),
            in_front=bool(rng.random() < 0.3),
        )

    # --- lighting drift and sensor noise
    drift = (
        rng.uniform(0.0, 0.08)
        * d
        * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 2 * np.pi))
    )
    drift += rng.uniform(-0.1, 0.1) * d * (t / max(float(t[-1]), 1e-6) - 0.5)
    gain = 1.0 + drift
    sigma = rng.uniform(0.0, 4.0) * d
    noise = None
    if sigma >= 0.5:
        bank = rng.standard_normal(size=(NOISE_BANK, height + 8, width + 8, 3), dtype=np.float32)
        noise = np.round(bank * sigma).astype(np.int16)
    noise_index = np.stack(
        [rng.integers(0, NOISE_BANK, frames), rng.integers(0, 9, frames), rng.integers(0, 9, frames)], axis=1
    )

    return Scene(
        motion=motion,
        width=width,
        height=height,
        fps=fps,
        frames=frames,
        encoding=encoding,
        body=body,
        track=track,
        yaw=yaw,
        joints=joints,
        depth=depth,
        scale=scale * zoom,
        limb_width=float(limb_width),
        colours=colours,
        canvas=canvas,
        zoom_levels=zoom_levels,
        view_offsets=offsets,
        chair=chair,
        chair_colour=chair_colour,
        distractor=distractor,
        gain=gain,
        noise=noise,
        noise_index=noise_index,
    )
