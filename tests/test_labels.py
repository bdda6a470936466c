import pytest
import torch
from torchvision.models._meta import _KINETICS400_CATEGORIES

from cozoo.labels import available_label_sets, class_index, class_names, top_k


def test_kinetics400_is_the_alphabetical_class_list():
    names = class_names("kinetics400")
    assert len(names) == len(set(names)) == 400
    assert names == sorted(names)
    assert (names[0], names[399]) == ("abseiling", "zumba")
    assert names == list(_KINETICS400_CATEGORIES)  # an independent copy of the same list
    assert class_index("passing American football (in game)") == 208


def test_sports1m_has_487_distinct_names():
    names = class_names("sports1m")
    assert len(names) == len(set(names)) == 487
    assert (names[0], names[-1]) == ("boomerang", "model aircraft")
    assert all(name == name.strip() and name for name in names)


def test_top_k_returns_names_and_probabilities():
    logits = torch.full((2, 400), -10.0)
    logits[0, class_index("zumba")] = 5.0
    logits[1, class_index("yoga")] = 3.0
    logits[1, class_index("abseiling")] = 2.0
    best = top_k(logits, k=2)
    assert [name for name, _ in best[0]][0] == "zumba"
    assert [name for name, _ in best[1]] == ["yoga", "abseiling"]
    assert best[1][0][1] > best[1][1][1] > 0


def test_errors_name_the_problem():
    assert available_label_sets() == ["kinetics400", "sports1m"]
    with pytest.raises(ValueError, match="unknown label set 'ucf101'"):
        class_names("ucf101")
    with pytest.raises(ValueError, match="'moonwalking' is not a class of 'kinetics400'"):
        class_index("moonwalking")
    with pytest.raises(ValueError, match=r"expected logits of shape \(N, 487\)"):
        top_k(torch.zeros(1, 400), label_set="sports1m")
