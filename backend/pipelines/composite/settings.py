"""Settings of the main job: full quality, or the reduced ``--preview`` mode for CPU machines."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class CompositeSettings:
    """What the composite renders and how hard it works.

    ``render_long_side``: render size (long side, px; None keeps the footage's size), applied as
    Blender's integer resolution percentage. ``steps``: reconstruction training steps (trained
    at ``train_max_size`` px, long side).
    ``samples``: Cycles samples per pixel. ``env_face``: cube-face size (px) of the environment
    map rendered from the splats. ``occlusion_margin``: relative depth margin of the occlusion test.
    ``env_linear``: decode the splats' sRGB colours to linear light in the environment map.
    ``key_light``: add the sun found from the footage's shadows (:mod:`.sunlight`).
    """

    preview: bool = False
    render_long_side: int | None = None
    steps: int = 7000
    train_max_size: int = 1600
    samples: int = 64
    max_bounces: int | None = None
    denoise: bool = True
    env_face: int = 256
    env_exposure: float = 0.0
    env_rotation_deg: float = 0.0
    env_linear: bool = True
    key_light: bool = True
    occlusion_margin: float = 0.03
    device: str = "cpu"
    threads: int = 0
    crf: int = 18

    @classmethod
    def for_mode(cls, preview: bool, device: str, **overrides) -> "CompositeSettings":
        """Full-quality defaults, or the reduced preview defaults (render long side 240 px, 8
        samples, at most 4 light bounces, 60 training steps at 240 px, 32 px environment faces,
        no denoiser)."""
        base = cls(preview=True, render_long_side=240, steps=60, samples=8, denoise=False, env_face=32,
                   train_max_size=240, max_bounces=4) \
            if preview else cls()
        base.device = device
        for key, value in overrides.items():
            if value is not None:
                setattr(base, key, value)
        return base

    def percent(self, width: int, height: int) -> int:
        """Blender's resolution percentage giving a long side of about ``render_long_side``."""
        if not self.render_long_side:
            return 100
        return int(max(1, min(100, math.floor(100.0 * self.render_long_side / max(width, height) + 0.5))))

    def render_size(self, width: int, height: int) -> tuple[int, int]:
        """The render size Blender uses for this percentage (it truncates)."""
        p = self.percent(width, height)
        return max(1, width * p // 100), max(1, height * p // 100)

    def as_dict(self) -> dict:
        return asdict(self)
