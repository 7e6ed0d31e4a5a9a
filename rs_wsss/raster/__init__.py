"""The raster layer: windows, reading, tags, stitching, blocks, outputs. Knows nothing of torch models.

Importing it changes nothing in the process: GDAL options are set per run by :mod:`rs_wsss.raster.env`.
"""
