"""Deployment of the trained network (detectron2: export/):

onnx_export.py    the network (images -> six raw heads) as an ONNX graph
onnx_runtime.py   such a graph run by ONNX Runtime with the forward contract of SSH
onnx_detector.py  the whole single-scale detector (image blob -> detections) as one ONNX graph
"""
