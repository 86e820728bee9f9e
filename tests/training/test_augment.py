import numpy as np
import pytest

from cbir_tutorial.data.images import load_rgb
from cbir_tutorial.training.augment import Augmentation, augmented


@pytest.fixture(scope="module")
def photos(sample_dir):
    return np.stack([load_rgb(p, 48) for p in sorted((sample_dir / "images").glob("*.jpg"))[:6]])


def test_shape_dtype_and_range(photos):
    for images in (photos, photos.astype(np.float32)):
        out = augmented(images, 3).numpy()
        assert out.shape == photos.shape and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 255


def test_same_seed_same_images_other_seed_other_images(photos):
    a, b, c = (augmented(photos, s).numpy() for s in ((1, 2), (1, 2), (1, 3)))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1.0


def test_it_changes_every_image(photos):
    out = augmented(photos, 0).numpy()
    change = np.abs(out - photos).reshape(len(photos), -1).mean(axis=1)
    assert (change > 2.0).all()


def test_without_alterations_the_images_come_back():
    images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3)).astype(np.uint8)
    none = Augmentation(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False, brightness=0, contrast=0, saturation=0)
    np.testing.assert_allclose(augmented(images, 5, none).numpy(), images, atol=1e-3)


def test_flip_alone_mirrors_about_half_the_images():
    images = np.random.default_rng(1).integers(0, 256, (40, 8, 8, 3)).astype(np.uint8)
    flip = Augmentation(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=True, brightness=0, contrast=0, saturation=0)
    out = augmented(images, 7, flip).numpy()
    mirrored = [np.allclose(o, i[:, ::-1], atol=1e-3) for o, i in zip(out, images)]
    unchanged = [np.allclose(o, i, atol=1e-3) for o, i in zip(out, images)]
    assert all(m or u for m, u in zip(mirrored, unchanged)) and 8 <= sum(mirrored) <= 32


def test_colour_jitter_alone_keeps_geometry_but_moves_colours():
    images = np.random.default_rng(2).integers(40, 200, (4, 8, 8, 3)).astype(np.uint8)
    colour = Augmentation(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    out = augmented(images, 9, colour).numpy()
    assert np.abs(out - images).mean() > 2.0
    for o, i in zip(out, images):  # pixel order kept: brighter stays brighter, almost always
        assert np.corrcoef(o.mean(-1).ravel(), i.mean(-1).astype(np.float32).ravel())[0, 1] > 0.9
