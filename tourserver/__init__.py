"""tourserver: a content server for geo-anchored night-time city tours in AR and VR."""

__version__ = "0.1.0"
