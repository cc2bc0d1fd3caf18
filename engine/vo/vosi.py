"""VOSI documents of the TAP service: capabilities, tables (VODataService) and availability."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

from .tap import DEFAULT_MAXREC, HARD_MAXREC, PUBLISHED

_XSI = "http://www.w3.org/2001/XMLSchema-instance"


def capabilities(base_url: str) -> bytes:
    """TAPRegExt capabilities: ADQL 2.0, VOTable output, the row limits and the geometry functions offered."""
    base = escape(base_url.rstrip("/"))
    geo = "".join(f'<feature><form>{f}</form></feature>' for f in ("POINT", "CIRCLE", "CONTAINS", "INTERSECTS",
                                                                  "DISTANCE"))
    return f'''<?xml version="1.0" encoding="UTF-8"?>
<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0"
    xmlns:xsi="{_XSI}" xmlns:vr="http://www.ivoa.net/xml/VOResource/v1.0"
    xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0">
  <capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">
    <interface xsi:type="vs:ParamHTTP" role="std" version="1.1"><accessURL use="base">{base}</accessURL></interface>
    <language><name>ADQL</name><version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>
      <description>ADQL 2.0 translated to SQLite; geometry: CONTAINS/INTERSECTS of a POINT and a CIRCLE, DISTANCE</description>
      <languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-adqlgeo">{geo}</languageFeatures>
    </language>
    <outputFormat><mime>application/x-votable+xml</mime><alias>votable</alias></outputFormat>
    <retentionPeriod><default>0</default></retentionPeriod>
    <outputLimit><default unit="row">{DEFAULT_MAXREC}</default><hard unit="row">{HARD_MAXREC}</hard></outputLimit>
  </capability>
  <capability standardID="ivo://ivoa.net/std/VOSI#capabilities">
    <interface xsi:type="vs:ParamHTTP"><accessURL use="full">{base}/capabilities</accessURL></interface>
  </capability>
  <capability standardID="ivo://ivoa.net/std/VOSI#availability">
    <interface xsi:type="vs:ParamHTTP"><accessURL use="full">{base}/availability</accessURL></interface>
  </capability>
  <capability standardID="ivo://ivoa.net/std/VOSI#tables">
    <interface xsi:type="vs:ParamHTTP"><accessURL use="full">{base}/tables</accessURL></interface>
  </capability>
</vosi:capabilities>
'''.encode()


def tables() -> bytes:
    """The published tables and columns with datatypes, UCDs and units (VOSI tables / VODataService)."""
    ET.register_namespace("vosi", "http://www.ivoa.net/xml/VOSITables/v1.0")
    ET.register_namespace("vs", "http://www.ivoa.net/xml/VODataService/v1.1")
    ET.register_namespace("xsi", _XSI)
    root = ET.Element("{http://www.ivoa.net/xml/VOSITables/v1.0}tableset")
    schema = ET.SubElement(root, "schema")
    ET.SubElement(schema, "name").text = "default"
    ET.SubElement(schema, "description").text = "DSA-110 continuum pipeline catalogue (read-only)"
    for name, (desc, cols) in PUBLISHED.items():
        t = ET.SubElement(schema, "table", {"type": "view"})
        ET.SubElement(t, "name").text = name
        ET.SubElement(t, "description").text = desc
        for col, datatype, ucd, unit, cdesc in cols:
            c = ET.SubElement(t, "column")
            ET.SubElement(c, "name").text = col
            ET.SubElement(c, "description").text = cdesc
            if unit:
                ET.SubElement(c, "unit").text = unit
            if ucd:
                ET.SubElement(c, "ucd").text = ucd
            ET.SubElement(c, "dataType", {f"{{{_XSI}}}type": "vs:TAPType"}).text = datatype
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root)


def availability(up: bool, note: str) -> bytes:
    return f'''<?xml version="1.0" encoding="UTF-8"?>
<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">
  <vosi:available>{"true" if up else "false"}</vosi:available>
  <vosi:note>{escape(note)}</vosi:note>
</vosi:availability>
'''.encode()
