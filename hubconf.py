"""torch.hub entry points of the SSH face detector (model/hub.py):

    detector = torch.hub.load("path/to/ssh-pytorch", "ssh", source="local")
"""
dependencies = ["torch", "torchvision", "numpy", "cv2", "yaml", "easydict", "tqdm"]

from model.hub import ssh  # noqa: E402

__all__ = ["ssh"]
