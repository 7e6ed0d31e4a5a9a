"""Packaged configs (``rs_wsss_configs``): YAML shipped with the package, e.g. ``tiny.yaml``; see :func:`rs_wsss.config.packaged_config`."""
