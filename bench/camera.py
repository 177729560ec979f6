"""A camera-like picture for Chromium's fake camera: a person in front of a
service hall's wall, as a kiosk's camera sees them, written once as a y4m file
that Chromium reads with ``--use-file-for-fake-video-capture`` (and loops).

    python bench/camera.py            # writes (or finds) the file, prints its path

Chromium's own fake camera (a plain animated pattern) encodes at about
550 kbit/s, close to a sender's start rate, so a ramp-up or a 500 kbit/s limit
tested with it tests little. This picture has what makes a real camera's video
expensive: a textured wall (tiles, grout, plaster grain, a notice board with
lines of print), a person who sways, nods, talks, blinks and gestures, textured
clothes, skin and hair moving with them, and sensor noise that differs in every
frame. Chromium crops and scales it to what the page asks (the product's pages
ask 640x480) and VP8 spends all Chromium allows on it: Chromium caps a 640x480
stream at 1.7 Mbit/s and a direct call on a clean link sends 1.6-1.7 Mbit/s of
it (libvpx left free fills 5 Mbit/s with it); the benches print the rate
actually sent.

The file is 1280x720 I420 at 30 fps, ``SECONDS`` long (1.38 MB a frame, so
about 207 MB), deterministic (fixed seeds), cached under the temporary
directory keyed by its parameters and the drawing's source: a change to the
drawing makes a new file. Chromium plays it in a loop; every movement is
periodic in the loop's length and the noise is fresh in every frame of it, so
the seam shows the encoder no cut. The noise does repeat every ``SECONDS``: an
encoder would have to keep a reference frame exactly that long to profit.
"""

import argparse
import hashlib
import inspect
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.chromium import CHROMIUM, CHROMIUM_ARGS, LOOPBACK_MEDIA  # noqa: E402
from harness.debian_tools import debian_tool  # noqa: E402

WIDTH, HEIGHT, FPS = 1280, 720, 30
SECONDS = 5
SEED = 24
# Temporal sensor noise (standard deviation, 8-bit levels): what a webcam shows
# under a hall's lighting, and most of what keeps the encoder busy.
NOISE_LUMA = 3.0
NOISE_CHROMA = 1.5

Plane = NDArray[np.floating[Any]]
"""A picture plane in levels (float32 at run time; numpy's stubs widen it)."""


def _smooth(field: Plane, passes: int) -> Plane:
    """A cheap blur (box filter by shifts), to make grain of a few pixels."""
    for _ in range(passes):
        field = (
            field
            + np.roll(field, 1, axis=0)
            + np.roll(field, -1, axis=0)
            + np.roll(field, 1, axis=1)
            + np.roll(field, -1, axis=1)
        ) / 5
    return field


def _soft(distance: Plane, edge: float = 1.5) -> Plane:
    """Coverage 1 inside (distance < 0), 0 outside, anti-aliased over ``edge`` px."""
    coverage: Plane = np.clip(0.5 - distance / (2 * edge), 0.0, 1.0).astype(np.float32)
    return coverage


def _ellipse(xx: Plane, yy: Plane, cx: float, cy: float, rx: float, ry: float) -> Plane:
    """Coverage of an ellipse (approximate distance in pixels to its edge)."""
    r = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    return _soft((r - 1) * min(rx, ry))


class Scene:
    """The wall (still) and the person's textures (moving with them)."""

    PAD = 160  # how far a texture may slide under a moving part

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        h, w = HEIGHT, WIDTH
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self.yy, self.xx = yy, xx
        # The wall: large stone panels with grout, plaster grain, lit from the left.
        wall = 178 - 28 * xx / w - 12 * yy / h
        panel_w, panel_h = 300, 230
        shades = rng.normal(0, 7, (h // panel_h + 2, w // panel_w + 2)).astype(np.float32)
        rows, cols = (yy // panel_h).astype(int), ((xx + 40) // panel_w).astype(int)
        wall += shades[rows, cols]
        grout = (yy % panel_h < 3) | ((xx + 40) % panel_w < 3)
        wall -= 38 * grout
        grain = _smooth(rng.normal(0, 14, (h, w)).astype(np.float32), 1)
        wall += grain + rng.normal(0, 4, (h, w)).astype(np.float32)
        wall_u = np.full((h, w), 124, np.float32) + _smooth(
            rng.normal(0, 3, (h, w)).astype(np.float32), 2
        )
        wall_v = np.full((h, w), 134, np.float32) + _smooth(
            rng.normal(0, 3, (h, w)).astype(np.float32), 2
        )
        # A notice board on the left: white paper with lines of print.
        top, left, bottom, right = 110, 60, 370, 360
        wall[top:bottom, left:right] = 226 + rng.normal(0, 3, (bottom - top, right - left))
        wall_u[top:bottom, left:right] = 127
        wall_v[top:bottom, left:right] = 129
        for line_top in range(top + 24, bottom - 20, 17):
            x = left + 18
            while x < right - 30:
                word = int(rng.integers(12, 48))
                glyphs = rng.random((9, word)) < 0.55
                wall[line_top : line_top + 9, x : x + word] -= 150 * glyphs
                x += word + int(rng.integers(6, 12))
        wall[top + 4 : top + 18, left + 18 : right - 18] = 90  # a red title band
        wall_v[top + 4 : top + 18, left + 18 : right - 18] = 190
        # A blue sign on the right with a white number on it.
        wall[150:260, 1010:1200] = 70 + rng.normal(0, 3, (110, 190))
        wall_u[150:260, 1010:1200] = 170
        wall_v[150:260, 1010:1200] = 110
        wall[175:235, 1040:1170] += 140 * (rng.random((60, 130)) < 0.35)
        self.wall = wall
        self.wall_u = self._half(wall_u)
        self.wall_v = self._half(wall_v)
        # Textures bigger than the frame, sliced where the person stands.
        ph, pw = h + 2 * self.PAD, w + 2 * self.PAD
        ty, tx = np.mgrid[0:ph, 0:pw].astype(np.float32)
        knit = 9 * np.sin((tx + ty) * 2 * math.pi / 7) * np.sin((tx - ty) * 2 * math.pi / 9)
        folds = 14 * _smooth(rng.normal(0, 1, (ph, pw)).astype(np.float32), 6) * 6
        self.cloth = (62 + knit + folds + rng.normal(0, 9, (ph, pw)).astype(np.float32)).astype(
            np.float32
        )
        self.skin = (160 + _smooth(rng.normal(0, 9, (ph, pw)).astype(np.float32), 1)).astype(
            np.float32
        )
        strands = np.repeat(rng.normal(0, 18, (ph // 6 + 1, pw)).astype(np.float32), 6, axis=0)
        self.hair = (34 + strands[:ph] + rng.normal(0, 6, (ph, pw))).astype(np.float32)

    @staticmethod
    def _half(plane: Plane) -> Plane:
        """4:2:0 chroma: the mean of each 2x2 block."""
        return (plane[0::2, 0::2] + plane[1::2, 0::2] + plane[0::2, 1::2] + plane[1::2, 1::2]) / 4

    def _moved(self, texture: Plane, dx: float, dy: float) -> Plane:
        x0, y0 = self.PAD - round(dx), self.PAD - round(dy)
        return texture[y0 : y0 + HEIGHT, x0 : x0 + WIDTH]

    def frame(self, n: int, frames: int, seed: int) -> bytes:
        """Frame ``n`` of a loop of ``frames``: Y, U and V planes of I420."""
        phase = 2 * math.pi * n / frames
        xx, yy = self.xx, self.yy
        # Every movement has a whole number of periods in the loop: no seam.
        sway = 70 * math.sin(phase) + 22 * math.sin(3 * phase + 0.5)
        lean = 45 * math.sin(phase + 0.3) + 10 * math.sin(2 * phase)
        nod = 14 * math.sin(4 * phase + 1) + 6 * math.sin(9 * phase)
        hx, hy = 640 + sway, 290 + nod
        tx = 640 + lean
        talk = math.sin(11 * phase) * math.sin(3 * phase + 0.7) + 0.3 * math.sin(23 * phase)
        speech = max(0.0, talk)
        blink = 0.15 if (n % (frames // 2)) in (40, 41, 42) else 1.0
        lift = max(0.0, math.sin(2 * phase - 0.8)) ** 2
        hand_x = tx + 170 + 50 * math.sin(5 * phase)
        hand_y = 640 - 210 * lift + 18 * math.sin(13 * phase)

        torso = np.maximum(_ellipse(xx, yy, tx, 800, 320, 360), _ellipse(xx, yy, tx, 560, 110, 140))
        head = _ellipse(xx, yy, hx, hy, 98, 128)
        hair = head * _soft(yy - (hy - 58 + 0.25 * np.abs(xx - hx)))
        hand = _ellipse(xx, yy, hand_x, hand_y, 46, 58) * (lift > 0.02)
        sleeve = _ellipse(xx, yy, (hand_x + tx + 230) / 2, (hand_y + 760) / 2, 70, 150) * (
            lift > 0.02
        )
        features = (
            _ellipse(xx, yy, hx - 38, hy - 12, 15, 8 * blink)
            + _ellipse(xx, yy, hx + 38, hy - 12, 15, 8 * blink)
            + 0.6 * _ellipse(xx, yy, hx - 38, hy - 34, 22, 4)
            + 0.6 * _ellipse(xx, yy, hx + 38, hy - 34, 22, 4)
        )
        mouth = _ellipse(xx, yy, hx, hy + 62, 34, 3 + 16 * speech)

        skin = self._moved(self.skin, hx - 640, hy - 290)
        luma = self.wall.copy()
        body = np.clip(torso + sleeve, 0, 1)
        luma += body * (self._moved(self.cloth, tx - 640, 0) - luma)
        face = skin - 30 * np.clip(np.abs(xx - hx) / 98, 0, 1) ** 2  # shading to the sides
        luma += head * (face - luma)
        luma += hair * (self._moved(self.hair, hx - 640, hy - 290) - luma)
        luma += np.clip(features, 0, 1) * head * (45 - luma)
        luma += mouth * head * (72 - luma)
        luma += hand * (skin + 8 - luma)

        rng = np.random.default_rng((seed, n))
        luma += rng.normal(0, NOISE_LUMA, luma.shape).astype(np.float32)
        cover_skin = self._half(np.clip(head - hair, 0, 1) + hand)
        cover_body = self._half(body)
        cover_hair = self._half(hair)
        u = self.wall_u.copy()
        v = self.wall_v.copy()
        for cover, (cu, cv) in (
            (cover_body, (150.0, 112.0)),  # navy clothes
            (cover_skin, (112.0, 150.0)),
            (cover_hair, (124.0, 131.0)),
        ):
            u += cover * (cu - u)
            v += cover * (cv - v)
        mouth_c = self._half(mouth * head)
        v += mouth_c * (170 - v)
        u += rng.normal(0, NOISE_CHROMA, u.shape).astype(np.float32)
        v += rng.normal(0, NOISE_CHROMA, v.shape).astype(np.float32)
        planes = (np.clip(p, 0, 255).round().astype(np.uint8) for p in (luma, u, v))
        return b"".join(p.tobytes() for p in planes)


def frames(seconds: int = SECONDS, seed: int = SEED) -> Iterator[bytes]:
    """The loop's I420 frames, one by one."""
    scene = Scene(seed)
    count = seconds * FPS
    for n in range(count):
        yield scene.frame(n, count, seed)


def camera_file(seconds: int = SECONDS, seed: int = SEED) -> Path:
    """The y4m file, written on first use (20-25 s of CPU for 5 s of video).

    Keyed by its parameters and the drawing's source, so that a change to the
    picture makes a new file (and removes the one it replaces)."""
    drawing = f"{inspect.getsource(Scene)}{NOISE_LUMA}{NOISE_CHROMA}".encode()
    version = hashlib.sha256(drawing).hexdigest()[:10]
    stem = f"wl-bench-camera-{WIDTH}x{HEIGHT}-{FPS}fps-{seconds}s-seed{seed}"
    path = Path(tempfile.gettempdir()) / f"{stem}-{version}.y4m"
    if path.exists():
        return path
    partial = path.with_suffix(f".{os.getpid()}.part")
    with partial.open("wb") as out:
        out.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames(seconds, seed):
            out.write(b"FRAME\n")
            out.write(frame)
    partial.replace(path)  # atomic: a concurrent bench sees a whole file or none
    for older in path.parent.glob(f"{stem}-*.y4m"):
        if older != path:
            older.unlink(missing_ok=True)
    return path


async def launch_with_camera(
    playwright: Any, camera: Path, *, loopback_media: bool = True, executable: str = CHROMIUM
) -> Any:
    """A headless Chromium set up as harness.chromium's, whose fake camera plays
    ``camera`` (a y4m file) instead of Chromium's own pattern."""
    args = [a for a in CHROMIUM_ARGS if loopback_media or a != LOOPBACK_MEDIA]
    args.append(f"--use-file-for-fake-video-capture={camera}")
    if executable == CHROMIUM:
        debian_tool("chromium")
    return await playwright.chromium.launch(executable_path=executable, headless=True, args=args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=SECONDS)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    path = camera_file(args.seconds, args.seed)
    print(f"{path} ({path.stat().st_size / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
