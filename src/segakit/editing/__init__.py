"""segakit.editing: instruction-guided editing of real images on the fly. Not built yet."""
