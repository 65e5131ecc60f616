"""The glTF core layer: one document model, reference walking, primitive and buffer helpers.

Everything above it (ingest, pipeline) reads and writes glTF through these modules; nothing
here knows about tours, the build or the CLI."""
