"""The district's own road network and sites as GeoJSON: the dashboard's base map."""
