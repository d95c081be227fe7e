"""Importing a district: ``api`` (bulk import over the API, through the same
validation as `clearday import`), ``osm`` (an OpenStreetMap extract as roads), ``repo``
(the import's SQL, run in the importer's one transaction)."""
