"""VOTable writing shared by SCS and TAP: result tables with UCDs and units, and error documents."""

from __future__ import annotations

import io
import math
from typing import Any, Sequence

import numpy as np
from astropy.io.votable.tree import Field, Info, Resource, TableElement, VOTableFile

MEDIA_TYPE = "application/x-votable+xml"


class VOError(ValueError):
    """Bad input to a VO service; the message names the parameter or the construct."""


def _datatype(values: list[Any]) -> tuple[str, dict[str, Any]]:
    seen = [v for v in values if v is not None]
    if seen and all(isinstance(v, bool) for v in seen):
        return "boolean", {}
    if seen and all(isinstance(v, int) and not isinstance(v, bool) for v in seen):
        return "long", {}
    if seen and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen):
        return "double", {}
    return "char", {"arraysize": "*"}


def table_document(columns: Sequence[str], rows: Sequence[Sequence[Any]], meta: dict[str, dict[str, str]],
                   *, version: str = "1.4", overflow: bool = False, description: str = "",
                   infos: Sequence[tuple[str, str]] = ()) -> bytes:
    """A results VOTable: one RESOURCE type="results" with QUERY_STATUS OK (or OVERFLOW after the table,
    DALI §4.4), fields carrying the UCD/unit/description given in ``meta`` per column name."""
    vot = VOTableFile(version=version)
    res = Resource(type="results")
    vot.resources.append(res)
    # One status INFO: OVERFLOW when MAXREC cut the result short (pyvo warns), else OK.
    res.infos.append(Info(ID="query_status", name="QUERY_STATUS", value="OVERFLOW" if overflow else "OK"))
    for k, (name, value) in enumerate(infos):
        res.infos.append(Info(ID=f"info_{k}", name=name, value=value))
    table = TableElement(vot, name="results")
    if description:
        table.description = description
    res.tables.append(table)
    cols = [[r[i] for r in rows] for i in range(len(columns))]
    used: set[str] = set()
    for name, values in zip(columns, cols):
        datatype, extra = _datatype(values)
        m = meta.get(name.lower(), {})
        fid = name if name not in used else f"{name}_{len(used)}"
        used.add(fid)
        field = Field(vot, name=name, ID=fid, datatype=datatype, ucd=m.get("ucd") or None,
                      unit=m.get("unit") or None, **extra)
        if m.get("description"):
            field.description = m["description"]
        table.fields.append(field)
    table.create_arrays(len(rows))
    for j, values in enumerate(cols):
        field = table.fields[j]
        for i, v in enumerate(values):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                table.array.mask[i][j] = True
                table.array.data[i][j] = "" if field.datatype == "char" else (
                    False if field.datatype == "boolean" else 0)
            else:
                table.array.data[i][j] = str(v) if field.datatype == "char" else v
    buf = io.BytesIO()
    vot.to_xml(buf, tabledata_format="tabledata")
    return buf.getvalue()


def error_document(message: str, *, version: str = "1.4", scs: bool = False) -> bytes:
    """The DALI error VOTable (RESOURCE type="results", INFO QUERY_STATUS=ERROR); for SCS 1.03 also the
    legacy top-level ``<INFO ID="Error" name="Error" value=…/>`` that older clients look for."""
    vot = VOTableFile(version=version)
    if scs:
        vot.infos.append(Info(ID="Error", name="Error", value=message))
    res = Resource(type="results")
    info = Info(ID="query_status", name="QUERY_STATUS", value="ERROR")
    info.content = message
    res.infos.append(info)
    vot.resources.append(res)
    buf = io.BytesIO()
    vot.to_xml(buf)
    return buf.getvalue()


def finite(value: Any) -> Any:
    """None for NaN/inf floats (written as null), otherwise the value; numpy scalars become Python ones."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
