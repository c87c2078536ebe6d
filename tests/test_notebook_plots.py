"""The chapters' curve plots: one run's learning curves, and curves over seeds."""

from __future__ import annotations

import matplotlib.colors
import matplotlib.pyplot as plt
import numpy as np
import pytest
from mnist_cnn.notebook import plot_history, plot_seeds


def _lines(ax) -> dict:
    return {line.get_label(): line.get_ydata() for line in ax.get_lines()}


def test_plot_history_draws_train_and_validation_per_epoch():
    history = {"loss": [0.9, 0.5, 0.3], "val_loss": [0.7, 0.4, 0.35],
               "accuracy": [0.7, 0.85, 0.9], "val_accuracy": [0.8, 0.88, 0.89],
               "lr": [1e-3] * 3, "seconds": [1.0] * 3}
    fig = plot_history(history, "run")
    loss_ax, acc_ax = fig.axes
    np.testing.assert_array_equal(_lines(loss_ax)["train"], history["loss"])
    np.testing.assert_array_equal(_lines(loss_ax)["validation"], history["val_loss"])
    np.testing.assert_array_equal(_lines(acc_ax)["train"], history["accuracy"])
    np.testing.assert_array_equal(_lines(acc_ax)["validation"], history["val_accuracy"])
    np.testing.assert_array_equal(loss_ax.get_lines()[0].get_xdata(), [1, 2, 3])
    assert (loss_ax.get_title(), acc_ax.get_title()) == ("loss", "accuracy")
    assert fig.get_suptitle() == "run"
    plt.close(fig)


def test_plot_history_without_validation_draws_the_training_curves_only():
    fig = plot_history({"loss": [1.0, 0.5], "accuracy": [0.5, 0.7]})
    assert [set(_lines(ax)) for ax in fig.axes] == [{"train"}, {"train"}]
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    plt.close(fig)


def test_plot_seeds_draws_the_mean_and_a_band_of_one_sd():
    runs = np.array([[0.90, 0.95, 0.97], [0.88, 0.96, 0.98], [0.92, 0.94, 0.96]])
    fig, ax = plt.subplots()
    mean, sd = plot_seeds(ax, [1, 2, 3], runs, scale=100, label="cnn", color="C3")
    np.testing.assert_allclose(mean, runs.mean(axis=0) * 100, rtol=1e-12)
    np.testing.assert_allclose(sd, runs.std(axis=0, ddof=1) * 100, rtol=1e-12)
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_ydata(), mean, rtol=1e-12)
    assert line.get_label() == "cnn"
    (band,) = ax.collections
    ys = band.get_paths()[0].vertices[:, 1]
    low, high = ys.min(), ys.max()
    assert low == pytest.approx((mean - sd).min()) and high == pytest.approx((mean + sd).max())
    assert np.allclose(band.get_facecolor()[0][:3], matplotlib.colors.to_rgb("C3"))
    plt.close(fig)


def test_plot_seeds_keeps_a_diverged_seed_visible_as_a_gap():
    fig, ax = plt.subplots()
    mean, _ = plot_seeds(ax, [1, 2], [[1.0, None], [2.0, 3.0]])   # None: not finite
    assert mean[0] == 1.5 and np.isnan(mean[1])
    plt.close(fig)


@pytest.mark.parametrize("runs", [[0.9, 0.95], [[0.9, 0.95]]])
def test_plot_seeds_needs_two_seeds_or_more(runs):
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="seeds >= 2"):
        plot_seeds(ax, [1, 2], runs)
    plt.close(fig)
