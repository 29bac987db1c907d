"""A user's own objects in the tabletop scene: a mesh (OBJ or STL) or a URDF, with a class name, a scale,
and optionally a colour, a texture, a mass and an upright rotation.

    --object parts/bracket.stl:bracket:0.001      a path, a class name, a scale (here millimetres)

    scene_params:                                  the same in a launch file, with the optional fields
      user_objects:
        - {path: parts/bracket.stl, name: bracket, scale: 0.001, color: [0.7, 0.7, 0.75, 1], mass: 0.05}

A mesh is read with trimesh, checked (it has triangles; scaled, it is between MIN_SIZE_M and MAX_SIZE_M
across: an STL in millimetres given no scale is caught here, not as a 40 m object that crushes the
arm), centred, scaled and written once to a cache as OBJ for PyBullet. Its collision shape is the mesh
itself where it is convex, and where it is concave (a mug, a bracket) a convex decomposition by the
V-HACD that PyBullet ships: a dynamic body's mesh would otherwise collide as its convex hull, and
fingers would close on air across a mug's opening. The decomposition is cached beside it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np

from perception.errors import PerceptError

MESH_SUFFIXES = (".obj", ".stl")
MIN_SIZE_M, MAX_SIZE_M = 0.01, 0.30  # what the Panda's table and 8 cm gripper take
CONVEX_ENOUGH = 0.9  # mesh volume over its convex hull's: above, the hull is the collision shape
DEFAULT_MASS_KG = 0.1
MOST_VERTICES = 400  # enough for a silhouette; kept cheap per frame
MIN_THICKNESS_M = 1e-4  # thinner is a flat sheet, no solid: V-HACD never ends voxelising one
DECOMPOSE_TIMEOUT_S = 600.0  # a 200,000-triangle mesh takes 15 s here


class UserObjectError(PerceptError, ValueError):
    """A user's object that cannot be used as given: the message names it and what was expected."""


@dataclass(frozen=True)
class UserObject:
    """What the user asked for: checked for sense, not yet loaded."""

    path: Path
    name: str
    scale: float = 1.0
    color: tuple[float, float, float, float] | None = None  # RGBA; None: the file's, or random grey
    texture: Path | None = None  # an image wrapped on a mesh (OBJ with texture coordinates)
    mass: float = DEFAULT_MASS_KG
    euler_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # turns the file's axes to stand it upright

    def __post_init__(self) -> None:
        where = f"object {self.name or '?'} ({self.path})"
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise UserObjectError(
                f"{where}: expected a class name of letters, digits, - or _, found {self.name!r}"
            )
        if self.path.suffix.lower() not in (*MESH_SUFFIXES, ".urdf"):
            raise UserObjectError(
                f"{where}: expected an .obj, .stl or .urdf file, found {self.path.suffix or 'no suffix'}"
            )
        if not self.path.is_file():
            raise UserObjectError(f"{where}: no such file")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise UserObjectError(f"{where}: expected a finite scale above 0, found {self.scale}")
        if not (np.isfinite(self.mass) and 0 < self.mass <= 5):
            raise UserObjectError(f"{where}: expected a mass in kg, over 0 and at most 5, found {self.mass}")
        if self.color is not None and (len(self.color) != 4 or not all(0 <= c <= 1 for c in self.color)):
            raise UserObjectError(
                f"{where}: expected a colour as 4 numbers from 0 to 1 (RGBA), found {self.color}"
            )
        if self.texture is not None and not self.texture.is_file():
            raise UserObjectError(f"{where}: texture {self.texture}: no such file")

    @classmethod
    def parse(cls, value: str | dict[str, Any], base: Path | None = None) -> UserObject:
        """From `path:name[:scale]` or a mapping with those keys and the optional ones; a relative path
        is taken from `base` (a launch file's folder) or the working directory."""
        if isinstance(value, str):
            parts = value.rsplit(":", 2) if value.count(":") >= 2 else value.rsplit(":", 1)
            if len(parts) == 3 and not _is_number(parts[2]) and Path(f"{parts[0]}:{parts[1]}").is_file():
                parts = [f"{parts[0]}:{parts[1]}", parts[2]]  # a colon in the path, and no scale
            if len(parts) < 2 or not parts[1]:
                raise UserObjectError(f"--object {value!r}: expected PATH:NAME or PATH:NAME:SCALE")
            fields: dict[str, Any] = {"path": parts[0], "name": parts[1]}
            if len(parts) == 3:
                try:
                    fields["scale"] = float(parts[2])
                except ValueError:
                    raise UserObjectError(
                        f"--object {value!r}: expected a number for the scale, found {parts[2]!r}"
                    ) from None
        elif isinstance(value, dict):
            fields = dict(value)
            missing = [k for k in ("path", "name") if k not in fields]
            if missing:
                raise UserObjectError(f"user object {value!r}: expected a {missing[0]!r}")
            known = {"path", "name", "scale", "color", "texture", "mass", "euler_deg"}
            if unknown := sorted(set(fields) - known):
                raise UserObjectError(
                    f"user object {fields['name']!r}: unknown key {unknown[0]!r}; keys: {', '.join(sorted(known))}"
                )
        else:
            raise UserObjectError(f"user object: expected PATH:NAME[:SCALE] or a mapping, found {value!r}")
        root = base or Path.cwd()
        path = Path(os.path.expanduser(str(fields.pop("path"))))
        texture = fields.pop("texture", None)
        try:
            return cls(
                path=path if path.is_absolute() else root / path,
                texture=None
                if texture is None
                else (Path(texture) if Path(texture).is_absolute() else root / texture),
                name=str(fields.pop("name")),
                scale=float(fields.pop("scale", 1.0)),
                color=None if (c := fields.pop("color", None)) is None else tuple(float(v) for v in c),  # type: ignore[arg-type]
                mass=float(fields.pop("mass", DEFAULT_MASS_KG)),
                euler_deg=tuple(float(v) for v in fields.pop("euler_deg", (0.0, 0.0, 0.0))),  # type: ignore[arg-type]
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, UserObjectError):
                raise
            raise UserObjectError(f"user object {value!r}: {exc}") from None


@dataclass(frozen=True)
class PreparedMesh:
    """A mesh object ready for PyBullet: files in the cache, its points and its footprint."""

    visual: Path  # the centred, scaled OBJ
    collision: Path  # the same, or its convex decomposition
    vertices: np.ndarray  # on its surface, in the body frame (for silhouettes)
    radius: float  # footprint radius for placement, metres
    half_height: float  # from its centre to its lowest point, standing upright
    decomposed: bool


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_size(obj: UserObject, size_m: float) -> None:
    """Refuse an object that comes out under MIN_SIZE_M or over MAX_SIZE_M across at its scale (a file
    in millimetres given no scale), naming the scale that would make it 5 cm."""
    if not MIN_SIZE_M <= size_m <= MAX_SIZE_M:
        suggest = 0.05 / (size_m / obj.scale)
        across = f"{size_m:.3g} m" if size_m >= 1 else f"{size_m * 100:.3g} cm"
        raise UserObjectError(
            f"object {obj.name} ({obj.path}): at scale {obj.scale:g} it is {across} across; "
            f"expected {MIN_SIZE_M * 100:g}-{MAX_SIZE_M * 100:g} cm (scale {suggest:.3g} makes it 5 cm)"
        )


def check(objects: Iterable[UserObject]) -> None:
    """Read, measure and prepare every object now (meshes into the cache, URDFs loaded once), so that a
    command refuses a bad one before it makes any folder or starts any process."""
    for obj in objects:
        if obj.path.suffix.lower() == ".urdf":
            check_size(obj, urdf_size(obj))
        else:
            prepare(obj)


def cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return root / "percept" / "user_objects"


def write_whole(path: Path, write: Callable[[Path], object]) -> Path:
    """`write` the file under a name of this process's beside `path`, then name it `path`: a reader
    never sees half a file, and processes filling the cache at once never write into each other's."""
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial{path.suffix}")
    try:
        write(partial)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)  # a write that failed leaves nothing in the cache
    return path


def prepare(obj: UserObject) -> PreparedMesh:
    """Read, check, centre, scale and (if concave) decompose a mesh: once a process (every scene of a
    dataset asks), and the files once a machine (later processes read the cache)."""
    return _prepare(obj, cache_dir())


@functools.cache
def _prepare(obj: UserObject, cache: Path) -> PreparedMesh:
    import trimesh

    where = f"object {obj.name} ({obj.path})"
    try:
        mesh = trimesh.load(obj.path, force="mesh")
    except Exception as exc:  # trimesh raises many kinds for a bad file
        raise UserObjectError(f"{where}: cannot read it as a mesh: {exc}") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise UserObjectError(f"{where}: expected a mesh with triangles, found none")
    rotation = trimesh.transformations.euler_matrix(*np.radians(obj.euler_deg))  # type: ignore[no-untyped-call]
    mesh.apply_transform(rotation)
    mesh.apply_scale(obj.scale)  # type: ignore[no-untyped-call]
    check_size(obj, float(mesh.extents.max()))
    thickness = _thickness(np.asarray(mesh.vertices, np.float64))
    if thickness < MIN_THICKNESS_M:
        raise UserObjectError(
            f"{where}: it is {thickness * 1000:.2g} mm thick; expected a solid (a flat sheet has no volume "
            f"to grasp or to split into convex parts), {MIN_THICKNESS_M * 1000:g} mm thick at least"
        )
    mesh.apply_translation(-mesh.bounds.mean(axis=0))
    key = hashlib.sha256(obj.path.read_bytes() + repr((obj.scale, obj.euler_deg)).encode()).hexdigest()[:16]
    folder = cache / f"{obj.name}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    visual = folder / "visual.obj"
    if not visual.exists():
        write_whole(visual, mesh.export)
    convex = mesh.is_watertight and mesh.volume / max(mesh.convex_hull.volume, 1e-12) >= CONVEX_ENOUGH
    collision = visual
    if not convex:
        collision = folder / "collision_vhacd.obj"
        if not collision.exists():
            _decompose(visual, collision, where)
    points = np.asarray(mesh.vertices, np.float64)
    if len(points) > MOST_VERTICES:
        points = points[np.linspace(0, len(points) - 1, MOST_VERTICES).astype(int)]
    return PreparedMesh(
        visual=visual,
        collision=collision,
        vertices=points,
        radius=float(np.hypot(mesh.vertices[:, 0], mesh.vertices[:, 1]).max()),
        half_height=float(-mesh.bounds[0, 2]),
        decomposed=not convex,
    )


def _thickness(points: np.ndarray) -> float:
    """The mesh's extent along its thinnest principal direction (0 for a flat one)."""
    centred = points - points.mean(axis=0)
    thinnest = np.linalg.svd(centred, full_matrices=False)[2][-1]
    return float(np.ptp(centred @ thinnest))


# V-HACD in a process of its own: it runs in C, where neither Ctrl-C nor SIGTERM reaches Python, so a
# mesh it never finishes would hold the command for good. The child dies with its parent (Linux's
# parent-death signal), and a time limit ends it.
_DECOMPOSE = """
import ctypes, signal, sys
try:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux; elsewhere the limit alone)
except AttributeError:
    pass
import pybullet as p
client = p.connect(p.DIRECT)
p.vhacd(sys.argv[1], sys.argv[2], sys.argv[3], resolution=200000, physicsClientId=client)
"""


def _decompose(source: Path, target: Path, where: str) -> None:
    """V-HACD (PyBullet's) into convex parts, written whole to `target` (see write_whole); `where` names
    the user's object in an error."""

    def decompose(partial: Path) -> None:
        log = target.with_suffix(".log")
        command = [sys.executable, "-c", _DECOMPOSE, str(source), str(partial), str(log)]
        try:
            done = subprocess.run(
                command,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                timeout=DECOMPOSE_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise UserObjectError(
                f"{where}: the convex decomposition (V-HACD) took over {DECOMPOSE_TIMEOUT_S:.0f} s; "
                "expected a mesh it can split (fewer triangles, a closed solid)"
            ) from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            raise UserObjectError(f"{where}: the convex decomposition (V-HACD) failed: {last}")
        if not partial.exists() or partial.stat().st_size == 0:
            raise UserObjectError(
                f"{where}: the convex decomposition (V-HACD) made nothing of it (see {log})"
            )

    write_whole(target, decompose)


@functools.cache
def urdf_size(obj: UserObject) -> float:
    """How far across a URDF comes out at its scale, in metres: each mesh it names checked to exist,
    then loaded twice, at the scale and at twice it. PyBullet's bounding box carries a margin of a few
    millimetres that does not scale, so the difference of the two is the object's own size."""
    import pybullet as p

    from sim import quiet

    where = f"object {obj.name} ({obj.path})"
    try:
        root = ElementTree.parse(obj.path).getroot()
    except (ElementTree.ParseError, OSError) as exc:
        raise UserObjectError(f"{where}: cannot read it as URDF: {exc}") from None
    for mesh in root.iter("mesh"):
        name = mesh.get("filename", "")
        if "://" not in name and not (obj.path.parent / name).is_file():
            raise UserObjectError(f"{where}: mesh {name} ({obj.path.parent / name}): no such file")
    client = p.connect(p.DIRECT)
    try:
        sizes = []
        for scale in (obj.scale, 2 * obj.scale):
            try:
                with quiet():
                    body = p.loadURDF(str(obj.path), globalScaling=scale, physicsClientId=client)
            except p.error:
                raise UserObjectError(
                    f"{where}: PyBullet cannot load it (a mesh named by package:// it cannot find, or "
                    "a format it does not read)"
                ) from None
            lower, upper = p.getAABB(body, physicsClientId=client)
            for joint in range(p.getNumJoints(body, physicsClientId=client)):
                low, high = p.getAABB(body, joint, physicsClientId=client)
                lower, upper = np.minimum(lower, low), np.maximum(upper, high)
            sizes.append(float(np.max(np.subtract(upper, lower))))
    finally:
        p.disconnect(client)
    return sizes[1] - sizes[0]
