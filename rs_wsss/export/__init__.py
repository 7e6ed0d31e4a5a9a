"""Models that leave rs-wsss: one ONNX graph per tile (``graph``), the metadata QGIS Deepness reads (``deepness``),
CPU runtimes over that graph (``runtimes``, ``quantize``), a STAC Machine Learning Model card (``card``) and the
``rs-wsss export`` run that ties them together (``run``)."""
