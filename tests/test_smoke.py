import json

from resnet_demo.store.registry import shipped_models


def test_tiny_weights_dir_is_loadable(tiny_weights_dir):
    (entry,) = shipped_models(tiny_weights_dir)
    model = entry.load()
    assert entry.name == "resnet8" and model.arch.depth == 8
    manifest = json.loads((tiny_weights_dir / "manifest.json").read_text())
    assert manifest["models"]["resnet8"]["test_images"] == 320
    assert (tiny_weights_dir / "test_images.npz").is_file()


def test_shipped_test_images_are_lossless_and_cover_every_mistake(tiny_weights_dir, synthetic_data_dir):
    import numpy as np

    from resnet_demo.data.cifar import load_cifar10
    from resnet_demo.data.testimages import read_test_images
    from resnet_demo.store.ship import GALLERY_PER_CLASS

    test = load_cifar10(synthetic_data_dir).test
    shipped = read_test_images(tiny_weights_dir)
    for i, (image, label) in shipped.items():
        assert np.array_equal(image, test.images[i]) and label == test.labels[i]
    (entry,) = shipped_models(tiny_weights_dir)
    preds = entry.load_predictions()
    assert set(np.flatnonzero(preds["pred"] != preds["labels"]).tolist()) <= shipped.keys()
    assert len(shipped) >= 10 * min(GALLERY_PER_CLASS, np.bincount(test.labels).min())
