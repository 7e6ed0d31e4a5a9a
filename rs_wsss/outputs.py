"""Output planning for ``segment``: which files each scene writes, checked before any model is built.

OUT.gpkg (.fgb, .parquet) → OUT.tif + OUT.qml + OUT.gpkg; OUT.tif → OUT.tif + OUT.qml (+ OUT.gpkg if asked); each
with OUT_areas.csv/.json (per-class areas) and OUT_stac.json (provenance); several scenes (or a
directory) → DIR/<scene stem>.gpkg each. Existing outputs, unwritable directories and clashing names are refused here,
so an hour of inference never ends in a failed write.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RsWsssError
from .raster.formats import RASTER_SUFFIXES, VECTOR_SUFFIXES, suffix_list


def output_paths(out: Path, vectorize: bool | None, probs: bool = False,
                 report: bool = False) -> dict[str, Path | None]:
    """The files one scene writes, keyed ``tif``, ``qml``, ``vector`` (the polygons in any vector format of
    ``raster.formats``; None when not written), ``areas_csv``, ``areas_json``, ``stac``, ``conf`` (with probs),
    ``quicklook`` and ``report`` (with report).

    Args:
        out: the requested output (``.gpkg``, ``.fgb``, ``.parquet`` or ``.tif``).
        vectorize: write polygons; None means "for vector outputs".
        probs: also write ``OUT_confidence.tif``.
        report: also write ``OUT_quicklook.png`` and ``OUT_report.html`` (``rs_wsss.report.segment_report``).

    Raises:
        RsWsssError: ``out`` is neither a vector (.gpkg/.fgb/.parquet) nor a GeoTIFF name.
    """
    suffix = out.suffix.lower()
    if suffix not in (*VECTOR_SUFFIXES, *RASTER_SUFFIXES):
        raise RsWsssError(f"output must end in {suffix_list('vector', 'raster')} (or be a directory for several "
                          f"scenes), not {out.name}")
    tif = out.with_suffix(".tif") if suffix in VECTOR_SUFFIXES else out
    want_vector = vectorize if vectorize is not None else suffix in VECTOR_SUFFIXES
    polygons = out if suffix in VECTOR_SUFFIXES else out.with_suffix(VECTOR_SUFFIXES[0])
    paths: dict[str, Path | None] = {"tif": tif, "qml": tif.with_suffix(".qml"),
                                     "vector": polygons if want_vector else None,
                                     "areas_csv": tif.with_name(tif.stem + "_areas.csv"),
                                     "areas_json": tif.with_name(tif.stem + "_areas.json"),
                                     "stac": tif.with_name(tif.stem + "_stac.json")}
    if probs:
        paths["conf"] = tif.with_name(tif.stem + "_confidence.tif")
    if report:
        paths["quicklook"] = tif.with_name(tif.stem + "_quicklook.png")
        paths["report"] = tif.with_name(tif.stem + "_report.html")
    return paths


@dataclass(frozen=True)
class OutputSpec:
    """What ``segment`` writes for each scene beside the class raster, and how (the output options of the CLI)."""

    vectorize: bool | None = None  # polygons; None: for vector outputs (.gpkg, .fgb, .parquet)
    probs: bool = False  # OUT_confidence.tif
    report: bool = False  # OUT_quicklook.png + OUT_report.html
    overwrite: bool = False  # replace existing outputs (never an input)
    min_area: float = 0.0  # minimum mapping unit in m² (raster sieve before the polygons)
    simplify: float = 0.0  # coverage-preserving simplification tolerance in metres
    creation_options: dict[str, str] = field(default_factory=dict, hash=False)  # GDAL options of the COGs

    def paths(self, out: str | Path) -> dict[str, Path | None]:
        """The files one scene written to ``out`` gets (:func:`output_paths`)."""
        return output_paths(Path(out), self.vectorize, self.probs, self.report)


def check_target(path: str | Path, overwrite: bool, inputs: Sequence[str | Path | None] = ()) -> Path:
    """:func:`rs_wsss.raster.write.check_output` (exists / missing directory) plus a real write probe: permission
    bits do not tell root about read-only file systems, and a failure after an hour of work is the worst time to find
    out.

    Raises:
        RsWsssError: the output is one of ``inputs``, exists (without ``overwrite``) or its directory is missing or
            not writable.
    """
    from .raster.write import check_output

    if inputs:
        guard_outputs([path], list(inputs), check=False)
    path = check_output(path, overwrite)
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent or Path("."), prefix=".rs-wsss-probe."):
            pass
    except OSError as exc:
        raise RsWsssError(f"output directory is not writable: {path.parent} ({exc.strerror}); "
                          "choose another -o") from None
    return path


@dataclass(frozen=True)
class OutputPlan:
    """(scene, output) pairs, and the directory to create once every check has passed (None: it exists)."""

    targets: list[tuple[str, Path]]
    new_dir: Path | None = None

    def make_dir(self) -> None:
        """Create :attr:`new_dir` (call after the model is built, so a failed load leaves no empty directory)."""
        if self.new_dir is not None:
            self.new_dir.mkdir()

    def remove_dir_if_empty(self) -> None:
        """Remove :attr:`new_dir` again if nothing was written into it."""
        if self.new_dir is not None and self.new_dir.is_dir() and next(self.new_dir.iterdir(), None) is None:
            self.new_dir.rmdir()


def plan_outputs(scenes: list[str], output: str, spec: OutputSpec,
                 inputs: Sequence[str | Path | None] = ()) -> OutputPlan:
    """Map scenes to outputs and refuse, before any work, whatever would fail or clobber a file.

    Args:
        scenes: input rasters.
        output: ``-o``: a ``.gpkg``/``.tif`` file for one scene, or a directory (existing, or ending in ``/``).
        spec: which files each scene gets (polygons, confidence, report) and whether existing ones are replaced.
        inputs: the other files the run reads (checkpoint, class set, config, weights); the scenes and the files
            their datasets are made of (VRT sources) are added here.

    Raises:
        RsWsssError: an output that is an input (with or without ``overwrite``), a file name given for several
            scenes, clashing scene names, an existing output, an unwritable
            directory.
    """
    out = Path(output)
    multi = len(scenes) > 1 or out.is_dir() or output.endswith(("/", "\\"))
    if not multi:
        targets = [(scenes[0], out)]
        new_dir = None
    else:
        if out.suffix.lower() in (*VECTOR_SUFFIXES, *RASTER_SUFFIXES):
            raise RsWsssError(f"several scenes need a directory as -o (one output per scene), not the file {out.name}")
        if out.exists() and not out.is_dir():
            raise RsWsssError(f"-o {out} exists and is not a directory; give a directory for several scenes")
        targets = [(s, out / f"{Path(s).stem}.gpkg") for s in scenes]
        names = [t.name for _, t in targets]
        if len(set(names)) != len(names):
            raise RsWsssError("several scenes share a file name; segment them into different directories")
        check_target(out, overwrite=True)  # its parent exists and is writable
        new_dir = None if out.exists() else out
    planned = [p for _, t in targets for p in spec.paths(t).values()]
    # files in a directory created later cannot exist yet: only the "is an input / twice" checks apply there
    guard_outputs(planned, [*inputs, *input_files(scenes)], spec.overwrite, check=new_dir is None)
    return OutputPlan(targets, new_dir)


def input_files(rasters: Sequence[str | Path]) -> list[Path]:
    """The rasters and every file GDAL reads for them (a VRT's sources, overviews, sidecars)."""
    from .raster.io import open_dataset

    files: list[Path] = []
    for r in rasters:
        files.append(Path(r))
        try:
            with open_dataset(r) as ds:
                files += [Path(f) for f in ds.files if not str(f).startswith("/vsi")]
        except RsWsssError:
            continue  # unreadable rasters are refused by the caller's own checks
    return files


def _same_file(a: Path, b: Path) -> bool:
    """Same path after resolving symlinks and ``..``, or the same inode (hard links, bind mounts)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): only the path comparison applies
        return False


def guard_outputs(outputs: Sequence[str | Path | None], inputs: Sequence[str | Path | None], overwrite: bool = False,
                  check: bool = True) -> list[Path]:
    """The one check of every file a command is about to write, before any work: none may be an input (scene, its
    VRT sources, tags, checkpoint, mask, config, class set, weights), with or without ``overwrite``; no two outputs
    may be the same file; each passes :func:`check_target` (unless ``check`` is False: a folder yet to be made).
    Commands pass the full list of planned outputs (every sibling: .qml, .gpkg, confidence, sidecars, reports: what
    :func:`output_paths` registers), so a sibling added there is covered.

    Raises:
        RsWsssError: an output is an input or another output, exists (without ``overwrite``) or cannot be written.
    """
    outs = [Path(o) for o in outputs if o is not None]
    ins = [Path(i) for i in inputs if i is not None]
    for k, out in enumerate(outs):
        for inp in ins:
            if _same_file(out, inp):
                raise RsWsssError(f"output {out} is the input {inp}: inputs are never overwritten (not even with "
                                  "--overwrite); choose another -o")
        for other in outs[:k]:
            if _same_file(out, other):
                raise RsWsssError(f"two outputs are the same file ({other} and {out}); choose another -o")
    return [check_target(o, overwrite) for o in outs] if check else outs
