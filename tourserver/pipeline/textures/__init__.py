"""Textures: which slots read them, resizing, encoders behind one interface, the quality search
and the perceptual metrics it uses."""
