"""The defended model, its export, and the kind checks of the two runs."""

import numpy as np
import pytest
import tensorflow as tf

from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.defense import loading
from cifar_denoise_adv.defense import pipeline


def _images(count, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, size=(count, 32, 32, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def models(tiny_runs):
    return (
        loading.load_checked(tiny_runs["denoiser"], "denoiser"),
        loading.load_checked(tiny_runs["classifier"], "classifier"),
    )


def test_the_pipeline_is_the_denoiser_then_the_classifier(models):
    denoiser, classifier = models
    defended = pipeline.build_defended(denoiser, classifier)
    images = _images(5)
    denoised = np.clip(denoiser(images).numpy(), 0, 1)
    # The untrained denoiser really changes the images (and leaves [0, 1]).
    assert np.abs(denoiser(images).numpy() - images).max() > 0.01
    np.testing.assert_allclose(
        defended(images).numpy(), classifier(denoised).numpy(), atol=1e-5
    )
    # The same layers, not copies: the defense uses the runs' weights.
    assert defended.get_layer(classifier.name) is classifier
    assert defended.get_layer(denoiser.name) is denoiser


def test_the_randomised_pipeline_adds_the_stated_noise_fresh_at_every_call(models):
    denoiser, classifier = models
    randomised = pipeline.build_defended(denoiser, classifier, sigma=0.1, seed=3)
    images = _images(4)
    assert not np.allclose(randomised(images), randomised(images))
    again = pipeline.build_defended(denoiser, classifier, sigma=0.1, seed=3)
    np.testing.assert_allclose(
        again(images), pipeline.build_defended(denoiser, classifier, 0.1, 3)(images)
    )
    noise = pipeline.PixelNoise(0.1, seed=1)
    grey = np.full((64, 32, 32, 3), 0.5, np.float32)
    noisy = noise(grey).numpy()
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert np.std(noisy - grey) == pytest.approx(0.1, rel=0.02)
    assert pipeline.noise_layer(randomised) is not None
    assert pipeline.noise_layer(pipeline.build_defended(denoiser, classifier)) is None


@pytest.mark.parametrize("sigma", [0.0, 0.1])
def test_export_reloads_to_the_same_outputs(models, tmp_path, sigma):
    denoiser, classifier = models
    defended = pipeline.build_defended(denoiser, classifier, sigma=sigma, seed=2)
    sample = _images(3)
    exported = pipeline.export(
        defended, str(tmp_path / "model.keras"), str(tmp_path / "saved"), sample
    )
    assert exported["max_abs_difference"] <= 1e-4
    reloaded = tf.saved_model.load(str(tmp_path / "saved"))
    if sigma == 0:
        np.testing.assert_allclose(
            reloaded.serve(tf.constant(sample))["logits"].numpy(),
            defended(sample).numpy(),
            atol=1e-4,
        )
    assert (tmp_path / "model.keras").stat().st_size > 0


def _one_line(error):
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_wrong_kind_of_model_gets_one_clear_line(tiny_runs):
    with pytest.raises(UserError) as error:
        loading.load_checked(tiny_runs["denoiser"], "classifier")
    message = _one_line(error)
    assert message.startswith(f"--classifier={tiny_runs['denoiser']}: ")
    assert "[B, None, None, 3] -> [B, None, None, 3], a denoiser" in message
    assert "expected a classifier [B, 32, 32, 3] -> [B, 10] logits" in message

    with pytest.raises(UserError) as error:
        loading.load_checked(tiny_runs["classifier"], "denoiser")
    message = _one_line(error)
    assert message.startswith(f"--denoiser={tiny_runs['classifier']}: ")
    assert "[B, 32, 32, 3] -> [B, 10], a classifier" in message
    assert "expected a denoiser [B, H, W, 3] -> [B, H, W, 3]" in message


def test_other_models_and_missing_files_get_one_clear_line(tmp_path):
    import keras

    from tests.defense.conftest import save_run

    grey = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Conv2D(1, 3)])
    folder = save_run(tmp_path / "grey", grey)
    with pytest.raises(UserError, match="neither a classifier nor a denoiser"):
        loading.load_checked(folder, "denoiser")
    with pytest.raises(UserError, match="no model.keras there"):
        loading.load_checked(str(tmp_path / "nothing"), "classifier")
    junk = tmp_path / "junk.keras"
    junk.write_text("not a model")
    with pytest.raises(UserError) as error:
        loading.load_checked(str(junk), "classifier")
    assert "not a whole .keras file" in _one_line(error)
    with pytest.raises(UserError, match="--denoiser is required"):
        loading.load_checked("", "denoiser")


def test_the_denoisers_sigma_comes_from_its_run(tiny_runs, tmp_path):
    assert loading.denoiser_sigma(tiny_runs["denoiser"]) == 0.1
    assert loading.denoiser_sigma(tiny_runs["denoiser"] + "/model.keras") == 0.1
    assert loading.denoiser_sigma(str(tmp_path)) is None


def test_test_time_augmentation_is_found_and_can_be_changed(models):
    from cifar_denoise_adv.adversarial import classifier as classifier_lib

    _, network = models
    wrapped = classifier_lib.with_test_time_augmentation(network, 2)
    assert classifier_lib.test_time_augmentation(wrapped) == (network, 2)
    assert classifier_lib.test_time_augmentation(network) == (network, 0)
    kept, tta = classifier_lib.with_tta_level(wrapped, None)
    assert kept is wrapped and tta == {"exported": 2, "used": 2}
    bare, tta = classifier_lib.with_tta_level(wrapped, 0)
    assert bare is network and tta == {"exported": 2, "used": 0}
    mirrored, tta = classifier_lib.with_tta_level(wrapped, 1)
    images = _images(3)
    expected = 0.5 * (network(images) + network(images[:, :, ::-1]))
    np.testing.assert_allclose(mirrored(images), expected, atol=1e-5)
    assert tta == {"exported": 2, "used": 1}
