"""The raster layer: windows, reading, tags, stitching, outputs. Knows nothing of torch models."""

import os

# GDAL's block cache defaults to 5 % of RAM and fills up on large rasters (it was most of the extra peak RSS of a
# 10 000² run over a 1 000² one); 64 MB is ample for windowed reads and strip writes. A user's own setting wins.
os.environ.setdefault("GDAL_CACHEMAX", "64")
