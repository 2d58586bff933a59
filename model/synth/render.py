"""Drawing Synthetic Actions frames (and the figure's masks and boxes) from a sampled `Scene`.

Frame k is a pure function of (scene, k): the background window is resampled from the scene's canvas
(slow pan/zoom and jitter), then the chair, the distractor and the figure are drawn with PIL (body
parts far from the camera first and slightly darker), then the lighting gain and a window of the
pre-drawn sensor noise are applied. `render_frames(scene, reverse=True)` therefore plays a video
exactly backwards, which is how `stand_up` is made from `sit_down`.

The figure mask is the silhouette of the same drawing primitives at 1/MASK_STRIDE resolution, drawn
whether or not the distractor occludes the figure; boxes are (x0, y0, x1, y1) frame pixels.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw

from fstcn.model.synth.scene import ZOOM_STEP, Scene
from fstcn.model.synth.skeleton import J

MASK_STRIDE = 4

# (kind, points in frame px, colour, line width or dot radius px)
Point = tuple[float, float]
Primitive = tuple[str, tuple[Point, ...], tuple[int, int, int], float]


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return (int(colour[0] * factor), int(colour[1] * factor), int(colour[2] * factor))


def figure_primitives(scene: Scene, k: int) -> list[Primitive]:
    """The figure of frame k as drawing primitives, far body parts first."""
    p: list[Point] = [(x, y) for x, y in scene.joints[k].tolist()]  # J points
    z: list[float] = scene.depth[k].tolist()
    w = scene.limb_width * float(scene.scale[k])
    c = scene.colours
    torso_w = (0.1 + 0.06 * abs(np.cos(scene.yaw))) * float(scene.scale[k])
    groups: list[tuple[float, list[Primitive]]] = []
    arm_depth = [(z[J[f"shoulder{s}"]] + z[J[f"elbow{s}"]] + z[J[f"hand{s}"]]) / 3 for s in ("_r", "_l")]
    leg_depth = [(z[J[f"hip{s}"]] + z[J[f"knee{s}"]] + z[J[f"ankle{s}"]]) / 3 for s in ("_r", "_l")]
    for index, s in enumerate(("_r", "_l")):
        # the far limb of a pair is up to 22% darker, smoothly with the depth gap (no flicker head-on)
        arm_shade = 1.0 - 0.22 * min(max((arm_depth[1 - index] - arm_depth[index]) / 0.08, 0.0), 1.0)
        leg_shade = 1.0 - 0.22 * min(max((leg_depth[1 - index] - leg_depth[index]) / 0.08, 0.0), 1.0)
        shirt, skin = _shade(c["shirt"], arm_shade), _shade(c["skin"], arm_shade)
        pants, shoes = _shade(c["pants"], leg_shade), _shade(c["shoes"], leg_shade)
        shoulder, elbow, hand = p[J[f"shoulder{s}"]], p[J[f"elbow{s}"]], p[J[f"hand{s}"]]
        hip, knee, ankle, toe = p[J[f"hip{s}"]], p[J[f"knee{s}"]], p[J[f"ankle{s}"]], p[J[f"toe{s}"]]
        leg: list[Primitive] = [
            ("line", (hip, knee), pants, 1.15 * w),
            ("dot", (knee,), pants, 0.55 * w),
            ("line", (knee, ankle), pants, 1.05 * w),
            ("line", (ankle, toe), shoes, 0.9 * w),
            ("dot", (ankle,), shoes, 0.5 * w),
        ]
        arm: list[Primitive] = [
            ("dot", (shoulder,), shirt, 0.5 * w),
            ("line", (shoulder, elbow), shirt, w),
            ("dot", (elbow,), shirt, 0.5 * w),
            ("line", (elbow, hand), skin, 0.9 * w),
            ("dot", (hand,), skin, 0.65 * w),
        ]
        groups += [(leg_depth[index], leg), (arm_depth[index] + 0.01, arm)]
    torso: list[Primitive] = [
        ("line", (p[J["hip_r"]], p[J["hip_l"]]), c["pants"], 1.15 * w),
        ("line", (p[J["pelvis"]], p[J["neck"]]), c["shirt"], torso_w),
        ("dot", (p[J["neck"]],), c["shirt"], torso_w / 2),
        ("dot", (p[J["pelvis"]],), c["pants"], torso_w / 2),
        ("line", (p[J["shoulder_r"]], p[J["shoulder_l"]]), c["shirt"], w),
        ("line", (p[J["neck"]], p[J["head"]]), c["skin"], 0.7 * w),
    ]
    groups.append(((z[J["pelvis"]] + z[J["neck"]]) / 2, torso))
    head_radius = scene.body.head_radius * float(scene.scale[k])
    groups.append((z[J["head"]] + 0.005, [("dot", (p[J["head"]],), c["skin"], head_radius)]))
    groups.sort(key=lambda group: group[0])
    return [primitive for _, group in groups for primitive in group]


def _draw(draw: ImageDraw.ImageDraw, primitives: list[Primitive], factor: float, fill: object = None) -> None:
    """Draw primitives scaled by `factor` (1 = frame pixels); `fill` overrides every colour (masks)."""
    for kind, points, colour, size in primitives:
        ink = colour if fill is None else fill
        size *= factor
        if kind == "line":
            (x0, y0), (x1, y1) = points
            xy = [(x0 * factor, y0 * factor), (x1 * factor, y1 * factor)]
            draw.line(xy, fill=ink, width=max(1, round(size)))  # type: ignore[arg-type]
        else:
            x, y = points[0][0] * factor, points[0][1] * factor
            draw.ellipse((x - size, y - size, x + size, y + size), fill=ink)  # type: ignore[arg-type]


def _draw_distractor(draw: ImageDraw.ImageDraw, scene: Scene, k: int) -> None:
    distractor = scene.distractor
    assert distractor is not None
    x, y = distractor.centres[k]
    r = distractor.radius * float(scene.scale[k] / scene.scale[0])
    box = (x - r, y - r, x + r, y + r)
    if distractor.shape == "ellipse":
        draw.ellipse(box, fill=distractor.colour)
    else:
        draw.rectangle(box, fill=distractor.colour)


def _background(scene: Scene, canvases: dict[int, Image.Image], k: int) -> Image.Image:
    """The background of frame k: a crop of the canvas scaled to the frame's zoom level (memoised)."""
    level = int(scene.zoom_levels[k])
    if level not in canvases:
        base = canvases[0]
        factor = float(np.exp(level * ZOOM_STEP))
        size = (round(base.width * factor), round(base.height * factor))
        canvases[level] = base.resize(size, Image.Resampling.BILINEAR)
    x, y = (int(v) for v in scene.view_offsets[k])
    return canvases[level].crop((x, y, x + scene.width, y + scene.height))


def render_frame(scene: Scene, k: int, canvases: dict[int, Image.Image] | None = None) -> np.ndarray:
    """Frame k: (height, width, 3) uint8 RGB. `canvases` memoises the zoomed backgrounds across frames."""
    if not 0 <= k < scene.frames:
        raise ValueError(f"frame index {k} outside [0, {scene.frames})")
    if canvases is None:
        canvases = {}
    if 0 not in canvases:
        canvases[0] = Image.fromarray(scene.canvas)
    image = _background(scene, canvases, k)
    draw = ImageDraw.Draw(image)
    if scene.chair is not None:
        chair_width = max(2, round(0.03 * float(scene.scale[k])))
        for segment in scene.chair[k]:
            draw.line([tuple(segment[0]), tuple(segment[1])], fill=scene.chair_colour, width=chair_width)
    if scene.distractor is not None and not scene.distractor.in_front:
        _draw_distractor(draw, scene, k)
    _draw(draw, figure_primitives(scene, k), 1.0)
    if scene.distractor is not None and scene.distractor.in_front:
        _draw_distractor(draw, scene, k)
    frame = np.asarray(image)
    gain = round(float(scene.gain[k]) * 256)  # 8-bit fixed point
    if gain == 256 and scene.noise is None:
        return np.array(frame)
    out = (frame.astype(np.int32) * gain) >> 8 if gain != 256 else frame.astype(np.int16)
    if scene.noise is not None:
        bank, dy, dx = (int(v) for v in scene.noise_index[k])
        out += scene.noise[bank, dy : dy + scene.height, dx : dx + scene.width]
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def render_mask(scene: Scene, k: int) -> np.ndarray:
    """(ceil(height / MASK_STRIDE), ceil(width / MASK_STRIDE)) bool silhouette of the figure in frame k."""
    size = (-(-scene.width // MASK_STRIDE), -(-scene.height // MASK_STRIDE))
    image = Image.new("L", size, 0)
    _draw(ImageDraw.Draw(image), figure_primitives(scene, k), 1.0 / MASK_STRIDE, fill=255)
    return np.asarray(image) > 0


def figure_boxes(scene: Scene) -> np.ndarray:
    """(F, 4) float32 figure boxes x0, y0, x1, y1 in frame pixels (clipped to the frame)."""
    pad = (0.6 * scene.limb_width * scene.scale)[:, None]  # (F, 1)
    head = scene.joints[:, J["head"]]  # (F, 2)
    radius = (scene.body.head_radius * scene.scale)[:, None]
    low = np.minimum(scene.joints.min(axis=1) - pad, head - radius)
    high = np.maximum(scene.joints.max(axis=1) + pad, head + radius)
    boxes = np.concatenate([low, high], axis=1)
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, scene.width)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, scene.height)
    return boxes.astype(np.float32)


def frame_order(scene: Scene, reverse: bool = False) -> range:
    return range(scene.frames - 1, -1, -1) if reverse else range(scene.frames)


def render_frames(scene: Scene, reverse: bool = False) -> Iterator[np.ndarray]:
    """Every frame in order (or backwards), each (height, width, 3) uint8."""
    canvases: dict[int, Image.Image] = {}
    for k in frame_order(scene, reverse):
        yield render_frame(scene, k, canvases)


def render_video(scene: Scene, reverse: bool = False) -> np.ndarray:
    """(F, height, width, 3) uint8: all frames in memory (tests, previews)."""
    return np.stack(list(render_frames(scene, reverse)))
