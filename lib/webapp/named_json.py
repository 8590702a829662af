"""A run's JSON file whose entries name each input by its path under the request's input folder.

The run loop hands the sinks the temporary paths the inputs have on the server; the JSON file should name
them as the user does: by the upload's name. `NamedEntries` stands in for the open
lib.outputs.DetectionsJson (lib.sinks.OutputOptions.json) and renames the "path" of each entry, and
nothing else: the file is DetectionsJson's, byte for byte what test.py writes when run in a folder
holding the same files under the same names.
"""
from pathlib import Path


class NamedEntries:
    """The DetectionsJson `json` with image paths taken relative to `folder`."""

    def __init__(self, json, folder):
        self.json, self.folder = json, Path(folder)

    def name(self, path):
        """`path` as an entry names it: relative to the input folder, as str(Path) writes it."""
        return str(Path(path).relative_to(self.folder))

    def add(self, path, image_hw, dets, frame=None, crops=None):
        self.json.add(self.name(path), image_hw, dets, frame=frame, crops=crops)

    def has(self, path):
        return self.json.has(self.name(path))

    def keep(self, path):
        self.json.keep(self.name(path))
