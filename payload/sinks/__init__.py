"""Where detection records go: detections.jsonl first (the source of truth), then GIS layers and crops."""
