"""The district's own road network and sites as GeoJSON: the dashboard's base map;
``paths`` draws routes along the roads, ``repo`` holds the roads' SQL."""
