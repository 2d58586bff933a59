"""The articulated figure of Synthetic Actions and the per-class joint-angle trajectories that drive it.

A figure is a 3-D stick skeleton in its own frame (x = the figure's left, y = up, z = the way it faces;
standing height about 1): pelvis, neck, head, two-segment arms (shoulder, elbow, hand) and legs (hip,
knee, ankle, toe). Every limb segment's direction is an absolute pair of angles (flexion f towards +z,
abduction a away from the body's midline), so one formula (`limb_direction`) serves arms and legs:
f = a = 0 hangs straight down, f = pi/2 points forward, a = pi/2 points sideways, a = pi points up.
The torso leans forward by `lean` about the hips. Feet are kept on the ground (plus `lift` when
jumping) and anchored horizontally, so a squat moves the hips back rather than sliding the feet.

Each motion class is a function of time (seconds) and a random generator that draws its own per-video
motion parameters (speed 0.6x-1.6x, phase, amplitudes, which arm or leg): nothing in a class depends on
the figure's left or right, so a horizontally flipped video is as likely as the original. `stand_up`
has no trajectory of its own: it is `sit_down` rendered and then played backwards (see `render.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The classes with a trajectory of their own; `stand_up` is `sit_down` reversed.
MOTION_CLASSES = ("wave", "clap", "jumping_jack", "jump", "squat", "punch", "kick", "bow", "sit_down")
# Classes filmed side-on by default (their motion is in the sagittal plane), the rest mostly frontally.
SIDE_VIEW_CLASSES = frozenset({"squat", "punch", "kick", "bow", "sit_down"})

JOINTS = (
    "pelvis",
    "neck",
    "head",
    "shoulder_r",
    "elbow_r",
    "hand_r",
    "shoulder_l",
    "elbow_l",
    "hand_l",
    "hip_r",
    "knee_r",
    "ankle_r",
    "toe_r",
    "hip_l",
    "knee_l",
    "ankle_l",
    "toe_l",
)
J = {name: index for index, name in enumerate(JOINTS)}
SIDES = (-1.0, 1.0)  # index 0 = the figure's right (x < 0), index 1 = its left


@dataclass(frozen=True)
class Body:
    """Segment lengths in units of a standing height of about 1."""

    thigh: float = 0.25
    shin: float = 0.25
    shoulder_height: float = 0.29  # pelvis -> shoulder line along the torso
    neck_height: float = 0.32  # pelvis -> neck
    head_height: float = 0.41  # pelvis -> head centre
    head_radius: float = 0.075
    shoulder_half: float = 0.11
    hip_half: float = 0.055
    upper_arm: float = 0.16
    forearm: float = 0.15
    foot: float = 0.07


def sample_body(rng: np.random.Generator, difficulty: float) -> Body:
    """Random proportions: each body part scaled by up to +-6% x difficulty (capped at +-20%)."""
    spread = min(0.06 * difficulty, 0.2)

    def jitter() -> float:
        return float(1.0 + rng.uniform(-spread, spread))

    legs, torso, arms, width, head = jitter(), jitter(), jitter(), jitter(), jitter()
    base = Body()
    return Body(
        thigh=base.thigh * legs,
        shin=base.shin * legs,
        shoulder_height=base.shoulder_height * torso,
        neck_height=base.neck_height * torso,
        head_height=base.head_height * torso + (head - 1.0) * base.head_radius,
        head_radius=base.head_radius * head,
        shoulder_half=base.shoulder_half * width,
        hip_half=base.hip_half * width,
        upper_arm=base.upper_arm * arms,
        forearm=base.forearm * arms,
        foot=base.foot * legs,
    )


@dataclass
class PoseTrack:
    """Joint angles over T frames.

    lean (T,) torso flexion; lift (T,) height of the feet above the ground; arm and leg (T, 2, 4) per side
    (0 = right, 1 = left): upper f, upper a, lower f, lower a; anchor (2,) weights of the two feet that
    fix the figure horizontally; chair: draw a chair under the deepest sitting pose.
    """

    lean: np.ndarray
    lift: np.ndarray
    arm: np.ndarray
    leg: np.ndarray
    anchor: np.ndarray
    chair: bool = False


def limb_direction(f: np.ndarray, a: np.ndarray, side: float) -> np.ndarray:
    """(...,) flexion, abduction -> (..., 3) unit direction in the figure's frame."""
    return np.stack([side * np.sin(a), -np.cos(a) * np.cos(f), np.cos(a) * np.sin(f)], axis=-1)


def forward_kinematics(track: PoseTrack, body: Body) -> np.ndarray:
    """PoseTrack over T frames -> joints (T, len(JOINTS), 3) in the figure frame, feet on y = lift."""
    frames = track.lean.shape[0]
    joints = np.zeros((frames, len(JOINTS), 3))
    up = np.stack([np.zeros(frames), np.cos(track.lean), np.sin(track.lean)], axis=-1)  # (T, 3)
    joints[:, J["neck"]] = up * body.neck_height
    joints[:, J["head"]] = up * body.head_height
    for index, side in enumerate(SIDES):
        suffix = "_r" if index == 0 else "_l"
        shoulder = up * body.shoulder_height + np.array([side * body.shoulder_half, 0.0, 0.0])
        arm = track.arm[:, index]  # (T, 4)
        elbow = shoulder + body.upper_arm * limb_direction(arm[:, 0], arm[:, 1], side)
        hand = elbow + body.forearm * limb_direction(arm[:, 2], arm[:, 3], side)
        hip = np.broadcast_to(np.array([side * body.hip_half, 0.0, 0.0]), (frames, 3))
        leg = track.leg[:, index]
        knee = hip + body.thigh * limb_direction(leg[:, 0], leg[:, 1], side)
        ankle = knee + body.shin * limb_direction(leg[:, 2], leg[:, 3], side)
        # A foot stays flat unless its shin swings forward (a kick points the toes).
        foot_f = np.pi / 2 + 0.8 * np.clip(leg[:, 2], 0.0, None)
        toe = ankle + body.foot * limb_direction(foot_f, np.zeros(frames), side)
        for name, value in (("shoulder", shoulder), ("elbow", elbow), ("hand", hand)):
            joints[:, J[name + suffix]] = value
        for name, value in (("hip", hip), ("knee", knee), ("ankle", ankle), ("toe", toe)):
            joints[:, J[name + suffix]] = value
    # Feet on the ground (+ lift), feet anchored horizontally at z = 0.
    feet = joints[:, [J["ankle_r"], J["ankle_l"]]]  # (T, 2, 3)
    lowest = joints[:, [J["ankle_r"], J["ankle_l"], J["toe_r"], J["toe_l"]], 1].min(axis=1)  # (T,)
    shift_z = -(feet[:, :, 2] * track.anchor[None, :]).sum(axis=1) / track.anchor.sum()
    joints[:, :, 1] += (track.lift - lowest)[:, None]
    joints[:, :, 2] += shift_z[:, None]
    return joints


# ---------------------------------------------------------------------------------------------------
# Trajectories. `t` is (T,) seconds; every function draws its motion parameters from `rng` first.


def _rest_track(frames: int, rng: np.random.Generator) -> PoseTrack:
    """A relaxed standing pose with per-video variation; classes overwrite what they move."""
    arm = np.zeros((frames, 2, 4))
    leg = np.zeros((frames, 2, 4))
    for side in range(2):
        upper_f, upper_a = rng.uniform(-0.1, 0.15), rng.uniform(0.15, 0.3)
        arm[:, side] = (upper_f, upper_a, upper_f + rng.uniform(0.0, 0.3), upper_a * 0.7)
        leg_a = rng.uniform(0.02, 0.08)
        leg[:, side] = (0.0, leg_a, 0.0, leg_a)
    return PoseTrack(
        lean=np.full(frames, rng.uniform(-0.03, 0.05)),
        lift=np.zeros(frames),
        arm=arm,
        leg=leg,
        anchor=np.ones(2),
    )


def _cycle(t: np.ndarray, hz: float, speed: float, phase: float) -> np.ndarray:
    """(T,) cycle position in [0, 1) of a periodic motion at `hz` x `speed` starting at `phase`."""
    return np.mod(t * hz * speed + phase, 1.0)


def _bump(p: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Smooth pulse in [0, 1] on the cycle position p, peaking at centre (wraps around)."""
    d = np.abs(np.mod(p - centre + 0.5, 1.0) - 0.5)
    return np.exp(-0.5 * (d / width) ** 2)


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _guard(track: PoseTrack, rng: np.random.Generator) -> None:
    """Fists up in front of the chin (punch and kick start from it)."""
    for side in range(2):
        upper_f = rng.uniform(0.35, 0.65)
        track.arm[:, side] = (upper_f, rng.uniform(0.15, 0.35), rng.uniform(2.4, 2.8), -0.2)


def _wave(t: np.ndarray, rng: np.random.Generator, speed: float, phase: float) -> PoseTrack:
    track = _rest_track(t.size, rng)
    side = int(rng.integers(2))
    both = rng.random() < 0.25
    hz = rng.uniform(1.3, 1.9)
    swing = rng.uniform(0.35, 0.55)
    raise_a = rng.uniform(2.2, 2.6)
    p = _cycle(t, hz, speed, phase)
    for s in (0, 1) if both else (side,):
        track.arm[:, s, 0] = rng.uniform(0.0, 0.3)
        track.arm[:, s, 1] = raise_a
        track.arm[:, s, 2] = 0.15
        track.arm[:, s, 3] = 2.9 + swing * np.sin(2 * np.pi * p + (np.pi if s == 1 else 0.0))
    return track


def _clap(t: np.ndarray, rng: np.random.Generator, speed: float, phase: float) -> PoseTrack:
    track = _rest_track(t.size, rng)
    hz = rng.uniform(1.6, 2.4)
    height = rng.uniform(0.8, 1.3)  # upper-arm flexion: hands from chest to face height
    opening = 0.5 + 0.5 * np.cos(2 * np.pi * _cycle(t, hz, speed, phase))  # 0 = hands together
    opening = opening ** rng.uniform(0.7, 1.3)
    for side in range(2):
        track.arm[:, side, 0] = height
        track.arm[:, side, 1] = 0.25 + 0.25 * opening
        track.arm[:, side, 2] = height + 0.45
        track.arm[:, side, 3] = -1.0 + 1.6 * opening
    return track


def _jumping_jack(t: np.ndarray, rng: np.random.Generator, speed: float, phase: float) -> PoseTrack:
    track = _rest_track(t.size, rng)
    hz = rng.uniform(0.9, 1.3)
    p = _cycle(t, hz, speed, phase)
    spread = 0.5 - 0.5 * np.cos(2 * np.pi * p)  # 0 = closed, 1 = arms up, legs apart
    top = rng.uniform(2.6, 2.95)
    legs = rng.uniform(0.25, 0.38)
    for side in range(2):
        track.arm[:, side] = np.stack(
            [np.full(t.size, 0.05), 0.15 + (top - 0.15) * spread, np.full(t.size, 0.1), 0.1 + top * spread],
            axis=-1,
        )
        track.leg[:, side, 1] = 0.03 + legs * spread
        track.leg[:, side, 3] = 0.03 + legs * spread
    track.lift = rng.uniform(0.03, 0.07) * np.sin(2 * np.pi * p) ** 2
    return track


def _jump(t: np.ndarray, rng: np.random.Generator, speed: float, phase: float) -> PoseTrack:
    track = _rest_track(t.size, rng)
    hz = rng.uniform(0.7, 1.0)
    height = rng.uniform(0.15, 0.3)
    depth = rng.uniform(0.7, 1.0)
    p = _cycle(t, hz, speed, phase)
    air = np.clip((p - 0.3) / 0.35, 0.0, 1.0)
    track.lift = height * np.sin(np.pi * air)
    crouch = depth * (_bump(p, 0.2, 0.07) + 0.8 * _bump(p, 0.75, 0.06))
    swing = np.where((p > 0.25) & (p < 0.7), np.sin(np.pi * air), 0.0)  # arms up in the air
    for side in range(2):
        track.leg[:, side, 0] = 1.1 * crouch
        track.leg[:, side, 2] = -0.7 * crouch
        track.arm[:, side, 0] = -0.6 * crouch + 2.4 * swing
        track.arm[:, side, 2] = -0.4 * crouch + 2.5 * swing
    track.lean = track.lean + 0.45 * crouch
    return track


def sit_pose(track: PoseTrack, u: np.ndarray, rng: np.random.Generator) -> None:
    """Blend the track from standing (u = 0) to seated/squatting (u = 1); shared by squat and sit_down."""
    arms_forward = rng.uniform(0.3, 1.3)
    thigh = rng.uniform(1.35, 1.55)
    shin = rng.uniform(0.1, 0.35)
    lean = rng.uniform(0.25, 0.5)
    for side in range(2):
        track.leg[:, side, 0] = thigh * u
        track.leg[:, side, 2] = -shin * u
        track.arm[:, side, 0] = track.arm[:, side, 0] * (1 - u) + arms_forward * u
        track.arm[:, side, 2] = track.arm[:, side, 2] * (1 - u) + (arms_forward + 0.2) * u
    track.lean = track.lean + lean * u


def _squat(t: np.ndarray, rng: np.random.Generator, speed: float, phase: float) -> PoseTrack:
    track = _rest_track(t.size, rng)
    hz = rng.uniform(0.4, 0.6)
    depth = rng.uniform(0.8, 1.0)
    chair = rng.random() < 0.5
    # at least 1.5 cycles per video: half a slow cycle would be a sit_down or stand_up
    duration = max(float(t[-1]), 1e-6)
    hz = max(hz, 1.5 / (duration * speed))
    u = depth * (0.5 - 0.5 * np.cos(2 * np.pi * _cycle(t, hz, speed, phase)))
    sit_pose(track, u, rng)
    track.chair = chair
    return track


def _sit_down(t: np.ndarray, rng: np.random.Generator, speed: float, phase: float) -> PoseTrack:
    """Standing -> seated once, monotone, over most of the clip (1.2-4 s of motion, then seated)."""
    track = _rest_track(t.size, rng)
    duration = float(t[-1]) if t.size > 1 else 1.0
    chair = rng.random() < 0.5
    motion = float(np.clip(rng.uniform(0.6, 0.9) * duration / speed, 1.2, min(4.0, 0.92 * duration)))
    start = rng.uniform(0.05, 0.95) * (duration - motion)
    u = smoothstep((t - start) / motion)
    sit_pose(track, u, rng)
    track.chair = chair
    return track


def _punch(t: np.ndarray, rng: np.random.Generator, speed: float, phase: float) -> PoseTrack:
    track = _rest_track(t.size, rng)
    _guard(track, rng)
    hz = rng.uniform(1.0, 1.5)
    first = int(rng.integers(2))
    alternate = rng.random() < 0.5
    p_arm = _cycle(t, hz, speed, phase)
    for side in range(2):
        if alternate:
            # Alternating: each arm punches every other beat.
            extend = _bump(np.mod(p_arm * 0.5 + (0.5 if side != first else 0.0), 1.0), 0.15, 0.05)
        else:
            extend = _bump(p_arm, 0.3, 0.09) if side == first else np.zeros(t.size)
        guard_f, guard_lower = track.arm[:, side, 0].copy(), track.arm[:, side, 2].copy()
        track.arm[:, side, 0] = guard_f + (1.5 - guard_f) * extend
        track.arm[:, side, 1] = track.arm[:, side, 1] * (1 - extend)
        track.arm[:, side, 2] = guard_lower + (1.55 - guard_lower) * extend
        track.arm[:, side, 3] = -0.2 * (1 - extend)
    stance = rng.uniform(0.15, 0.3)
    track.leg[:, first, 0] = track.leg[:, first, 2] = -stance
    track.leg[:, 1 - first, 0] = track.leg[:, 1 - first, 2] = stance
    return track


def _kick(t: np.ndarray, rng: np.random.Generator, speed: float, phase: float) -> PoseTrack:
    track = _rest_track(t.size, rng)
    _guard(track, rng)
    hz = rng.uniform(0.55, 0.85)
    side = int(rng.integers(2))
    height = rng.uniform(1.1, 1.5)
    p = _cycle(t, hz, speed, phase)
    k = _bump(p, 0.35, 0.14)  # 0 = standing, 1 = leg fully extended
    track.leg[:, side, 0] = height * k
    track.leg[:, side, 2] = height * k * 1.05 - 2.4 * height * k * (1 - k)  # chamber, then extend
    track.leg[:, side, 1] = track.leg[:, side, 3] = 0.02
    track.lean = track.lean - 0.2 * k
    track.anchor = np.eye(2)[1 - side]  # the support foot stays put
    return track


def _bow(t: np.ndarray, rng: np.random.Generator, speed: float, phase: float) -> PoseTrack:
    track = _rest_track(t.size, rng)
    hz = rng.uniform(0.3, 0.5)
    depth = rng.uniform(0.8, 1.3)
    p = _cycle(t, hz, speed, phase)
    # down over 30% of the cycle, hold 20%, up over 30%, hold upright 20%
    down = smoothstep(p / 0.3) * (1 - smoothstep((p - 0.5) / 0.3))
    track.lean = track.lean + depth * down
    follow = rng.uniform(0.2, 0.6)  # how far the hanging arms follow the torso
    for side in range(2):
        track.arm[:, side, 0] = track.arm[:, side, 0] + follow * depth * down
        track.arm[:, side, 2] = track.arm[:, side, 2] + follow * depth * down
    return track


_TRAJECTORIES = {
    "wave": _wave,
    "clap": _clap,
    "jumping_jack": _jumping_jack,
    "jump": _jump,
    "squat": _squat,
    "punch": _punch,
    "kick": _kick,
    "bow": _bow,
    "sit_down": _sit_down,
}


def motion_track(name: str, t: np.ndarray, rng: np.random.Generator, difficulty: float) -> PoseTrack:
    """The joint-angle track of motion class `name` at times t (T,) seconds.

    Speed is log-uniform in [0.6, 1.6] at difficulty 1 (widened with difficulty, 1.0 at difficulty 0);
    the phase is uniform.
    """
    if name not in _TRAJECTORIES:
        raise ValueError(f"unknown motion class {name!r}; expected one of {MOTION_CLASSES}")
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"t must be a non-empty 1-D array of seconds, got shape {t.shape}")
    low, high = np.log(0.6) * difficulty, np.log(1.6) * difficulty
    speed = float(np.exp(rng.uniform(low, high))) if difficulty > 0 else 1.0
    phase = float(rng.random())
    return _TRAJECTORIES[name](t, rng, speed, phase)
