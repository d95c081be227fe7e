"""Reports over HTTP (日报 / 周小结 / 月通报, CSV); computed by fleet/alerts/reports.py."""
