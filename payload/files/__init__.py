"""Every file writer of the payload, with nothing of the sinks in them: atomic replace, the crash-safe
JSONL appender and its readers, the streaming KML vocabulary, GeoJSON/KML/CSV feature layers and
GeoTIFF rasters. Sinks, the export and the report import them from here."""
