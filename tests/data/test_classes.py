"""medgan.data.classes: the one class name/index resolver."""

from __future__ import annotations

import numpy as np
import pytest

from medgan.data.classes import class_index, class_indices
from medgan.errors import DatasetError, MedganError

NAMES = ["malignant", "normal, benign"]


def test_index_name_case_and_digit_string():
    assert class_index(1, NAMES) == 1 and class_index(np.int64(0), NAMES) == 0
    assert class_index("normal, benign", NAMES) == 1 and class_index("MALIGNANT", NAMES) == 0
    assert class_index(" 1 ", NAMES) == 1


def test_names_win_over_digits_and_errors_list_the_classes():
    assert class_index("1", ["1", "2"]) == 0  # a class named "1" is that class, not index 1
    with pytest.raises(MedganError, match=r"unknown class 2; valid classes \(index=name\): 0='malignant', 1="):
        class_index(2, NAMES)
    with pytest.raises(DatasetError, match="unknown class True"):
        class_index(True, NAMES, DatasetError)


def test_class_indices_keep_order_and_drop_repeats():
    assert class_indices(None, NAMES) == [0, 1]
    assert class_indices(["normal, benign", 0, "1"], NAMES) == [1, 0]
    assert class_indices("malignant", NAMES) == [0]


def test_folder_names_resolve_as_classes():
    from medgan.data.classes import folder_name, folder_names

    names = ["malignant", "normal, benign"]
    assert folder_name("normal, benign") == "normal_benign" and folder_names(names) == ["malignant", "normal_benign"]
    assert class_index("normal_benign", names) == 1 and class_index("NORMAL_BENIGN", names) == 1
    assert folder_names(["a b", "a_b"]) == ["a_b", "a_b_1"]
    assert class_index("a_b_1", ["a b", "a_b"]) == 1
