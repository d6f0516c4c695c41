import json

from resnet_demo.weights import shipped_models


def test_tiny_weights_dir_is_loadable(tiny_weights_dir):
    (entry,) = shipped_models(tiny_weights_dir)
    model = entry.load()
    assert entry.name == "resnet8" and model.arch.depth == 8
    manifest = json.loads((tiny_weights_dir / "manifest.json").read_text())
    assert manifest["models"]["resnet8"]["test_images"] == 320
    assert (tiny_weights_dir / "test_images.npz").is_file()
