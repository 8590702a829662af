"""How weights get in and out of the network (detectron2 keeps this in checkpoint/):

caffemodel.py  Caffe .caffemodel reader and writer (protobuf wire format, no Caffe)
official.py    the official weight files: download, unpack, verify, record (docs/weights.md)
convert.py     a .caffemodel's weights as a plain state_dict .pth, checked bit for bit
cli.py         `python3 -m model.weights ssh|imagenet|convert`
loading.py     file-type dispatch .caffemodel / .pth / .onnx (integrity record checked), ImageNet init

Training snapshots (weights with optimizer, schedule, RNG and data position) are the training
engine's state and live beside it in lib/utils/checkpoint.py, since lib/ never imports model/;
`SSH.load_checkpoint` reads the weights of either a snapshot or a plain state_dict.
Nothing is imported here, so that model.ssh can use caffemodel.py without a cycle.
"""
