"""A thin KML vocabulary over the standard library's streaming XML writer (which escapes text).

Streaming: a document is written element by element, so a layer of a long flight is never held
whole in memory (a KML library that builds the document would grow with the flight).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import IO, Any, cast
from xml.sax.saxutils import XMLGenerator
from xml.sax.xmlreader import AttributesImpl

KML_NS = "http://www.opengis.net/kml/2.2"
# KML colours are aabbggrr
LABEL_COLOURS = ["ff0000ff", "ff00a5ff", "ffff00ff", "ff00ffff", "ffff0000", "ff00ff00"]
UNTRUSTED_COLOUR = "ff888888"


class Kml:
    """A thin KML vocabulary over the standard library's streaming XML writer (which escapes text)."""

    def __init__(self, f: IO[str]) -> None:
        # XMLGenerator writes str to a text stream; its stubs name only io's concrete classes
        self.g = XMLGenerator(cast(io.TextIOBase, f), encoding="utf-8", short_empty_elements=False)

    def begin_document(self, name: str) -> None:
        """The XML declaration, <kml> and <Document> with its name; `end_document` closes them."""
        self.g.startDocument()
        self.start("kml", xmlns=KML_NS)
        self.start("Document")
        self.leaf("name", name)

    def end_document(self) -> None:
        self.end("Document")
        self.end("kml")
        self.g.endDocument()

    def start(self, tag: str, **attrs: str) -> None:
        self.g.startElement(tag, AttributesImpl(attrs))

    def end(self, tag: str) -> None:
        self.g.endElement(tag)

    def leaf(self, tag: str, text: str) -> None:
        self.g.startElement(tag, AttributesImpl({}))
        self.g.characters(text)
        self.g.endElement(tag)

    def extended_data(self, items: Iterable[tuple[str, Any]]) -> None:
        """The balloon's table: every value as text, None as empty."""
        self.start("ExtendedData")
        for name, v in items:
            self.start("Data", name=name)
            self.leaf("value", "" if v is None else str(v))
            self.end("Data")
        self.end("ExtendedData")

    def polygon_style(self, style_id: str, colour: str, fill_alpha: str, width: str | None = None) -> None:
        """An outline in `colour` (aabbggrr) and a fill of the same colour at alpha `fill_alpha` (hex)."""
        self.start("Style", id=style_id)
        self.start("LineStyle")
        self.leaf("color", colour)
        if width is not None:
            self.leaf("width", width)
        self.end("LineStyle")
        self.start("PolyStyle")
        self.leaf("color", fill_alpha + colour[2:])
        self.end("PolyStyle")
        self.end("Style")

    def polygon(self, rings: Iterable[Iterable[tuple[float, float]]]) -> None:
        """A polygon from lon/lat rings: the first is the outer boundary, the others are holes."""
        self.start("Polygon")
        for j, ring in enumerate(rings):
            side = "outerBoundaryIs" if j == 0 else "innerBoundaryIs"
            self.start(side)
            self.start("LinearRing")
            self.leaf("coordinates", kml_coords(ring))
            self.end("LinearRing")
            self.end(side)
        self.end("Polygon")

    def point(self, lon: float, lat: float) -> None:
        self.start("Point")
        self.leaf("coordinates", kml_coords([(float(lon), float(lat))]))
        self.end("Point")


def kml_coords(lonlat: Iterable[tuple[float, float]]) -> str:
    return " ".join(f"{lon!r},{lat!r},0" for lon, lat in lonlat)
