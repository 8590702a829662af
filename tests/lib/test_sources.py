"""lib/sources.py: image files and folder trees as items with stable keys, WIDER names and unique stems."""
from pathlib import Path

import pytest

from lib.image_io import ImageError
from lib.sources import Item, image_items, split_items


def touch(*paths):
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_files_first_then_the_folder_tree_each_once_with_unique_stems(tmp_path):
    tree = tmp_path / "tree"
    touch(tree / "a.jpg", tree / "x" / "a.JPG", tree / "x" / "b.png", tree / "a.png", tree / ".hidden" / "c.jpg",
          tree / "out" / "old_ssh.jpg", tree / "notes.txt", tmp_path / "b.jpg")
    items = image_items([tmp_path / "b.jpg", tree / "a.png"], tree, skip=tree / "out")
    assert [(i.path.relative_to(tmp_path).as_posix(), i.stem, i.rel) for i in items] == [
        ("b.jpg", "b_jpg", "b.jpg"),  # a file named on the command line keeps its file name in WIDER files
        ("tree/a.png", "a_png", "a.png"),  # named and found: once, in the first place
        ("tree/a.jpg", "a_jpg", "a.jpg"),
        ("tree/x/a.JPG", "a_JPG_2", "x/a.JPG"),  # a_jpg and a_JPG differ only in case: one file on some disks
        ("tree/x/b.png", "b_png", "x/b.png")]


def test_one_name_in_two_folders_gets_a_number(tmp_path):
    touch(tmp_path / "p" / "a.jpg", tmp_path / "q" / "a.jpg", tmp_path / "q" / "c.jpg")
    assert [i.stem for i in image_items(folder=tmp_path)] == ["a_jpg", "a_jpg_2", "c"]


def test_a_folder_without_images_or_no_folder_is_named(tmp_path):
    touch(tmp_path / "notes.txt")
    with pytest.raises(ImageError, match=rf"--dir {tmp_path}: no image files \(.bmp, .jpeg, .jpg"):
        image_items(folder=tmp_path)
    with pytest.raises(ImageError, match=rf"--dir {tmp_path / 'notes.txt'} is not a folder"):
        image_items(folder=tmp_path / "notes.txt")


def test_split_items_keep_the_split_names():
    assert split_items(["0--Parade/0_a.jpg"], "/w") == [Item(Path("/w/0--Parade/0_a.jpg"), "0_a", "0--Parade/0_a.jpg")]
