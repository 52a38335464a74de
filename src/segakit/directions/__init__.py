"""segakit.directions: self-discovered h-space concept directions (learn, save/load, apply). Not built yet."""
