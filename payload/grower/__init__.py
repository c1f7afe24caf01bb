"""What the grower does next: treatment zones, the scout list and the files sprayer terminals load.

Pure geometry in the map's local east/north metres (`treatment`, `scout`, `gridrx`), and one writer
per terminal format (`shapefile`, `taskdata`, `gpkg`). The files of a run are put together by
payload/sinks/prescription.py; docs/PRESCRIPTIONS.md says which terminal reads what.
"""
