"""Decoded frames to RGB24 exactly as the ffmpeg CLI converts them (`-pix_fmt rgb24`).

The CLI converts with the `scale` filter it inserts in front of the output, with its default
swscale flags `bicubic` (fftools/cmdutils.c, `init_opts`); the filter hands swscale the frame's
colour range, matrix and chroma sample location. PyAV's `VideoReformatter` calls swscale with
bilinear flags and without the chroma location: the same bytes on 8-bit 4:2:0 sources (swscale's
unscaled converters interpolate nothing), but up to ~100 grey levels off at edges on 10-bit
sources, whose chroma swscale must interpolate. So every frame goes through an FFmpeg filter graph
holding the CLI's filters (buffer → `scale=flags=bicubic` → `format=rgb24` → sink): the CLI's bytes
on 8-, 10- and 12-bit sources alike, and on one thread no slower than the reformatter
(`benchmarks/decode.py --convert`; benchmarks/RESULTS.md "## decode").
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import av

__all__ = ["CLI_SWS_FLAGS", "RgbConverter"]

# The CLI's default swscale flags for the filters it inserts (fftools/cmdutils.c, init_opts).
CLI_SWS_FLAGS = "bicubic"


class RgbConverter:
    """One per video: frame → uint8 [H, W, 3], the bytes `ffmpeg ... -pix_fmt rgb24` writes."""

    def __init__(self) -> None:
        self._graph: av.filter.Graph | None = None
        self._key: tuple | None = None

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        graph = self._graph_for(frame)
        graph.push(frame)
        return graph.pull().to_ndarray()

    def _graph_for(self, frame: av.VideoFrame) -> av.filter.Graph:
        """The graph for this frame's geometry and pixel format, rebuilt when they change (as the CLI
        reconfigures its filters)."""
        import av

        key = (frame.width, frame.height, frame.format.name)
        if self._graph is None or key != self._key:
            graph = av.filter.Graph()
            graph.threads = 1  # one core per decoder (extract/cores.py); set before any filter is added
            nodes = [graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                                      time_base=frame.time_base or Fraction(1, 1)),
                     graph.add("scale", f"flags={CLI_SWS_FLAGS}"), graph.add("format", "rgb24"),
                     graph.add("buffersink")]
            for a, b in zip(nodes, nodes[1:]):
                a.link_to(b)
            graph.configure()
            self._graph, self._key = graph, key
        return self._graph
