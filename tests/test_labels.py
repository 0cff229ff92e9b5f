import numpy as np
import pytest

from tests.lists import official_labels, write_lists
from videolt.data.ids import is_valid_id
from videolt.data.labels import load_labels, multi_hot, summary
from videolt.errors import InputFileError, UsageError

OFFICIAL = official_labels()


def test_ids():
    assert is_valid_id("TOxzzbpZ8pU") and is_valid_id("-abc_def-12")
    for bad in ("1234567890", "abcdefghijkl", "abc/def..12", "abcdefghij ", ""):
        assert not is_valid_id(bad)


def test_small_lists_parse(tmp_path):
    root = write_lists(tmp_path, train=[("aaaaaaaaaaa", [0]), ("bbbbbbbbbbb", [1, 2]), ("-cccccccccc", [0])],
                       val=[("ddddddddddd", [2])], test=[("1234567890", [1])], trailing_newline=False)
    ls = load_labels(root)
    assert ls.num_classes == 3
    assert ls.splits["train"].labels == ((0,), (1, 2), (0,))
    assert ls.counts.tolist() == [2, 1, 1]
    g = ls.groups(head=1, tail=1)
    assert g["head"].tolist() == [0] and g["tail"].tolist() == [1, 2] and g["medium"].tolist() == []
    assert multi_hot(ls.splits["train"].labels, 3).tolist() == [[1, 0, 0], [0, 1, 1], [1, 0, 0]]
    s = summary(ls)
    assert s["splits"] == {"train": 3, "val": 1, "test": 1}
    assert s["invalid_ids"] == 1
    assert s["labels_per_video"] == {"1": 4, "2": 1}


@pytest.mark.parametrize("name,content,line,fragment", [
    ("train.lst", "aaaaaaaaaaa 0\nbbbbbbbbbbb\n", 2, "expected"),
    ("train.lst", "aaaaaaaaaaa 0\nbbbbbbbbbbb 0,9\n", 2, "out of range"),
    ("train.lst", "aaaaaaaaaaa 0\naaaaaaaaaaa 1\n", 2, "repeats line 1"),
    ("train.lst", "aaaaaaaaaaa 0\n\nccccccccccc 1\n", 2, "empty line"),
    ("train.lst", "aaaaaaaaaaa 0, 1\n", 1, "expected"),
    ("train.lst", "aaaaaaaaaaa x\n", 1, "integers"),
    ("train.lst", "../../etc/pa 0\n", 1, "characters"),
    ("test.lst", "aaaaaaaaaaa 1\n", 1, "also in split train"),
    ("count-labels-train.lst", "A 0 1.0\nB 2 1.0\n", 2, "next id"),
    ("count-labels-train.lst", "A 0 x\n", 1, "not a number"),
])
def test_malformed_lines_name_file_and_line(tmp_path, name, content, line, fragment):
    root = write_lists(tmp_path, train=[("aaaaaaaaaaa", [0])], val=[("bbbbbbbbbbb", [1])], test=[("ccccccccccc", [1])])
    (root / name).write_text(content)
    with pytest.raises(InputFileError) as e:
        load_labels(root)
    assert isinstance(e.value, UsageError)
    assert str(e.value).startswith(f"{root / name}:{line}: ")
    assert fragment in str(e.value)


def test_missing_file(tmp_path):
    root = write_lists(tmp_path, train=[("aaaaaaaaaaa", [0])], val=[("bbbbbbbbbbb", [0])], test=[("ccccccccccc", [0])])
    (root / "validate.lst").unlink()
    with pytest.raises(InputFileError, match="validate.lst: file not found"):
        load_labels(root)


@pytest.mark.skipif(not OFFICIAL.is_dir(), reason="official label lists not available")
def test_official_lists():
    s = summary(load_labels(OFFICIAL))
    assert s["splits"] == {"train": 179334, "val": 25619, "test": 51239}
    assert s["classes"] == 1004
    assert s["groups"] == {"head": 47, "medium": 617, "tail": 340}
    assert s["invalid_ids"] == 162
    assert s["labels_per_train_video"] == {"1": 164298, "2": 12978, "3": 1737, "4": 276, "5": 42, "6": 2, "7": 1}
    assert s["train_counts"]["sum"] == 196798
    ls = load_labels(OFFICIAL)
    # count = number of train videos carrying the label
    recount = np.zeros(1004, dtype=np.int64)
    for row in ls.splits["train"].labels:
        recount[list(row)] += 1
    assert (recount == ls.counts).all()
