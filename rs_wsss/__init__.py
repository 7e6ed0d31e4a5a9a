"""rs-wsss: weakly supervised semantic segmentation of remote-sensing rasters from tile-level tags."""

__version__ = "0.1.0"
