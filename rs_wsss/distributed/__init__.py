"""Segmentation across processes: Dask workers stitching a scene's blocks (:mod:`rs_wsss.distributed.dask`)."""
