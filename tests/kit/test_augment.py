"""data/augment.py and the augment_* keys: exact shifts, rotation and zoom directions, elastic
displacement fields (smoothing, direction, size), the same seed the same batch, and validation
data never augmented."""

import io

import numpy as np
import pytest
from conftest import LOGREG, small_config

import net as net_module
from data.augment import AugmentSettings, augment, elastic_displacements, transform_images
from net import NeuralNet
from plumbing.errors import ConfigError

SHAPE = (1, 16, 16)


def bordered_images(n, channels=1, seed=0, border=3):
    """Random images (n, channels*16*16) that are 0 within `border` pixels of the edge, so a
    shift by up to `border` pixels loses nothing."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, channels, 16, 16))
    inner = 16 - 2 * border
    images[:, :, border:-border, border:-border] = rng.uniform(0.1, 1.0, (n, channels, inner, inner))
    return images.reshape(n, -1)


def dot(y, x):
    image = np.zeros((1, 16 * 16))
    image[0, y * 16 + x] = 1.0
    return image


def centre_of_mass(image):
    image = image.reshape(16, 16)
    ys, xs = np.mgrid[:16, :16]
    return np.array([np.sum(ys * image), np.sum(xs * image)]) / image.sum()


def test_zero_settings_return_an_unchanged_copy():
    images = bordered_images(5)
    out = augment(images, np.random.default_rng(0), AugmentSettings(), SHAPE)
    np.testing.assert_array_equal(out, images)
    assert out is not images and out.dtype == images.dtype
    assert not AugmentSettings().active and AugmentSettings(rotate=5).active


def test_integer_translation_moves_every_pixel_exactly():
    images = bordered_images(4, channels=2)
    shifts = np.array([[1, -2], [-3, 3], [0, 1], [2, 0]])
    out = transform_images(images, (2, 16, 16), shifts, np.zeros(4), np.ones(4))
    for image, moved, (dy, dx) in zip(images, out, shifts):
        # Blank borders: rolling loses nothing, so it is the exact shifted image (both channels).
        expected = np.roll(image.reshape(2, 16, 16), (dy, dx), axis=(1, 2))
        np.testing.assert_array_equal(moved.reshape(2, 16, 16), expected)


def test_a_shift_past_the_border_brings_in_background_zeros():
    image = np.arange(1.0, 257.0).reshape(1, -1)
    out = transform_images(image, SHAPE, [[0, 5]], [0.0], [1.0]).reshape(16, 16)
    np.testing.assert_array_equal(out[:, :5], 0.0)
    np.testing.assert_array_equal(out[:, 5:], image.reshape(16, 16)[:, :-5])


def test_rotation_is_counter_clockwise_as_displayed_and_zoom_enlarges_about_the_centre():
    rotated = transform_images(dot(8, 12), SHAPE, [[0, 0]], [90.0], [1.0]).reshape(16, 16)
    # (8, 12) is 0.5 below and 4.5 right of the centre (7.5, 7.5): a quarter turn puts it 4.5 above.
    assert np.argwhere(rotated > 0.5).tolist() == [[3, 8]]
    image = dot(9, 11)
    zoomed = transform_images(image, SHAPE, [[0, 0]], [0.0], [1.5])
    centre = np.array([7.5, 7.5])
    np.testing.assert_allclose(centre_of_mass(zoomed) - centre, 1.5 * (centre_of_mass(image) - centre), atol=0.05)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rotation_and_zoom_keep_shape_dtype_and_range(dtype):
    images = bordered_images(6).astype(dtype)
    out = augment(images, np.random.default_rng(1), AugmentSettings(translate=2, rotate=15, scale=0.2), SHAPE)
    assert out.shape == images.shape and out.dtype == dtype
    assert np.all(np.isfinite(out))
    # Bilinear weights are a convex combination of pixels and the zero background.
    assert out.min() >= 0 and out.max() <= images.max() + 1e-6
    assert not np.array_equal(out, images)


def test_the_same_seed_gives_the_same_batch_and_another_seed_another():
    images = bordered_images(8)
    settings = AugmentSettings(translate=1.5, rotate=10, scale=0.1)
    a = augment(images, np.random.default_rng(3), settings, SHAPE)
    b = augment(images, np.random.default_rng(3), settings, SHAPE)
    c = augment(images, np.random.default_rng(4), settings, SHAPE)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_random_shifts_stay_within_the_translate_range():
    images = np.repeat(dot(7, 8), 200, axis=0)
    out = augment(images, np.random.default_rng(5), AugmentSettings(translate=2.0), SHAPE)
    moves = np.array([centre_of_mass(o) for o in out]) - centre_of_mass(images[0])
    assert np.abs(moves).max() <= 2.0 + 1e-9
    assert np.abs(moves).max() > 1.5  # and it does use the range


# --- elastic distortions -------------------------------------------------------------------

@pytest.mark.parametrize("sigma", [1.5, 2.5])
def test_an_impulse_of_noise_becomes_a_gaussian_of_std_sigma_times_alpha(sigma):
    noise = np.zeros((1, 2, 41, 41))
    noise[0, 0, 20, 20] = 1.0  # one pixel's dy; dx nothing
    field = elastic_displacements(noise, alpha=3.0, sigma=sigma)
    dy = field[0, 0]
    np.testing.assert_array_equal(field[0, 1], 0.0)
    assert dy.sum() == pytest.approx(3.0, rel=1e-6)  # alpha times a kernel that sums to 1
    ys, xs = np.mgrid[:41, :41]
    for offsets in (ys - 20, xs - 20):
        assert np.sum(offsets ** 2 * dy) / dy.sum() == pytest.approx(sigma ** 2, rel=0.01)
    # Separable and symmetric: the shape of exp(-r^2 / (2 sigma^2)) along both axes.
    profile = dy[20, 20:24] / dy[20, 20]
    np.testing.assert_allclose(profile, np.exp(-np.arange(4) ** 2 / (2 * sigma ** 2)), rtol=0.02)
    np.testing.assert_allclose(dy, dy.T, rtol=1e-12)


def test_alpha_6_sigma_2_moves_16x16_pixels_by_about_0_6_pixel_as_the_docs_say():
    fields = elastic_displacements(np.random.default_rng(0).uniform(-1, 1, (500, 2, 16, 16)), 6.0, 2.0)
    assert 0.55 < fields.std() < 0.65  # docs/configuration.md
    assert abs(fields.mean()) < 0.01


def test_fields_of_different_images_and_directions_do_not_mix():
    noise = np.zeros((3, 2, 16, 16))
    noise[1, 1, 8, 8] = 1.0
    field = elastic_displacements(noise, alpha=2.0, sigma=2.0)
    assert np.count_nonzero(field[0]) == 0 and np.count_nonzero(field[2]) == 0
    assert np.count_nonzero(field[1, 0]) == 0 and field[1, 1].sum() == pytest.approx(2.0)


def test_a_constant_displacement_reads_from_that_far_away():
    images = bordered_images(3)
    fields = np.zeros((3, 2, 16, 16))
    fields[:, 0], fields[:, 1] = 2.0, -1.0  # every output pixel reads 2 below and 1 left
    out = transform_images(images, SHAPE, np.zeros((3, 2)), np.zeros(3), np.ones(3), fields)
    # Reading from (y + 2, x - 1) moves the content up 2 and right 1: a shift of (-2, 1).
    expected = transform_images(images, SHAPE, np.tile([-2.0, 1.0], (3, 1)), np.zeros(3), np.ones(3))
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out[0].reshape(16, 16), np.roll(images[0].reshape(16, 16), (-2, 1), (0, 1)))


def test_elastic_distortion_moves_pixels_by_about_its_size_and_keeps_the_range():
    images = bordered_images(200, border=4).astype(np.float32)
    settings = AugmentSettings(elastic_alpha=6.0, elastic_sigma=2.0)
    out = augment(images, np.random.default_rng(7), settings, SHAPE)
    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= images.max() + 1e-6
    moves = np.array([centre_of_mass(o) - centre_of_mass(i) for o, i in zip(out, images)])
    # Each image drifts a little (the smoothed field barely averages out over 8x8 pixels), less
    # than the field's own range.
    assert 0.05 < np.abs(moves).mean() < 1.5
    assert not np.array_equal(out, images)


def test_elastic_fields_are_drawn_after_the_affine_ones_and_reproducibly():
    images = bordered_images(10)
    affine = AugmentSettings(translate=2.0, rotate=10.0, scale=0.1)
    tiny = AugmentSettings(translate=2.0, rotate=10.0, scale=0.1, elastic_alpha=1e-9, elastic_sigma=2.0)
    # The same 4N affine draws come first, so an all but zero field gives the affine batch.
    np.testing.assert_allclose(augment(images, np.random.default_rng(3), tiny, SHAPE),
                               augment(images, np.random.default_rng(3), affine, SHAPE), atol=1e-7)
    elastic = AugmentSettings(elastic_alpha=6.0, elastic_sigma=2.0)
    a, b = (augment(images, np.random.default_rng(4), elastic, SHAPE) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, augment(images, np.random.default_rng(5), elastic, SHAPE))
    assert elastic.active and not AugmentSettings(elastic_sigma=2.0).active


@pytest.mark.parametrize("call,words", [
    (lambda: elastic_displacements(np.zeros((2, 3, 4, 4)), 1.0, 1.0), "not \\(N, 2, H, W\\)"),
    (lambda: elastic_displacements(np.zeros((2, 2, 4, 4)), 1.0, 0.0), "sigma must be above 0"),
    (lambda: transform_images(np.zeros((2, 256)), SHAPE, np.zeros((2, 2)), np.zeros(2), np.ones(2),
                              np.zeros((2, 2, 8, 8))), "displacements of shape"),
])
def test_elastic_functions_refuse_bad_arguments(call, words):
    with pytest.raises(ValueError, match=words):
        call()


# --- in the network -----------------------------------------------------------------------

def synthetic_npz(path, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, n in (("train", 150), ("validation", 60), ("test", 20)):
        labels = rng.integers(0, 10, n)
        arrays[name] = bordered_images(n, seed=seed + n) * (1 + labels[:, None] % 3)
        arrays[name + "_labels"] = np.eye(10)[labels]
    np.savez(path, **arrays)
    return path


def config(tmp_path, **keys):
    data = tmp_path / "syn.npz"
    if not data.exists():
        synthetic_npz(data)
    network = [dict(LOGREG, name="hidden", num_channels=16, epsilon=0.05, l2_decay=0.0),
               dict(LOGREG, epsilon=0.05, l2_decay=0.0)]
    return small_config(tmp_path, data, network=network, batch_size=40,
                        checkpoint_file=str(tmp_path / "m.npz"), performance_stats=str(tmp_path / "s.npy"), **keys)


AUGMENT = {"augment_translate": 2, "augment_rotate": 10.0, "augment_scale": 0.1}


def test_only_training_batches_are_augmented_never_validation(tmp_path, monkeypatch):
    net = NeuralNet(config(tmp_path, **AUGMENT), seed=0)
    net.LoadData()
    calls = []
    original = net_module.augment

    def spy(images, rng, settings, image_shape):
        calls.append(images.copy())
        return original(images, rng, settings, image_shape)

    monkeypatch.setattr(net_module, "augment", spy)
    net.Train(log=io.StringIO())
    assert [len(c) for c in calls] == [40, 40, 40, 30] * 2  # every training batch, nothing else
    train = net.train_[0]
    assert all(any(np.array_equal(row, t) for t in train) for row in calls[0][:3])
    # The last epoch's validation numbers are those of the plain validation images.
    stats = np.load(tmp_path / "s.npy")
    assert tuple(stats[-1, 2:4]) == net.Validate(net.validation_)


def test_validate_gives_the_same_numbers_with_and_without_augmentation_keys(tmp_path):
    plain, augmented = NeuralNet(config(tmp_path), seed=2), NeuralNet(config(tmp_path, **AUGMENT), seed=2)
    for net in (plain, augmented):
        net.LoadData(test=True)
    for split in ("validation_", "test_"):
        assert plain.Validate(getattr(plain, split)) == augmented.Validate(getattr(augmented, split))


def test_augmented_training_is_reproducible_and_differs_from_plain(tmp_path):
    runs = []
    for folder, keys in (("a", AUGMENT), ("b", AUGMENT), ("c", {})):
        (tmp_path / folder).mkdir()
        net = NeuralNet(config(tmp_path / folder, **keys), seed=1)
        net.Train(log=io.StringIO())
        runs.append(net.GetParameters())
    for key in runs[0]:
        np.testing.assert_array_equal(runs[0][key], runs[1][key])
    assert not np.array_equal(runs[0]["hidden_w"], runs[2]["hidden_w"])


@pytest.mark.parametrize("key,value,words", [
    ("augment_translate", -1, "must be >= 0"),
    ("augment_rotate", 200, "must be between 0 and 180"),
    ("augment_rotate", "ten", "must be a finite number"),
    ("augment_scale", 1.0, "must be >= 0 and below 1"),
    ("augment_scale", True, "must be a finite number"),
    ("augment_translate", float("nan"), "must be a finite number"),
    ("augment_elastic_alpha", -1, "must be >= 0"),
    ("augment_elastic_sigma", 0, "must be above 0"),
])
def test_bad_augmentation_keys_are_config_errors_naming_the_key(tmp_path, key, value, words):
    with pytest.raises(ConfigError, match=f"'{key}' {words}"):
        NeuralNet(config(tmp_path, **{key: value}))


def test_augmentation_numbers_written_as_text_are_read_as_floats(tmp_path):
    net = NeuralNet(config(tmp_path, augment_scale="1e-1", augment_translate=1))
    assert net.augment_ == AugmentSettings(translate=1.0, rotate=0.0, scale=0.1)


def test_elastic_sigma_without_alpha_is_refused_as_having_no_effect(tmp_path):
    with pytest.raises(ConfigError, match="'augment_elastic_sigma' has no effect without augment_elastic_alpha"):
        NeuralNet(config(tmp_path, augment_elastic_sigma=2.0))
    net = NeuralNet(config(tmp_path, augment_elastic_alpha=6, augment_elastic_sigma="2"))
    assert net.augment_ == AugmentSettings(elastic_alpha=6.0, elastic_sigma=2.0)


def test_elastic_training_is_reproducible_and_differs_from_affine_only(tmp_path):
    runs = []
    elastic = dict(AUGMENT, augment_elastic_alpha=6.0, augment_elastic_sigma=2.0)
    for folder, keys in (("a", elastic), ("b", elastic), ("c", AUGMENT)):
        (tmp_path / folder).mkdir()
        net = NeuralNet(config(tmp_path / folder, **keys), seed=1)
        net.Train(log=io.StringIO())
        runs.append((net.GetParameters(), np.load(tmp_path / folder / "s.npy")))
    for key in runs[0][0]:
        np.testing.assert_array_equal(runs[0][0][key], runs[1][0][key])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][0]["hidden_w"], runs[2][0]["hidden_w"])
