"""Random procedural textures for domain randomisation: a detector trained on one plain table colour
learns the table; one trained on checks, stripes, grain and noise under its objects learns the objects
(Tobin et al., "Domain randomization for transferring deep neural networks from simulation to the real
world", 2017).

The textures are drawn, not downloaded: a pool of POOL_SIZE images, the same on every machine (each
seeded by its index), written once to the cache as PNG, each with a table cover mesh whose material
names it. A scene picks from the pool with a generator of its own (TabletopParams.textures).
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import pybullet as p

from sim.user_objects import cache_dir, write_whole

POOL_SIZE = 48
SIDE = 128  # pixels: the table fills a third of a 640x480 frame, and a tile of it repeats
KINDS = ("checks", "stripes", "noise", "grain")
TABLE_HALF_M = 3.0  # the textured cover reaches past what the tabletop camera sees
TILE_M = 0.5  # one texture repeat on the table: a few across the workspace


def texture_image(index: int) -> np.ndarray:
    """Pool texture `index` as a SIDE x SIDE RGB uint8 image: its kind by index, the rest by seed."""
    rng = np.random.default_rng(index)
    kind = KINDS[index % len(KINDS)]
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    if kind == "checks":
        cells = int(rng.integers(2, 9))
        mix = ((np.floor(xx * cells) + np.floor(yy * cells)) % 2).astype(float)
    elif kind == "stripes":
        turn = rng.uniform(0, np.pi)
        mix = 0.5 + 0.5 * np.sin(
            2 * np.pi * int(rng.integers(2, 12)) * (xx * np.cos(turn) + yy * np.sin(turn))
        )
    elif kind == "noise":  # value noise: a coarse random grid, smoothly enlarged
        coarse = rng.uniform(0, 1, (int(rng.integers(3, 17)),) * 2).astype(np.float32)
        mix = cv2.resize(coarse, (SIDE, SIDE), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    else:  # grain: rings bent by noise, as in wood
        coarse = rng.uniform(-1, 1, (5, 5)).astype(np.float32)
        bend = cv2.resize(coarse, (SIDE, SIDE), interpolation=cv2.INTER_CUBIC)
        mix = 0.5 + 0.5 * np.sin(2 * np.pi * (int(rng.integers(4, 16)) * yy + 0.8 * bend))
    image = a * (1 - mix[..., None]) + b * mix[..., None]
    image += rng.normal(0, 6, image.shape)  # a little fine grain on every kind
    return np.asarray(image.clip(0, 255), dtype=np.uint8)


@functools.cache
def texture_files() -> tuple[Path, ...]:
    """The pool as PNG files in the cache (written once a machine; later processes read them)."""
    folder = cache_dir() / "textures"
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index in range(POOL_SIZE):
        path = folder / f"texture-{index:02d}.png"
        if not path.is_file():
            image = cv2.cvtColor(texture_image(index), cv2.COLOR_RGB2BGR)
            write_whole(path, lambda partial: cv2.imwrite(str(partial), image))  # noqa: B023 (called at once)
        files.append(path)
    return tuple(files)


def write_quad_obj(
    path: Path, half_width: float, half_height: float, repeats: float = 1.0, material: str = ""
) -> Path:
    """An OBJ of one flat rectangle facing +z, its texture coordinates running 0..`repeats` across it
    (PyBullet's own boxes and plane.obj fix theirs), with `material` (an .mtl file's name) if given."""
    w, h, r = half_width, half_height, repeats
    header = f"mtllib {material}\nusemtl surface\n" if material else ""
    path.write_text(
        f"{header}v {-w} {-h} 0\nv {w} {-h} 0\nv {w} {h} 0\nv {-w} {h} 0\n"
        f"vt 0 0\nvt {r} 0\nvt {r} {r}\nvt 0 {r}\nvn 0 0 1\nf 1/1/1 2/2/1 3/3/1\nf 1/1/1 3/3/1 4/4/1\n"
    )
    return path


def textured_body(client: int, visual: int, texture: int, position: list[float]) -> int:
    """A static, visual-only body wearing `texture` (from loadTexture; its colour set white, since
    PyBullet multiplies the two). Sound in a world holding nothing else: see cover_table."""
    body = p.createMultiBody(0, -1, visual, position, physicsClientId=client)
    p.changeVisualShape(body, -1, textureUniqueId=texture, rgbaColor=[1, 1, 1, 1], physicsClientId=client)
    return int(body)


def cover_table(client: int, rng: np.random.Generator) -> int:
    """A random pool texture laid over the table, tiled every TILE_M, a millimetre above it, without
    collision. The texture comes in the mesh's material, as a URDF mesh's does: with the EGL plugin,
    loadTexture plus changeVisualShape showed another texture (or none) once meshes had been loaded
    and the world reset a few times (the plugin's texture list and the server's ids drift apart), and
    plane.urdf's own material beats a texture it is given."""
    index = int(rng.integers(POOL_SIZE))
    texture = texture_files()[index]
    quad = texture.with_name(f"table-{index:02d}.obj")
    if not quad.is_file():  # the material first, each written whole (see write_whole)
        material = write_whole(
            quad.with_suffix(".mtl"),
            lambda partial: partial.write_text(
                f"newmtl surface\nKa 0 0 0\nKd 1 1 1\nKs 0 0 0\nmap_Kd {texture.name}\n"
            ),
        )
        repeats = TABLE_HALF_M * 2 / TILE_M
        write_whole(
            quad, lambda partial: write_quad_obj(partial, TABLE_HALF_M, TABLE_HALF_M, repeats, material.name)
        )
    visual = p.createVisualShape(p.GEOM_MESH, fileName=str(quad), physicsClientId=client)
    return int(p.createMultiBody(0, -1, visual, [0.0, 0.0, 0.001], physicsClientId=client))
