"""Where the trucks are: latest positions, tracks, and the live stream."""
