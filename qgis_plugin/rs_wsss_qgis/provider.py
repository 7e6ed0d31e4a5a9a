import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms.evaluate import EvaluateAlgorithm
from .algorithms.segment import SegmentAlgorithm
from .algorithms.tags import TagGridAlgorithm, TagsFromVectorAlgorithm
from .algorithms.train import TrainAlgorithm


class RsWsssProvider(QgsProcessingProvider):
    def id(self):
        return "rs_wsss"

    def name(self):
        return "rs-wsss"

    def longName(self):  # noqa: N802
        return "rs-wsss: weakly supervised segmentation of remote-sensing rasters"

    def icon(self):
        return QIcon(os.path.join(os.path.dirname(__file__), "icon.svg"))

    def loadAlgorithms(self):  # noqa: N802
        for alg in (SegmentAlgorithm(), TrainAlgorithm(), TagGridAlgorithm(), TagsFromVectorAlgorithm(), EvaluateAlgorithm()):
            self.addAlgorithm(alg)
