"""The result store of a sweep: a zarr store that takes each finished work unit as it comes.

A sweep run into a folder writes ``OUT/.<result>.zarr`` (``.sweep.zarr`` for the scalar family,
``.sweep_<model>.zarr`` for the others) while it runs, laid out by the sweep's coordinates::

    .sweep.zarr/
      zarr.json                 the group; attrs["dynamics_store"]: format, kind, the config
                                (every field but the command), its sha256, the plan (units and
                                their box), the command that started it
      variant/ method/ eps/ eta/ sigma2/ beta/ phi0/ theta0/    the coordinates
      theta/ phi/ ... status/   one array per value the family reads (status as int8 codes,
                                dynamics.types.Status), dims = the sweep's axes (+ the family's
                                trailing dims), one zarr chunk per work unit or finer
      units/<i>.json            written last for unit i: its lanes and a sha256 of each of its
                                arrays' values; a unit without it is not finished

Each unit's values go in with an xarray region write (zarr writes every chunk file through a
temporary and a rename), then its ``units/<i>.json`` is written atomically: a unit is finished
exactly when its record is there, whatever moment a kill came. ``xr.open_zarr(path)`` reads the
store at any time (unfinished lanes read as NaN / 0).

Memory is bounded by a unit while the sweep runs, unless the store holds what it writes
(``hold``: the CLI's runs that start a store and assemble the Dataset in memory, which then
needs the grid's memory anyway). The Dataset (and the netCDF file and figures the CLI writes
from it) is assembled at the end from those values when every finished unit was written by
this store; otherwise (a resumed run) from the store read back, after every unit's values are
checked against their record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from dynamics._io import OutputError, atomic_write_text
from dynamics.sweep.config import SweepConfig
from dynamics.sweep.core import (
    SLAB,
    MemorySink,
    Unit,
    axes,
    finish_context,
    finish_slab,
    inner_grid,
    lane_variables,
    skeleton,
    slabs,
    unit_region,
    unit_shape,
    work_units,
)

#: what the store's ``attrs["dynamics_store"]["format"]`` says
FORMAT = "dynamics sweep store"
VERSION = 1
#: the attribute holding the store's header
HEADER = "dynamics_store"
#: the group of unit records
UNITS = "units"
#: the attribute that marks a Dataset written by :meth:`Store.write_dataset`
RESULT = "dynamics_result"


def store_name(fam) -> str:
    """The store of a family's sweep: ``.`` + its result file's stem + ``.zarr`` (hidden: the
    folder's results are the files its manifest lists; the store is where they come from)."""
    return "." + Path(fam.result_file).stem + ".zarr"


#: config fields that do not change any lane's result: the command line, and ``chunk`` (the
#: lanes per compiled call; a store keeps the units it was planned with)
NOT_COMPARED = ("command", "chunk")


def config_record(config: SweepConfig) -> dict:
    """The config as plain JSON values, every field but :data:`NOT_COMPARED` (what must match
    for a resumed run to add to a store)."""
    out = {}
    for f in dataclasses.fields(config):
        if f.name in NOT_COMPARED:
            continue
        v = getattr(config, f.name)
        if dataclasses.is_dataclass(v):
            out[f.name] = {g.name: _plain(getattr(v, g.name)) for g in dataclasses.fields(v)}
        else:
            out[f.name] = _plain(v)
    return out


def _plain(v):
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def config_hash(record: dict) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def first_difference(stored: dict, now: dict) -> str | None:
    """``--flag`` and both values of the first field (in the config's order) that differs."""
    for key in list(now) + [k for k in stored if k not in now]:
        a, b = stored.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diff = first_difference(a, b)
            if diff:
                return diff
        elif a != b:
            return f"--{key.replace('_', '-')} is {_show(b)} here, {_show(a)} in the store"
    return None


def _show(v) -> str:
    if isinstance(v, list):
        return " ".join(_show(x) for x in v)
    return "(default)" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


@contextlib.contextmanager
def _quiet():
    """Silence zarr's note that fixed-length strings (the variant and method labels) have no
    zarr v3 specification yet (xarray and zarr-python read them)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
        warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr.*")
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        yield


def read_header(path) -> dict | None:
    """The store header at ``path``, or ``None`` when nothing is there.

    Raises:
        OutputError: ``path`` is there but is not a sweep store (a file, another folder, a
            zarr store of something else, an unreadable header).
    """
    path = Path(path)
    if not os.path.lexists(path):
        return None
    if not path.is_dir():
        raise OutputError(f"{path} is not a sweep store (it is a file); move it away or "
                          f"choose another output folder")
    try:
        meta = json.loads((path / "zarr.json").read_text())
        header = meta["attributes"][HEADER]
        if header["format"] != FORMAT:
            raise KeyError("format")
    except (OSError, ValueError, KeyError, TypeError):
        raise OutputError(f"{path} is not a sweep store of this package (no readable "
                          f"{HEADER} header in its zarr.json); move it away or choose another "
                          f"output folder") from None
    if header.get("version") != VERSION:
        raise OutputError(f"{path} is a sweep store of format version {header.get('version')}; "
                          f"this version reads {VERSION}")
    return header


class Store:
    """The result store of one sweep (see the module docstring); a sink for
    :func:`dynamics.sweep.core.run`.

    Args:
        path: the store's folder (``OUT/sweep.zarr``).
        config, plan: the sweep and :func:`~dynamics.sweep.core.plan`'s result.
        header: the store's header when it is already there (:func:`read_header`); its
            config must be ``config``'s (checked by :meth:`check`).
        hold: also keep the values of every unit :meth:`put` writes in memory (the grid's
            size), so that :meth:`values` need not read them back.
    """

    def __init__(self, path, config: SweepConfig, plan: dict, header: dict | None = None,
                 hold: bool = False):
        self.path = Path(path)
        self.config, self.plan = config, plan
        self.kind = config.family.result_kind
        self.record = config_record(config)
        self.hash = config_hash(self.record)
        self.header = header
        if header is not None:  # the units are the store's, whatever this machine would plan
            plan["chunk"] = {m: int(c) for m, c in header["plan"]["chunk"].items()}
        self.units = work_units(config, plan)
        _, values = inner_grid(config)
        self.inner_shape = tuple(len(v) for v in values)
        self.finished: set[int] = set()
        if header is not None:
            self.finished = self._records()
        self._held = MemorySink(config, plan) if hold else None

    # -- opening
    def check(self) -> None:
        """:class:`OutputError` when the store holds another kind of sweep or another config
        (naming the first difference), or its plan is not this config's."""
        h = self.header
        if h.get("kind") != self.kind:
            raise OutputError(f"{self.path} holds a store of {h.get('kind')!r}, not of "
                              f"{self.kind!r}; choose another output folder")
        if h.get("config_hash") != self.hash:
            diff = first_difference(h.get("config", {}), self.record) or "its config differs"
            raise OutputError(f"{self.path} holds a sweep of another config ({diff}); resume "
                              f"it with its own command, pass --overwrite to discard it, or "
                              f"choose another output folder")
        if h["plan"].get("units") != len(self.units):
            raise OutputError(f"{self.path}: its plan has {h['plan'].get('units')} units, this "
                              f"config {len(self.units)}; the store is damaged")

    def clean(self) -> None:
        """Remove what a killed run left half-written: zarr's ``*.partial`` chunk files and
        temporaries of unit records."""
        for root, _, files in os.walk(self.path):
            for f in files:
                if f.endswith(".partial") or (f.startswith(".") and f.endswith(".tmp")):
                    with contextlib.suppress(OSError):
                        os.remove(os.path.join(root, f))

    def _records(self) -> set[int]:
        folder = self.path / UNITS
        done = set()
        with contextlib.suppress(OSError):
            for name in os.listdir(folder):
                stem, dot, ext = name.partition(".")
                if ext == "json" and stem.isdigit():
                    done.add(int(stem))
        return done

    # -- the sink
    def done(self, unit: Unit) -> bool:
        return unit.index in self.finished

    def put(self, unit: Unit, got: dict) -> None:
        """Write the unit's values into its region, then its record."""
        import xarray as xr

        if self.header is None:
            self._create(got)
        dims = self._dims(got)
        region = self._region(unit, dims, got)
        ds = xr.Dataset({k: (dims[k], self._boxed(unit, v)) for k, v in got.items()})
        with _quiet():
            ds.to_zarr(self.path, region=region, mode="r+", consolidated=False)
        record = dict(unit=unit.index, block=list(unit.block), lanes=[unit.start, unit.stop],
                      sha256={k: _digest(v) for k, v in sorted(got.items())})
        atomic_write_text(self.path / UNITS / f"{unit.index}.json", json.dumps(record))
        self.finished.add(unit.index)
        if self._held is not None:
            self._held.put(unit, got)

    def values(self) -> dict:
        """Every array of the store: the values held in memory when this store wrote every
        finished unit itself (``hold``), else read back after checking each finished unit
        against its record."""
        if self._held is not None and self.finished <= self._held.finished:
            return self._held.values()
        loaded = self._load()
        self._check(loaded)
        if loaded is None:
            raise OutputError(f"{self.path}: an array cannot be read where no unit is "
                              f"finished; the store is damaged")
        return loaded

    def verify(self) -> None:
        """Check every finished unit's values against its record (:class:`OutputError`, one
        line naming the unit, its array and its record, on the first that does not match)."""
        if self.finished:
            self._check(self._load())

    # -- internals
    def _group(self):
        import zarr

        try:
            with _quiet():
                return zarr.open_group(self.path, mode="r")
        except Exception as e:  # noqa: BLE001 - a damaged store, whatever zarr says of it
            raise OutputError(f"{self.path}: cannot open the store ({type(e).__name__}); it is "
                              f"damaged") from None

    def _load(self) -> dict | None:
        """Every array whole, or ``None`` when one cannot be read (then :meth:`_check` reads
        unit by unit, to name the damaged one)."""
        group = self._group()
        try:
            with _quiet():
                return {n: np.asarray(group[n][...]) for n in self.header["variables"]}
        except Exception:  # noqa: BLE001 - located unit by unit in _check
            return None
    def _dims(self, got) -> dict:
        fam = self.config.family
        return {k: axes(self.config) + (fam.extra_dims(k) if k != "status" else ())
                for k in got}

    def _region(self, unit, dims, got) -> dict:
        iv, im, ie = unit.block
        method = self.config.method[im]
        box = tuple(self.header["plan"]["unit_shape"][method])
        inner = unit_region(self.inner_shape, box, unit.start)
        region = dict(variant=slice(iv, iv + 1), method=slice(im, im + 1), eps=slice(ie, ie + 1))
        region.update(zip(axes(self.config)[3:], inner))
        for k, arr in got.items():
            for d, n in zip(dims[k][len(axes(self.config)):], arr.shape[1:]):
                region[d] = slice(0, n)
        return region

    def _boxed(self, unit, arr):
        """The unit's (lanes, ...) values in the shape of its region."""
        method = self.config.method[unit.block[1]]
        box = tuple(self.header["plan"]["unit_shape"][method])
        sl = unit_region(self.inner_shape, box, unit.start)
        shape = (1, 1, 1) + tuple(s.stop - s.start for s in sl)
        return np.asarray(arr).reshape(shape + arr.shape[1:])

    def _chunks(self, n_trailing: tuple) -> tuple:
        """The zarr chunk shape: fine enough that every method's unit box is whole chunks."""
        boxes = [unit_shape(self.inner_shape, min(self.plan["chunk"][m], self.plan["n_inner"]))
                 for m in self.config.method]
        chunks = []
        for j, n in enumerate(self.inner_shape):
            part = [b[j] for b in boxes if b[j] < n]
            chunks.append(int(np.gcd.reduce(part)) if part else n)
        return (1, 1, 1) + tuple(chunks) + tuple(n_trailing)

    def _create(self, got) -> None:
        """Make the store (coordinates, header, one empty array per value) in a temporary
        folder beside it, then move it into place."""
        import xarray as xr
        import zarr

        from dynamics.sweep.provenance import provenance

        config, fam = self.config, self.config.family
        names, values = inner_grid(config)
        coords = dict(variant=np.asarray(config.variant), method=np.asarray(config.method),
                      eps=np.asarray(config.eps, float))
        coords.update(zip(names, values))
        box = {m: list(unit_shape(self.inner_shape, min(self.plan["chunk"][m],
                                                         self.plan["n_inner"])))
               for m in config.method}
        header = dict(
            format=FORMAT, version=VERSION, kind=self.kind, model=config.model,
            config=self.record, config_hash=self.hash, command=config.command,
            plan=dict(units=len(self.units), lanes=self.plan["lanes"],
                      n_inner=self.plan["n_inner"],
                      chunk={m: int(self.plan["chunk"][m]) for m in config.method},
                      unit_shape=box),
            variables=sorted(got),
            created_by=provenance(config.command),
        )
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                    dir=self.path.parent))
        try:
            with _quiet():
                xr.Dataset(coords=coords, attrs={HEADER: header}).to_zarr(
                    tmp, mode="w", consolidated=False)
                group = zarr.open_group(tmp, mode="r+")
                dims = self._dims(got)
                lane_shape = tuple(len(v) for v in coords.values())
                for k, arr in sorted(got.items()):
                    arr = np.asarray(arr)
                    fill = (np.nan if arr.dtype.kind == "f" else False if arr.dtype.kind == "b"
                            else 0)
                    group.create_array(k, shape=lane_shape + arr.shape[1:],
                                       chunks=self._chunks(arr.shape[1:]), dtype=arr.dtype,
                                       fill_value=fill, dimension_names=dims[k])
                group.create_group(UNITS, attributes=dict(
                    about="one record per finished work unit; a unit without one is not "
                          "finished"))
                zarr.consolidate_metadata(tmp)  # xr.open_zarr(path) then reads it at once
            os.rename(tmp, self.path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.header = header

    def _check(self, loaded: dict | None) -> None:
        group = None if loaded is not None else self._group()
        for i in sorted(self.finished):
            unit = self.units[i] if i < len(self.units) else None
            where = self.path / UNITS / f"{i}.json"
            try:
                record = json.loads(where.read_text())
                if unit is None or record["lanes"] != [unit.start, unit.stop]:
                    raise ValueError("it names other lanes")
                expected = record["sha256"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise OutputError(f"{where}: the record of a finished unit is damaged ({e}); "
                                  f"delete it and run again with --resume to recompute the "
                                  f"unit") from None
            method = self.config.method[unit.block[1]]
            box = tuple(self.header["plan"]["unit_shape"][method])
            sl = (*(slice(b, b + 1) for b in unit.block),
                  *unit_region(self.inner_shape, box, unit.start))
            for k in sorted(expected):
                try:
                    with _quiet():
                        arr = loaded[k][sl] if loaded is not None else np.asarray(group[k][sl])
                    ok = _digest(arr.reshape((unit.lanes,) + arr.shape[len(sl):])) == expected[k]
                except Exception:  # noqa: BLE001 - unreadable: a damaged chunk
                    ok = False
                if not ok:
                    raise OutputError(
                        f"{self.path}: finished unit {i} ({_where(self.config, unit)}) of "
                        f"{k} does not match its record (a damaged or truncated chunk); delete "
                        f"{where} and run again with --resume to recompute it")

    def summary(self) -> str:
        return f"{len(self.finished)} of {len(self.units)} units"

    def write_dataset(self, dest, slab: int = SLAB):
        """Write the sweep's Dataset (what :func:`~dynamics.sweep.core.run` returns) as the
        zarr store ``dest`` without ever holding the grid: every finished unit is checked
        against its record one by one, then the family's ``finish`` runs slab by slab
        (:func:`~dynamics.sweep.core.slabs`, at most ``slab`` lanes) and each slab's variables
        go in with a region write. Written beside ``dest`` and moved into place (``dest``
        must not exist). Returns the Dataset read back lazily (``xr.open_zarr``), whose
        variables are those of the in-memory assembly bit for bit."""
        import xarray as xr
        import zarr

        dest = Path(dest)
        self._check(None)  # unit by unit: memory bounded by a unit
        group = self._group()
        config, pl = self.config, self.plan
        ctx, solvers = finish_context(config, pl)
        n_axes = len(axes(config))
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        try:
            with _quiet():
                for i, (block, region) in enumerate(slabs(config, slab)):
                    sl = (*(slice(b, b + 1) for b in block), *region)
                    values = {n: np.asarray(group[n][sl]) for n in self.header["variables"]}
                    data_vars, coords, attrs = finish_slab(config, ctx, values)
                    lane = lane_variables(config, data_vars)
                    if i == 0:
                        self._create_result(tmp, solvers, data_vars, coords, attrs, lane,
                                            values)
                    names = axes(config)
                    where = dict(zip(names, sl))
                    part = {}
                    for k in lane:
                        dims, arr = data_vars[k][0], np.asarray(data_vars[k][1])
                        part[k] = (dims, arr)
                        where.update({d: slice(0, n) for d, n in
                                      zip(dims[n_axes:], arr.shape[n_axes:])})
                    xr.Dataset(part).to_zarr(tmp, region=where, mode="r+", consolidated=False)
                zarr.consolidate_metadata(tmp)
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        with _quiet():
            return xr.open_zarr(dest, chunks=None)

    def _create_result(self, path, solvers, data_vars, coords, attrs, lane, values) -> None:
        """The result store at ``path``: coordinates, attributes and the variables that are
        not per lane written whole, an empty array for each per-lane one (chunked by slab)."""
        import xarray as xr
        import zarr

        config = self.config
        n_axes = len(axes(config))
        rest = {k: v for k, v in data_vars.items() if k not in lane}
        ds = skeleton(config, self.plan, solvers, rest, coords, attrs)
        ds.attrs[RESULT] = self.kind
        ds.to_zarr(path, mode="w", consolidated=False)
        group = zarr.open_group(path, mode="r+")
        grid = tuple(ds.sizes[d] for d in axes(config))
        box = next(iter(values.values())).shape[:n_axes]
        for k in lane:
            dims, arr, meta = data_vars[k][0], np.asarray(data_vars[k][1]), data_vars[k][2]
            trailing = arr.shape[n_axes:]
            fill = (np.nan if arr.dtype.kind == "f" else False if arr.dtype.kind == "b"
                    else "" if arr.dtype.kind == "U" else 0)
            group.create_array(k, shape=grid + trailing, chunks=box + trailing,
                               dtype=arr.dtype, fill_value=fill, dimension_names=dims,
                               attributes=_plain_attrs(meta))
        # the coordinates that are not indexes, as xarray records them
        extra = [c for c in ds.coords if c not in ds.dims]
        for k in lane:
            dims = set(data_vars[k][0])
            own = [c for c in extra if set(ds[c].dims) <= dims]
            if own:
                group[k].attrs["coordinates"] = " ".join(own)


def _plain_attrs(meta: dict) -> dict:
    """Attributes as JSON values (numpy arrays and scalars as lists and numbers)."""
    out = {}
    for k, v in (meta or {}).items():
        out[k] = v.tolist() if isinstance(v, np.ndarray | np.generic) else v
    return out


def _where(config, unit) -> str:
    iv, im, ie = unit.block
    return (f"{config.variant[iv]}, {config.method[im]}, eps {config.eps[ie]:g}, lanes "
            f"{unit.start}-{unit.stop - 1}")


def _digest(arr) -> str:
    arr = np.ascontiguousarray(np.asarray(arr))
    h = hashlib.sha256(str((arr.dtype.str, arr.shape)).encode())
    h.update(arr.tobytes())
    return h.hexdigest()[:32]


def discard(path) -> None:
    """Remove a sweep store (first renamed to a temporary name, so that a kill half-way leaves
    only what the next run's clean-up removes)."""
    path = Path(path)
    if not path.exists():
        return
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.rmdir(tmp)
    os.rename(path, tmp)
    shutil.rmtree(tmp, ignore_errors=True)
