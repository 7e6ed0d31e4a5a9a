import os

from qgis.core import Qgis, QgsMessageLog, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms.doctor import DoctorAlgorithm
from .algorithms.evaluate import EvaluateAlgorithm
from .algorithms.export import ExportDeepnessAlgorithm
from .algorithms.segment import SegmentAlgorithm, polygon_extensions
from .algorithms.tags import TagGridAlgorithm, TagsFromVectorAlgorithm
from .algorithms.train import TrainAlgorithm
from .runner import SETTING, WEIGHTS_SETTING, listing, locate_cli

try:  # Processing's own settings registry (QGIS's GRASS/SAGA providers use it); absent only in a bare QGIS build
    from processing.core.ProcessingConfig import ProcessingConfig, Setting, settingsWatcher
except ImportError:  # pragma: no cover
    ProcessingConfig = Setting = settingsWatcher = None


class RsWsssProvider(QgsProcessingProvider):
    """rs-wsss algorithms, and the 'rs-wsss executable' setting (Processing → Options → Providers → rs-wsss)."""

    def __init__(self):
        super().__init__()
        self.cli_problem = None

    def id(self):
        return "rs_wsss"

    def name(self):
        return "rs-wsss"

    def longName(self):  # noqa: N802
        return "rs-wsss: weakly supervised segmentation of remote-sensing rasters"

    def icon(self):
        return QIcon(os.path.join(os.path.dirname(__file__), "icon.svg"))

    def load(self):
        if ProcessingConfig is not None:
            ProcessingConfig.settingIcons[self.name()] = self.icon()
            ProcessingConfig.addSetting(
                Setting(
                    self.name(),
                    SETTING,
                    "rs-wsss executable (…/.venv/bin/rs-wsss or …\\Scripts\\rs-wsss.exe; empty: "
                    "$RS_WSSS_CLI, then PATH)",
                    "",
                    valuetype=Setting.FILE,
                )
            )
            ProcessingConfig.addSetting(
                Setting(
                    self.name(),
                    WEIGHTS_SETTING,
                    "Default backbone weights: a folder (CLIP + DINOv2 files) or a file, or 'random (shows the "
                    "mechanics only)'; empty: $RS_WSSS_WEIGHTS_DIR, then the hub cache",
                    "",
                )
            )
            ProcessingConfig.readSettings()
            settingsWatcher.settingsChanged.connect(self.check_cli)  # re-check when the user edits the setting
        self.check_cli()
        self.refreshAlgorithms()
        return True

    def unload(self):
        if ProcessingConfig is not None and SETTING in ProcessingConfig.settings:
            ProcessingConfig.removeSetting(SETTING)
            ProcessingConfig.removeSetting(WEIGHTS_SETTING)
            try:
                settingsWatcher.settingsChanged.disconnect(self.check_cli)
            except TypeError:
                pass

    def check_cli(self):
        """Say at load time, not at the first Run, when the rs-wsss command cannot be found."""
        path, self.cli_problem = locate_cli()
        if path is not None and listing() is None:  # found but it does not run (a broken environment)
            self.cli_problem = f"{path} does not run 'rs-wsss options --json': run 'Check installation' or reinstall"
        if self.cli_problem:
            QgsMessageLog.logMessage(self.cli_problem, "rs-wsss", Qgis.Warning)
        else:
            QgsMessageLog.logMessage(f"rs-wsss command: {path}", "rs-wsss", Qgis.Info)
        return path if not self.cli_problem else None

    def warningMessage(self):  # noqa: N802 (shown in every algorithm dialog of this provider)
        return self.cli_problem or ""

    def supportedOutputVectorLayerExtensions(self):  # noqa: N802 (the formats the CLI writes and QGIS reads)
        return polygon_extensions()

    def defaultVectorFileExtension(self, hasGeometry=True):  # noqa: N802
        return "gpkg"

    def loadAlgorithms(self):  # noqa: N802
        for alg in (
            SegmentAlgorithm(),
            TrainAlgorithm(),
            TagGridAlgorithm(),
            TagsFromVectorAlgorithm(),
            EvaluateAlgorithm(),
            ExportDeepnessAlgorithm(),
            DoctorAlgorithm(),
        ):
            self.addAlgorithm(alg)
