"""Model cards: one schema for both engines, and the committed cards follow it and
describe the committed files."""

from __future__ import annotations

import json

import pytest
from mnist_cnn import _io, paths
from mnist_cnn.cards import SCHEMA, check_card
from mnist_cnn.shapes import NUM_CLASSES

COMMITTED = {"numpy": ("numpy_cnn.npz", 0.992), "keras": ("cnn_model.keras", 0.995)}


@pytest.mark.parametrize("engine", sorted(COMMITTED))
def test_committed_card_follows_the_schema_and_matches_its_model(engine):
    name, target = COMMITTED[engine]
    model = paths.models_dir() / name
    card = json.loads(paths.card_path(model).read_text())
    check_card(card)
    assert card["engine"] == engine and card["model"] == name
    assert card["sha256"] == _io.sha256_file(model)
    assert card["file_size_bytes"] == model.stat().st_size
    # trained on 55,000 images, the epoch chosen on the other 5,000, tested on 10,000
    assert (card["train_images"], card["validation_images"]) == (55_000, 5_000)
    assert sum(map(sum, card["confusion_matrix"])) == 10_000
    correct = sum(card["confusion_matrix"][d][d] for d in range(NUM_CLASSES))
    assert card["test_errors"] == 10_000 - correct
    assert card["test_accuracy"] >= target


def test_both_committed_cards_have_the_same_keys_of_the_schema():
    keys = [set(json.loads(paths.card_path(paths.models_dir() / name).read_text())) & set(SCHEMA)
            for name, _ in COMMITTED.values()]
    assert keys[0] == keys[1] == set(SCHEMA)


def test_check_card_names_what_is_wrong():
    card = {key: kind() for key, kind in SCHEMA.items()}
    card["engine"] = "numpy"
    check_card(card)                                   # complete and well typed
    del card["sha256"]
    card["test_accuracy"] = "99 %"
    card["epochs"] = True
    with pytest.raises(ValueError) as info:
        check_card(card)
    text = str(info.value)
    assert "sha256 is missing" in text and "test_accuracy should be float" in text
    assert "epochs should be int" in text
    card.update(sha256="x", test_accuracy=0.99, epochs=3, engine="torch")
    with pytest.raises(ValueError, match="engine should be one of"):
        check_card(card)
