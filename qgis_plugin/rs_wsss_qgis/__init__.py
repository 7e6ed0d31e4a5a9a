"""rs-wsss QGIS plugin: a Processing provider that drives the rs-wsss command line in its own environment."""


def classFactory(iface):  # noqa: N802 (QGIS API)
    from .plugin import RsWsssPlugin

    return RsWsssPlugin(iface)
