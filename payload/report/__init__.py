"""The field report: report.html from an output folder's files (payload/report/html.py)."""
