"""Packaged configs (``rs_wsss_configs``): YAML shipped with the package (``tiny.yaml``).

Found by :func:`rs_wsss.config.packaged_config`."""
