"""Splatstage wire protocol and coordinate conventions (stdlib + numpy only).

The specification is docs/protocol.md. ``wire`` encodes and decodes multipart messages,
``messages`` validates their content, ``conventions`` converts cameras between OpenCV and
Blender, ``camera_file`` reads and writes cameras.json. ``client`` (the only module that needs
pyzmq) talks to a backend.
"""

PROTOCOL_VERSION = "1.0"
PROTOCOL_MAJOR = 1
