from __future__ import annotations

import pytest

import onefit
from onefit.registry import Registry


def test_register_create_and_list() -> None:
    reg: Registry[dict] = Registry("widget")

    @reg.register("box")
    def box(size: int = 1) -> dict:
        return {"size": size}

    assert reg.create("box", size=4) == {"size": 4}
    assert reg.names() == ["box"]
    assert "box" in reg and len(reg) == 1


def test_duplicate_name_is_an_error() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(lambda: 2)
    assert reg.create("a") == 1  # the first registration is untouched


def test_unknown_name_lists_known_ones() -> None:
    known = "bert, mobilenetv3, model, resnet, timm, torchvision, vit"
    with pytest.raises(ValueError, match=rf"unknown supernet 'nope'; known: {known}"):
        onefit.create_supernet("nope")


def test_supernet_registry_rejects_a_second_mobilenetv3() -> None:
    with pytest.raises(ValueError, match="already registered"):
        onefit.register_supernet("mobilenetv3")(lambda **kw: None)


def test_list_supernets() -> None:
    assert {"mobilenetv3", "resnet"} <= set(onefit.list_supernets())
