"""How results appear on the map: named after scene and model, grouped, see-through; the tag grid as labelled
outlines."""

import xml.etree.ElementTree as ET

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsColorRampShader,
    QgsEditorWidgetSetup,
    QgsFillSymbol,
    QgsPalettedRasterRenderer,
    QgsPalLayerSettings,
    QgsProcessingContext,
    QgsProcessingLayerPostProcessorInterface,
    QgsProject,
    QgsRasterShader,
    QgsRendererCategory,
    QgsSingleBandPseudoColorRenderer,
    QgsSingleSymbolRenderer,
    QgsTextBufferSettings,
    QgsTextFormat,
    QgsVectorLayerSimpleLabeling,
)
from qgis.PyQt.QtGui import QColor

OPACITY = 0.6  # results sit over the imagery, which must stay visible
_KEEP = []  # post-processors must outlive processAlgorithm (QGIS holds no Python reference to them)


def palette(qml):
    """[(value, label, '#rrggbb')] from the .qml rs-wsss writes beside its class raster."""
    return [(int(e.get("value")), e.get("label"), e.get("color")) for e in ET.parse(qml).iter("paletteEntry")]


def style_classes_raster(layer, qml):
    """Paletted class colours and names; background transparent; partial opacity."""
    layer.loadNamedStyle(qml)
    classes = []
    for value, label, color in palette(qml):
        c = QColor(color)
        if label == "background":
            c.setAlpha(0)
        classes.append(QgsPalettedRasterRenderer.Class(value, c, label))
    renderer = QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes)
    renderer.setOpacity(OPACITY)
    layer.setRenderer(renderer)


def style_classes_vector(layer, qml):
    """One category per class drawn as its outline in the class colour (the class raster beneath gives the fill, and
    the imagery stays visible inside); background drawn as nothing."""
    cats = []
    for _value, label, color in palette(qml):
        sym = QgsFillSymbol.createSimple({"style": "no", "outline_color": color, "outline_width": "0.4"})
        cats.append(QgsRendererCategory(label, sym, label, label != "background"))
    layer.setRenderer(QgsCategorizedSymbolRenderer("class_name", cats))
    layer.setOpacity(OPACITY)


def style_confidence(layer):
    """Low confidence red, high green, over the 0–1 range the CLI writes (-1, uncovered, is nodata)."""
    shader_fn = QgsColorRampShader(0.0, 1.0)
    shader_fn.setColorRampType(QgsColorRampShader.Interpolated)
    shader_fn.setColorRampItemList(
        [
            QgsColorRampShader.ColorRampItem(0.0, QColor("#d7191c"), "0 (unsure)"),
            QgsColorRampShader.ColorRampItem(0.5, QColor("#ffffbf"), "0.5"),
            QgsColorRampShader.ColorRampItem(1.0, QColor("#1a9641"), "1 (sure)"),
        ]
    )
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(shader_fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(0.0)
    renderer.setClassificationMax(1.0)
    renderer.setOpacity(OPACITY)
    layer.setRenderer(renderer)


def label_choices(class_names, limit=64):
    """Values offered for a tile's labels: single classes, then pairs, triples … while the list stays short."""
    from itertools import combinations

    out = []
    for k in range(1, len(class_names) + 1):
        combos = [";".join(c) for c in combinations(class_names, k)]
        if out and len(out) + len(combos) > limit:
            break
        out += combos
    return out


def style_tag_grid(layer, class_names=None):
    """Outlines without fill, each tile labelled with its classes, and the labels picked from a list.

    QGIS's list widget (Value Map) stores one value per feature, so the list holds single classes and short
    combinations ('building;road'); empty means background only."""
    layer.setRenderer(
        QgsSingleSymbolRenderer(
            QgsFillSymbol.createSimple(
                {"color": "0,0,0,0", "style": "no", "outline_color": "255,230,0,255", "outline_width": "0.5"}
            )
        )
    )
    pal = QgsPalLayerSettings()
    pal.fieldName = "labels"
    pal.placement = QgsPalLayerSettings.OverPoint
    fmt = QgsTextFormat()
    fmt.setColor(QColor("white"))
    fmt.setSize(9)
    buf = QgsTextBufferSettings()
    buf.setEnabled(True)
    buf.setColor(QColor("black"))
    buf.setSize(0.8)
    fmt.setBuffer(buf)
    pal.setFormat(fmt)
    layer.setLabeling(QgsVectorLayerSimpleLabeling(pal))
    layer.setLabelsEnabled(True)
    idx = layer.fields().indexOf("labels")
    if idx >= 0 and class_names:
        entries = [{"(background only)": ""}] + [{v: v} for v in label_choices(class_names)]
        layer.setEditorWidgetSetup(idx, QgsEditorWidgetSetup("ValueMap", {"map": entries}))
    for name in ("image", "col_off", "row_off", "width", "height"):
        i = layer.fields().indexOf(name)
        if i >= 0:
            layer.setEditorWidgetSetup(i, QgsEditorWidgetSetup("Hidden", {}))


RUN_GROUP = "rs_wsss/run"  # custom property marking the layer-tree groups this plugin made
RANK = "rs_wsss/rank"  # custom property: a result's place in its group (polygons 0, classes 1, confidence 2)


def group_for(project, name):
    """A layer-tree group named after the run, at the top; a second run of the same scene and model gets '(2)'."""
    root = project.layerTreeRoot()
    wanted, n = name, 2
    while root.findGroup(wanted) is not None:
        wanted, n = f"{name} ({n})", n + 1
    group = root.insertGroup(0, wanted)
    group.setCustomProperty(RUN_GROUP, True)
    return group


def _drop_if_empty(group):
    """A run group left without layers (its results moved into a later run's group) is removed."""
    if group is not None and group.customProperty(RUN_GROUP) and not group.children() and group.parent() is not None:
        group.parent().removeChildNode(group)


class RunGroup:
    """The layer-tree group of one run, made when its first layer arrives. A rerun into the same files finds its
    layers already in a run group: that group is reused (the layers reloaded in place), so none is left empty."""

    def __init__(self, name):
        self.name, self.node = name, None

    def add(self, project, layer, rank=None, visible=True):
        root = project.layerTreeRoot()
        node = root.findLayer(layer.id())
        parent = node.parent() if node is not None else None
        if self.node is None:
            reuse = parent is not None and parent is not root and parent.customProperty(RUN_GROUP)
            self.node = parent if reuse else group_for(project, self.name)
        ranks = [c.customProperty(RANK) for c in self.node.children() if c is not node]
        index = sum(1 for r in ranks if r is not None and rank is not None and int(r) <= rank)
        new = self.node.insertLayer(index, layer)
        new.setCustomProperty(RANK, rank)
        new.setItemVisibilityChecked(visible)
        if node is not None:
            parent.removeChildNode(node)
            if parent is not self.node:
                _drop_if_empty(parent)


def to_top(project, layer):
    """A layer that belongs to no run (the tag grid) goes to the top of the tree, not into the group QGIS's
    insertion point happens to be in (the previous run's)."""
    root = project.layerTreeRoot()
    node = root.findLayer(layer.id())
    if node is None or node.parent() is root:
        return
    parent = node.parent()
    root.insertLayer(0, layer)
    parent.removeChildNode(node)
    _drop_if_empty(parent)


class ResultLayer(QgsProcessingLayerPostProcessorInterface):
    """Names, reloads, styles and places one output layer once QGIS has loaded it."""

    def __init__(self, name, style, group=None, rank=None, visible=True):
        super().__init__()
        self.name, self.style, self.group, self.rank, self.visible = name, style, group, rank, visible

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API)
        project = context.project() or QgsProject.instance()
        layer.setName(self.name)
        layer.reload()  # a rerun into the same file reuses the project's layer: show the new content
        self.style(layer)
        if self.group is not None:
            self.group.add(project, layer, self.rank, self.visible)
        else:
            to_top(project, layer)
        layer.triggerRepaint()

    @classmethod
    def attach(cls, context, path, name, style, group=None, rank=None, visible=True):
        """Register on an output QGIS will load; False when the user chose not to open it."""
        if not context.willLoadLayerOnCompletion(path):
            return False
        post = cls(name, style, group, rank, visible)
        _KEEP.append(post)
        details = context.layerToLoadOnCompletionDetails(path)
        details.name = name
        details.setPostProcessor(post)
        return True

    @classmethod
    def load(cls, context, path, name, style, group=None):
        """Load a file the algorithm wrote that is not a layer output (a CSV table, the confidence raster)."""
        details = QgsProcessingContext.LayerDetails(name, context.project() or QgsProject.instance(), name)
        post = cls(name, style, group)
        _KEEP.append(post)
        details.setPostProcessor(post)
        context.addLayerToLoadOnCompletion(path, details)


def move_load(context, old, new):
    """QGIS loads outputs by path: when an output was written elsewhere than asked, load it from where it is."""
    if old == new:
        return
    layers = context.layersToLoadOnCompletion()
    if old in layers:
        layers[new] = layers.pop(old)
        context.setLayersToLoadOnCompletion(layers)
